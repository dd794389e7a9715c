"""Channel messages: edit and soft delete, cursor pagination, replies."""

from __future__ import annotations

import asyncio

import pytest

from rosetta.errors import NotFound
from rosetta.services.auth import Principal
from tests.rest_support import events, make_team


def messages_path(team, channel_id=None, message_id=None):
    base = f"/workspaces/{team.id}/channels/{channel_id or team.general['id']}/messages"
    return base if message_id is None else f"{base}/{message_id}"


async def send(api, team, user, content, channel_id=None, **extra):
    sent = await api.post(messages_path(team, channel_id), {"content": content, **extra}, token=user.token)
    assert sent.status == 201, sent
    return sent.json["data"]


@pytest.mark.gen_test(timeout=30)
async def test_author_edits(api, server, clock):
    team = await make_team(api)
    message = await send(api, team, team.member, "helo")
    clock.advance(minutes=1)
    edited = await api.patch(messages_path(team, message_id=message["id"]), {"content": "hello"},
                             token=team.member.token)
    assert edited.status == 200, edited
    data = edited.json["data"]
    assert data["id"] == message["id"] and data["original_content"] == "hello" and data["display_content"] == "hello"
    assert data["updated_at"] > data["created_at"] == message["created_at"]
    listed = await api.get(messages_path(team), token=team.owner.token)
    assert listed.json["data"][0]["original_content"] == "hello"
    event = (await events(server, "message.updated"))[-1]
    assert (event["audience_kind"], event["audience_id"]) == ("channel", team.general["id"])
    assert event["payload"] == {"id": message["id"]}  # the log's reference; readers get the message rendered


@pytest.mark.gen_test(timeout=30)
async def test_edit_refusals(api):
    team = await make_team(api)
    message = await send(api, team, team.member, "mine")
    target = messages_path(team, message_id=message["id"])
    assert (await api.patch(target, {"content": "x"}, token=team.admin.token)).status == 403
    assert (await api.patch(target, {"content": "x"}, token=team.owner.token)).status == 403
    assert (await api.patch(target, {"content": "x"}, token=team.outsider.token)).status == 404
    for body in ({}, {"content": ""}, {"content": "   "}, {"content": 5}, {"content": "x" * 10_001}):
        bad = await api.patch(target, body, token=team.member.token)
        assert bad.status == 422 and "content" in bad.json["errors"], (body, bad)
    unknown = messages_path(team, message_id="01arz3ndektsv4rrffq69g5fav")
    assert (await api.patch(unknown, {"content": "x"}, token=team.member.token)).status == 404
    other = await api.post(f"/workspaces/{team.id}/channels", {"name": "other"}, token=team.owner.token)
    elsewhere = messages_path(team, other.json["data"]["id"], message["id"])
    assert (await api.patch(elsewhere, {"content": "x"}, token=team.member.token)).status == 404


@pytest.mark.gen_test(timeout=30)
async def test_soft_delete_by_author_and_by_admin(api, server):
    team = await make_team(api)
    mine = await send(api, team, team.member, "oops")
    theirs = await send(api, team, team.member, "rude")
    assert (await api.delete(messages_path(team, message_id=mine["id"]), token=team.outsider.token)).status == 404
    deleted = await api.delete(messages_path(team, message_id=mine["id"]), token=team.member.token)
    assert deleted.status == 204 and deleted.body == b""
    moderated = await api.delete(messages_path(team, message_id=theirs["id"]), token=team.admin.token)
    assert moderated.status == 204
    listed = (await api.get(messages_path(team), token=team.owner.token)).json["data"]
    by_id = {m["id"]: m for m in listed}
    for gone in (mine, theirs):
        kept = by_id[gone["id"]]  # the message keeps its id and place
        assert kept["deleted_at"] is not None and kept["original_content"] == "" and kept["display_content"] == ""
        assert kept["channel_id"] == team.general["id"]
    assert (await api.patch(messages_path(team, message_id=mine["id"]), {"content": "back"},
                            token=team.member.token)).status == 404
    assert (await api.delete(messages_path(team, message_id=mine["id"]), token=team.member.token)).status == 404
    event = next(e for e in await events(server, "message.deleted") if e["payload"]["id"] == mine["id"])
    assert set(event["payload"]) == {"id", "workspace_id", "channel_id", "conversation_id", "deleted_at"}
    # Its text is in no event the log keeps: message events are rendered from the message's row.
    logged = str(await events(server))
    assert "oops" not in logged and "rude" not in logged


