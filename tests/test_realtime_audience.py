"""Who hears what, over real sockets: password channels (before joining, and after the password
changes), deactivated users, and a guest's SSE stream kept to its room."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tornado.websocket import WebSocketClientConnection

from rosetta.realtime.subscription import CLOSE_REVOKED
from tests.support import frame, register, workspace_with
from tests.test_realtime import barrier, drain_to_fence, post, until
from tests.test_realtime_frames import named, quiet, send
from tests.test_realtime_streams import SseClient

GUEST = "X-Rosetta-Guest-Token"


def messages_path(team: dict[str, Any], channel_id: str) -> str:
    return f"/workspaces/{team['id']}/channels/{channel_id}/messages"


async def until_id(ws: WebSocketClientConnection, message_id: str) -> list[dict[str, Any]]:
    """Every durable event up to the ``message.created`` of ``message_id``."""
    seen = await until(ws, "message.created")
    while seen[-1]["data"]["id"] != message_id:
        seen += await until(ws, "message.created")
    return seen


async def next_named(ws: WebSocketClientConnection, name: str) -> dict[str, Any]:
    """The next frame called ``name``, live-only or durable (others skipped)."""
    while True:
        got = await frame(ws)
        assert got is not None, f"closed while waiting for {name}"
        if got.get("event") == name:
            return got


def mentions(frames: list[dict[str, Any]], *needles: str) -> list[dict[str, Any]]:
    return [f for f in frames if any(needle in json.dumps(f) for needle in needles)]


@pytest.mark.gen_test(timeout=30)
async def test_a_password_channel_reaches_only_those_who_joined_it_with_the_current_password(server, api, rt):
    """Spec §9: a password channel is open only to those who joined with the password (and owner and
    admins), and its readers for events are exactly those who may read it."""
    ana, bea, cid = await register(api, "Ana"), await register(api, "Bea"), await register(api, "Cid")
    team = await workspace_with(api, ana, bea, cid)
    made = await api.post(f"/workspaces/{team['id']}/channels", {"name": "Vault", "password": "open-sesame-1"},
                          token=ana.token)
    assert made.status == 201, made
    vault = made.json["data"]["id"]
    joined = await api.post(f"/workspaces/{team['id']}/channels/{vault}/join", {"password": "open-sesame-1"},
                            token=bea.token)
    assert joined.status == 200, joined
    ws_a, _ = await rt.hello(ana.token)
    ws_b, _ = await rt.hello(bea.token)
    ws_c, _ = await rt.hello(cid.token)

    # Cid is a member of the workspace but never joined the vault: neither its messages nor its typing.
    secret = await post(api, messages_path(team, vault), "secret plan", ana.token)
    assert (await until(ws_b, "message.created"))[-1]["data"]["id"] == secret["id"]
    seen_by_cid = await drain_to_fence(ws_c, await barrier(api, cid))
    assert mentions(seen_by_cid, secret["id"], vault) == []
    await send(ws_a, {"type": "typing", "channel_id": vault})
    assert (await next_named(ws_b, "typing"))["data"] == {"channel_id": vault, "user_id": ana.id}
    assert named(await quiet(ws_c), "typing") == []  # written in the same pass as Bea's, had it been

    # A new password: whoever joined with the old one is out until they join again.
    changed = await api.put(f"/workspaces/{team['id']}/channels/{vault}", {"name": "Vault",
                            "password": "new-secret-22"}, token=ana.token)
    assert changed.status == 200, changed
    later = await post(api, messages_path(team, vault), "after the change", ana.token)
    seen_by_bea = await drain_to_fence(ws_b, await barrier(api, bea))
    assert mentions(seen_by_bea, later["id"]) == []
    ws_a2, _ = await rt.hello(ana.token)  # a new connection: the first one's typing window is still open
    await send(ws_a2, {"type": "typing", "channel_id": vault})
    assert (await next_named(ws_a, "typing"))["data"]["user_id"] == ana.id  # the owner's other socket hears it
    assert named(await quiet(ws_b), "typing") == []

    # Joined again with the new password, she hears the vault again.
    rejoined = await api.post(f"/workspaces/{team['id']}/channels/{vault}/join", {"password": "new-secret-22"},
                              token=bea.token)
    assert rejoined.status == 200, rejoined
    again = await post(api, messages_path(team, vault), "welcome back", ana.token)
    assert (await until(ws_b, "message.created"))[-1]["data"]["id"] == again["id"]


@pytest.mark.gen_test(timeout=30)
async def test_a_deactivated_user_hears_nothing_more_and_loses_the_socket(server, api, rt):
    """Issue #3: a deactivated user stops receiving at once. No route deactivates a user yet; the
    column is what every audience query reads, so it is set here as an operator would."""
    ana, bea = await register(api, "Ana"), await register(api, "Bea")
    team = await workspace_with(api, ana, bea)
    path = messages_path(team, team["general"]["id"])
    ws_a, _ = await rt.hello(ana.token)
    ws_b, _ = await rt.hello(bea.token)
    await post(api, path, "still here", ana.token)
    assert (await until(ws_b, "message.created"))[-1]["data"]["original_content"] == "still here"

    await server.app.db.write(lambda tx: tx.execute("UPDATE users SET is_active = 0 WHERE id = ?", (bea.id,)))
    gone = await post(api, path, "after she left", ana.token)
    await until_id(ws_a, gone["id"])
    # Offered to every recipient in one pass: had Bea been one, it would precede her pong.
    assert mentions(await quiet(ws_b), gone["id"]) == []

    # The credential sweep (every heartbeat) finds her token no longer live: the socket is closed.
    assert await server.app.jobs.run_once("realtime.expiry") == 1
    while await frame(ws_b) is not None:
        pass
    assert ws_b.close_code == CLOSE_REVOKED
    assert not server.app.hub.is_online(bea.id)


@pytest.mark.gen_test(timeout=30)
async def test_a_guest_event_stream_hears_nothing_of_the_hosts_workspaces(server, api):
    dev = await register(api, "Dev")
    team = await workspace_with(api, dev)
    room = await api.post("/external/rooms", {"name": "Support", "ttl_hours": 1}, token=dev.token)
    assert room.status == 201, room
    room_id = room.json["data"]["room_id"]
    guest = await api.post(f"/external/rooms/{room_id}/guests", {"nickname": "Mei"})
    assert guest.status in (200, 201), guest
    stream = SseClient(server, "", query=f"guest_token={guest.json['data']['session']['token']}")
    await stream.next("hello")
    internal = await post(api, messages_path(team, team["general"]["id"]), "internal", dev.token)
    backroom = await api.post(f"/workspaces/{team['id']}/channels", {"name": "Backroom"}, token=dev.token)
    assert backroom.status == 201, backroom  # a workspace-wide event
    said = await api.post(f"/external/rooms/{room_id}/messages", {"content": "hello"}, token=dev.token)
    assert said.status == 201, said
    before_room_message = []
    while (block := await stream.next())["data"].get("id") != said.json["data"]["id"]:
        before_room_message.append(block)  # delivered in seq order: the host's events came first, if at all
    assert block["event"] == "message.created"
    assert mentions(before_room_message, internal["id"], team["id"], "Backroom") == []
    await stream.close()
