"""Direct chat: opening conversations, recipient lookup, messages, and who may see them."""

from __future__ import annotations

import pytest

from tests.rest_support import events, make_team


async def open_dm(api, a, b):
    return await api.post("/direct-conversations", {"participant_user_id": b.id}, token=a.token)


@pytest.mark.gen_test(timeout=30)
async def test_resolve_only_finds_people_sharing_a_workspace(api):
    team = await make_team(api)
    found = await api.post("/direct-recipients/resolve", {"email": "MIA@example.test"}, token=team.owner.token)
    assert found.status == 200
    assert found.json == {"data": {"id": team.member.id, "name": "Mia", "avatar_url": None}}
    stranger = await api.post("/direct-recipients/resolve", {"email": team.outsider.email}, token=team.owner.token)
    assert stranger.status == 404
    unknown = await api.post("/direct-recipients/resolve", {"email": "nobody@example.test"}, token=team.owner.token)
    assert unknown.status == 404
    bad = await api.post("/direct-recipients/resolve", {"email": "not-an-email"}, token=team.owner.token)
    assert bad.status == 422 and "email" in bad.json["errors"]


@pytest.mark.gen_test(timeout=30)
async def test_open_creates_once_then_returns_existing(api, server):
    team = await make_team(api)
    created = await open_dm(api, team.owner, team.member)
    assert created.status == 201, created
    data = created.json["data"]
    assert set(data) == {"id", "participants", "other_user", "last_message_at", "created_at"}
    assert data["other_user"] == {"id": team.member.id, "name": "Mia", "avatar_url": None,
                                  "preferred_language": "fr"}
    assert sorted(p["id"] for p in data["participants"]) == sorted([team.owner.id, team.member.id])
    again = await open_dm(api, team.owner, team.member)
    assert again.status == 200 and again.json["data"]["id"] == data["id"]
    reverse = await open_dm(api, team.member, team.owner)
    assert reverse.status == 200 and reverse.json["data"]["id"] == data["id"]
    assert reverse.json["data"]["other_user"]["id"] == team.owner.id
    created_events = await events(server, "direct_conversation.created")
    assert sorted(e["audience_id"] for e in created_events) == sorted([team.owner.id, team.member.id])
    assert all(e["audience_kind"] == "user" for e in created_events)
    for event in created_events:  # each participant's copy names the other one
        assert event["payload"]["other_user"]["id"] != event["audience_id"]


@pytest.mark.gen_test(timeout=30)
async def test_open_refusals(api):
    team = await make_team(api)
    self_dm = await open_dm(api, team.owner, team.owner)
    assert self_dm.status == 422 and "participant_user_id" in self_dm.json["errors"]
    assert (await open_dm(api, team.owner, team.outsider)).status == 404
    unknown = await api.post("/direct-conversations", {"participant_user_id": "01arz3ndektsv4rrffq69g5fav"},
                             token=team.owner.token)
    assert unknown.status == 404
    for body in ({}, {"participant_user_id": 42}, {"participant_user_id": "bogus"}):
        bad = await api.post("/direct-conversations", body, token=team.owner.token)
        assert bad.status == 422 and "participant_user_id" in bad.json["errors"], (body, bad)


@pytest.mark.gen_test(timeout=30)
async def test_messages_list_and_visibility(api, server, clock):
    team = await make_team(api)
    conversation = (await open_dm(api, team.owner, team.member)).json["data"]
    path = f"/direct-conversations/{conversation['id']}/messages"
    clock.advance(minutes=1)
    sent = await api.post(path, {"content": "salut"}, token=team.member.token)
    assert sent.status == 201, sent
    message = sent.json["data"]
    assert message["conversation_id"] == conversation["id"] and message["channel_id"] is None
    assert message["workspace_id"] is None and message["source_language"] == "fr"
    reply = await api.post(path, {"content": "hi", "parent_message_id": message["id"]}, token=team.owner.token)
    assert reply.status == 201
    listed = await api.get(path, token=team.owner.token)
    assert [m["original_content"] for m in listed.json["data"]] == ["hi", "salut"]
    assert listed.json["meta"]["per_page"] == 50
    mine = await api.get("/direct-conversations", token=team.member.token)
    assert [c["id"] for c in mine.json["data"]] == [conversation["id"]]
    assert mine.json["data"][0]["last_message_at"] is not None
    # Nobody else sees the conversation or its messages.
    for attempt in (api.get(path, token=team.admin.token),
                    api.post(path, {"content": "intrude"}, token=team.admin.token),
                    api.patch(f"{path}/{message['id']}", {"content": "x"}, token=team.admin.token),
                    api.delete(f"{path}/{message['id']}", token=team.admin.token)):
        assert (await attempt).status == 404
    assert (await api.get("/direct-conversations", token=team.admin.token)).json["data"] == []
    assert (await api.get("/direct-conversations/nope/messages", token=team.owner.token)).status == 404
    posted = [e for e in await events(server, "message.created") if e["audience_kind"] == "conversation"]
    assert {e["audience_id"] for e in posted} == {conversation["id"]}


@pytest.mark.gen_test(timeout=30)
async def test_only_the_author_edits_or_deletes(api, server):
    team = await make_team(api)
    conversation = (await open_dm(api, team.owner, team.member)).json["data"]
    path = f"/direct-conversations/{conversation['id']}/messages"
    message = (await api.post(path, {"content": "draft"}, token=team.member.token)).json["data"]
    target = f"{path}/{message['id']}"
    assert (await api.patch(target, {"content": "x"}, token=team.owner.token)).status == 403
    assert (await api.delete(target, token=team.owner.token)).status == 403
    edited = await api.patch(target, {"content": "final"}, token=team.member.token)
    assert edited.status == 200 and edited.json["data"]["original_content"] == "final"
    assert (await api.delete(target, token=team.member.token)).status == 204
    listed = await api.get(path, token=team.owner.token)
    assert listed.json["data"][0]["deleted_at"] is not None and listed.json["data"][0]["original_content"] == ""
    assert (await api.patch(target, {"content": "again"}, token=team.member.token)).status == 404
    names = [e["name"] for e in await events(server) if e["audience_id"] == conversation["id"]]
    assert names == ["message.created", "message.updated", "message.deleted"]