@pytest.mark.gen_test(timeout=30)
async def test_member_cannot_delete_anothers_message(api):
    team = await make_team(api)
    message = await send(api, team, team.owner, "announcement")
    refused = await api.delete(messages_path(team, message_id=message["id"]), token=team.member.token)
    assert refused.status == 403


@pytest.mark.gen_test(timeout=30)
async def test_cursor_pagination(api):
    team = await make_team(api)
    ids = [(await send(api, team, team.member, f"m{n}"))["id"] for n in range(5)]
    first = await api.get(messages_path(team) + "?limit=2", token=team.owner.token)
    assert [m["id"] for m in first.json["data"]] == [ids[4], ids[3]]
    assert first.json["meta"] == {"per_page": 2, "next_cursor": ids[3], "prev_cursor": None}
    older = await api.get(messages_path(team) + f"?limit=2&before={ids[3]}", token=team.owner.token)
    assert [m["id"] for m in older.json["data"]] == [ids[2], ids[1]]
    assert older.json["meta"]["next_cursor"] == ids[1] and older.json["meta"]["prev_cursor"] == ids[2]
    oldest = await api.get(messages_path(team) + f"?limit=2&before={ids[1]}", token=team.owner.token)
    assert [m["id"] for m in oldest.json["data"]] == [ids[0]]
    assert oldest.json["meta"]["next_cursor"] is None
    newer = await api.get(messages_path(team) + f"?limit=2&after={ids[0]}", token=team.owner.token)
    assert [m["id"] for m in newer.json["data"]] == [ids[2], ids[1]]  # the oldest ones after, newest first
    assert newer.json["meta"]["prev_cursor"] == ids[2]
    both = await api.get(messages_path(team) + f"?before={ids[1]}&after={ids[0]}", token=team.owner.token)
    assert both.status == 422
    bad = await api.get(messages_path(team) + "?before=not-an-id", token=team.owner.token)
    assert bad.status == 422 and "before" in bad.json["errors"]


@pytest.mark.gen_test(timeout=30)
async def test_replies_stay_in_their_channel(api):
    team = await make_team(api)
    parent = await send(api, team, team.owner, "question")
    reply = await send(api, team, team.member, "answer", parent_message_id=parent["id"])
    assert reply["parent_message_id"] == parent["id"]
    other = await api.post(f"/workspaces/{team.id}/channels", {"name": "other"}, token=team.owner.token)
    cross = await api.post(messages_path(team, other.json["data"]["id"]),
                           {"content": "x", "parent_message_id": parent["id"]}, token=team.member.token)
    assert cross.status == 422 and "parent_message_id" in cross.json["errors"]
    unknown = await api.post(messages_path(team), {"content": "x", "parent_message_id": "01arz3ndektsv4rrffq69g5fav"},
                             token=team.member.token)
    assert unknown.status == 422 and "parent_message_id" in unknown.json["errors"]


@pytest.mark.gen_test(timeout=30)
async def test_reply_lookup_is_indexed(server):
    """Deleting a message (a channel delete, a room purge) makes SQLite look for its replies to set
    ``parent_message_id`` NULL; without an index that is a full scan of messages per deleted row."""
    assert server.app is not None
    plan = await server.app.db.reader.fetch_all(
        "EXPLAIN QUERY PLAN SELECT 1 FROM messages WHERE parent_message_id = ?", ("01arz3ndektsv4rrffq69g5fav",))
    details = " ".join(row["detail"] for row in plan)
    assert "USING" in details and "INDEX" in details, details


@pytest.mark.gen_test(timeout=30)
async def test_post_racing_a_channel_delete_is_404_not_500(api, server):
    """The channel is checked before the write; deleted in between, the insert's foreign key fails."""
    team = await make_team(api)
    app = server.app
    assert app is not None
    other = await api.post(f"/workspaces/{team.id}/channels", {"name": "doomed"}, token=team.owner.token)
    channel_id = other.json["data"]["id"]
    member = Principal("user", team.member.id)
    channel = await app.workspaces.require_readable_channel(team.id, channel_id, member)
    results = await asyncio.gather(
        app.workspaces.delete_channel(team.id, channel_id, Principal("user", team.owner.id)),
        app.messages.post_as_member(member, channel, "too late"),
        return_exceptions=True,
    )
    assert results[0] is None and isinstance(results[1], NotFound), results
