"""On-demand translation for guests: ``POST /external/rooms/{room}/messages/{id}/translate`` with the guest
token, against a local server speaking the LibreTranslate protocol."""

from __future__ import annotations

import pytest

from tests.support import register, workspace_with

GUEST = "X-Rosetta-Guest-Token"


@pytest.fixture
def server_overrides(stub):
    return {"translation": {"provider": "libretranslate", "url": stub.url}}


async def room_with_guest(api, dev, nickname, language):
    room = (await api.post("/external/rooms", {"name": "Support", "ttl_hours": 1}, token=dev.token)).json["data"]
    joined = await api.post(f"/external/rooms/{room['room_id']}/guests",
                            {"nickname": nickname, "preferred_language": language})
    assert joined.status == 201, joined
    return room, {GUEST: joined.json["data"]["session"]["token"]}


@pytest.mark.gen_test(timeout=30)
async def test_guest_translates_a_room_message_on_demand(api, server, stub, clock):
    dev = await register(api, "Dev")
    room, hans = await room_with_guest(api, dev, "Hans", "de")
    joined = await api.post(f"/external/rooms/{room['room_id']}/guests",
                            {"nickname": "Mei", "preferred_language": "zh-CN"})
    mei = {GUEST: joined.json["data"]["session"]["token"]}
    messages = f"/external/rooms/{room['room_id']}/messages"
    said = await api.post(messages, {"content": "Hallo zusammen"}, headers=hans)
    assert said.status == 201
    translate = f"{messages}/{said.json['data']['id']}/translate"

    done = await api.post(translate, {"target_language": "en"}, headers=mei)
    assert done.status == 200, done
    data = done.json["data"]
    assert data["id"] == said.json["data"]["id"]
    assert (data["display_content"], data["display_language"], data["translation_status"]) == \
        ("[en] Hallo zusammen", "en", "completed")
    [call] = stub.calls("/translate")
    assert call["body"]["source"] == "de" and call["body"]["target"] == "en"
    # Asked again: answered from what is stored, the provider is not asked twice.
    again = await api.post(translate, {"target_language": "en"}, headers=mei)
    assert again.json["data"]["display_content"] == "[en] Hallo zusammen"
    assert len(stub.calls("/translate")) == 1

    # Bad body after access: 422 naming the field.
    bad = await api.post(translate, {}, headers=mei)
    assert bad.status == 422 and "target_language" in bad.json["errors"]

    # Messages not in this room are 404 and the provider hears nothing: another room's, a standard channel's.
    other_room, other_guest = await room_with_guest(api, dev, "Ana", "es")
    elsewhere = await api.post(f"/external/rooms/{other_room['room_id']}/messages", {"content": "Hola"},
                               headers=other_guest)
    team = await workspace_with(api, dev)
    internal = await api.post(f"/workspaces/{team['id']}/channels/{team['general']['id']}/messages",
                              {"content": "internal note"}, token=dev.token)
    for message_id in (elsewhere.json["data"]["id"], internal.json["data"]["id"], "not-an-id"):
        refused = await api.post(f"{messages}/{message_id}/translate", {"target_language": "fr"}, headers=mei)
        assert refused.status == 404, refused
    # A guest of another room on this room's route: 404 as well.
    assert (await api.post(translate, {"target_language": "fr"}, headers=other_guest)).status == 404
    assert len(stub.calls("/translate")) == 1

    # The room ended: the room's own token gets 410, nothing is translated.
    clock.advance(hours=1, seconds=1)
    gone = await api.post(translate, {"target_language": "fr"}, headers=mei)
    assert gone.status == 410 and gone.json["errors"]["code"] == ["temporary_room_expired"]
    assert len(stub.calls("/translate")) == 1
