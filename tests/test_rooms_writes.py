"""A room's workspace through the standard routes: fixed at one channel and no invites (403 always),
and no writes once the room ended (410 temporary_room_expired), expired or purged; reads stay."""

from __future__ import annotations

import pytest

from tests.support import register, workspace_with

GUEST = "X-Rosetta-Guest-Token"


async def make_room(api, ttl_hours=1):
    dev = await register(api, "Dev")
    made = await api.post("/external/rooms", {"name": "Support", "ttl_hours": ttl_hours}, token=dev.token)
    assert made.status == 201, made
    return dev, made.json["data"]


def messages_path(room):
    return f"/workspaces/{room['workspace_id']}/channels/{room['channel_id']}/messages"


def assert_fixed(response):
    assert response.status == 403, response
    assert response.json["errors"]["code"] == ["temporary_room_fixed"]


def assert_gone(response):
    assert response.status == 410, response
    assert response.json["errors"]["code"] == ["temporary_room_expired"]


@pytest.mark.gen_test(timeout=30)
async def test_a_live_room_has_one_channel_and_no_invites(api):
    dev, room = await make_room(api)
    ws = room["workspace_id"]
    assert_fixed(await api.post(f"/workspaces/{ws}/channels", {"name": "second"}, token=dev.token))
    assert_fixed(await api.post(f"/workspaces/{ws}/invites", {"expires_in_days": 7}, token=dev.token))
    channel = f"/workspaces/{ws}/channels/{room['channel_id']}"
    assert_fixed(await api.put(channel, {"name": "renamed"}, token=dev.token))
    assert_fixed(await api.delete(channel, token=dev.token))
    channels = (await api.get(f"/workspaces/{ws}/channels", token=dev.token)).json["data"]
    assert [c["id"] for c in channels] == [room["channel_id"]]
    assert (await api.get(f"/workspaces/{ws}/invites", token=dev.token)).json["data"] == []
    # While live the developer posts through the standard route; a standard workspace is unaffected.
    assert (await api.post(messages_path(room), {"content": "welcome"}, token=dev.token)).status == 201
    team = await workspace_with(api, dev)
    assert (await api.post(f"/workspaces/{team['id']}/channels", {"name": "more"}, token=dev.token)).status == 201
    assert (await api.post(f"/workspaces/{team['id']}/invites", {"expires_in_days": 7},
                           token=dev.token)).status == 201


@pytest.mark.gen_test(timeout=30)
async def test_an_ended_room_refuses_writes_on_the_standard_routes(api, server, clock):
    dev, room = await make_room(api)
    joined = await api.post(f"/external/rooms/{room['room_id']}/guests", {"nickname": "Mei"})
    guest = {GUEST: joined.json["data"]["session"]["token"]}
    posted = await api.post(messages_path(room), {"content": "before the end"}, token=dev.token)
    assert posted.status == 201
    by_guest = await api.post(f"/external/rooms/{room['room_id']}/messages", {"content": "hi"}, headers=guest)
    assert by_guest.status == 201
    message_path = f"{messages_path(room)}/{posted.json['data']['id']}"

    # Past expires_at, before the sweep ran: already refused.
    clock.advance(hours=1, seconds=1)
    assert_gone(await api.post(messages_path(room), {"content": "too late"}, token=dev.token))
    # After the sweep: refused, edits and deletes too; channel and invite changes stay 403.
    assert await server.app.jobs.run_once("rooms.expire") == {"expired": 1, "purged": 0}
    assert_gone(await api.post(messages_path(room), {"content": "too late"}, token=dev.token))
    assert_gone(await api.patch(message_path, {"content": "edited"}, token=dev.token))
    assert_gone(await api.delete(message_path, token=dev.token))
    ws = room["workspace_id"]
    assert_fixed(await api.post(f"/workspaces/{ws}/channels", {"name": "second"}, token=dev.token))
    assert_fixed(await api.post(f"/workspaces/{ws}/invites", {"expires_in_days": 7}, token=dev.token))
    # Nothing was written; reads stay open to the developer until the purge.
    history = (await api.get(messages_path(room), token=dev.token)).json["data"]
    assert sorted(m["original_content"] for m in history) == ["before the end", "hi"]

    # Purged: still refused.
    clock.advance(hours=server.config.temporary_rooms.purge_after_hours, seconds=1)
    assert await server.app.jobs.run_once("rooms.expire") == {"expired": 0, "purged": 1}
    assert_gone(await api.post(messages_path(room), {"content": "after the purge"}, token=dev.token))
    assert (await api.get(messages_path(room), token=dev.token)).json["data"] == []
