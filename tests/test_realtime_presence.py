"""Realtime follow-ups over real sockets: presence, expired credentials, guest tokens never mixed in."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection

from tests.authkit import Browser
from tests.support import frame, register, workspace_with

GUEST = "X-Rosetta-Guest-Token"


async def presence(ws: WebSocketClientConnection) -> list[dict[str, Any]]:
    """The users listed by the next presence frame (other frames skipped)."""
    while True:
        got = await frame(ws)
        assert got is not None, "closed while waiting for presence"
        if got.get("event") == "presence.updated":
            assert got["type"] == "event" and "seq" not in got, got  # live-only, like typing
            return got["data"]["users"]


async def presence_until(ws: WebSocketClientConnection, user_id: str, status: str) -> list[dict[str, Any]]:
    """Every presence entry received up to and including ``user_id`` becoming ``status``."""
    seen: list[dict[str, Any]] = []
    while True:
        users = await presence(ws)
        seen.extend(users)
        if {"user_id": user_id, "status": status} in users:
            return seen


async def quiet(ws: WebSocketClientConnection) -> list[dict[str, Any]]:
    """Every frame already sent to ``ws``: a ping's pong comes after them all."""
    await ws.write_message(json.dumps({"type": "ping"}))
    seen = []
    while (got := await frame(ws)) != {"type": "pong"}:
        assert got is not None
        seen.append(got)
    return seen


async def guest_room(api: Any, owner: Any) -> tuple[dict[str, Any], str]:
    room = await api.post("/external/rooms", {"name": "Support", "ttl_hours": 1}, token=owner.token)
    assert room.status == 201, room
    joined = await api.post(f"/external/rooms/{room.json['data']['room_id']}/guests", {"nickname": "Mei"})
    assert joined.status in (200, 201), joined
    return room.json["data"], joined.json["data"]["session"]["token"]


@pytest.mark.gen_test(timeout=30)
async def test_presence_online_then_offline_reaches_workspace_peers_only(server, api, rt):
    ana, bea, cid = await register(api, "Ana"), await register(api, "Bea"), await register(api, "Cid")
    await workspace_with(api, ana, bea)
    ws_b, _ = await rt.hello(bea.token)
    ws_c, _ = await rt.hello(cid.token)
    ws_a, _ = await rt.hello(ana.token)
    seen = await presence_until(ws_b, ana.id, "online")
    assert all(entry["user_id"] == ana.id for entry in seen), seen  # never told about herself or the outsider
    ws_a.close()
    assert await presence(ws_b) == [{"user_id": ana.id, "status": "offline"}]
    # The same flush wrote to every recipient before Bea read it: the outsider got nothing at all.
    assert [f for f in await quiet(ws_c) if f.get("event") == "presence.updated"] == []


@pytest.mark.gen_test(timeout=30)
async def test_a_second_connection_and_its_close_change_nothing(server, api, rt):
    ana, bea = await register(api, "Ana"), await register(api, "Bea")
    await workspace_with(api, ana, bea)
    ws_b, _ = await rt.hello(bea.token)
    await rt.hello(ana.token)
    await presence_until(ws_b, ana.id, "online")
    second, _ = await rt.hello(ana.token)
    second.close()
    assert await frame(second) is None
    await server.app.hub.presence.flush()  # whatever the close left pending goes out now
    third, _ = await rt.hello(ana.token)  # Ana stayed online throughout: no frame about her
    await server.app.hub.presence.flush()
    assert [f for f in await quiet(ws_b) if f.get("event") == "presence.updated"] == []
    third.close()


@pytest.mark.gen_test(timeout=30)
async def test_guest_presence_stays_inside_the_room(server, api, rt):
    dev, bea = await register(api, "Dev"), await register(api, "Bea")
    await workspace_with(api, dev, bea)
    _, guest_token = await guest_room(api, dev)
    ws_b, _ = await rt.hello(bea.token)
    ws_dev, _ = await rt.hello(dev.token)
    ws_guest = await rt.connect(query=f"guest_token={guest_token}")
    assert (await frame(ws_guest))["type"] == "hello"  # sent after the hub registered the connection
    [guest_id] = [sub.user_id for sub in server.app.hub.subscriptions() if sub.principal.kind == "guest"]
    # The developer shares the room (its own workspace) with the guest, and a workspace with Bea.
    heard_by_dev = await presence_until(ws_dev, guest_id, "online")
    assert {entry["user_id"] for entry in heard_by_dev} <= {guest_id, bea.id}
    seen_by_bea = await presence_until(ws_b, dev.id, "online")
    seen_by_bea += [u for f in await quiet(ws_b) if f.get("event") == "presence.updated" for u in f["data"]["users"]]
    assert {entry["user_id"] for entry in seen_by_bea} == {dev.id}  # the room's guest is not her business
    told_guest = [u["user_id"] for f in await quiet(ws_guest) if f.get("event") == "presence.updated"
                  for u in f["data"]["users"]]
    assert bea.id not in told_guest
    ws_guest.close()
    assert await presence(ws_dev) == [{"user_id": guest_id, "status": "offline"}]
    assert [f for f in await quiet(ws_b) if f.get("event") == "presence.updated"] == []


@pytest.mark.gen_test(timeout=30)
async def test_an_expired_web_session_loses_its_socket(server, api, clock, rt):
    ana = await register(api, "Ana")
    browser = Browser(api)
    await browser.csrf()
    login = await browser.post("/auth/web/login", {"email": ana.email, "password": ana.password})
    assert login.status == 200, login
    cookie = f"rosetta_session={browser.cookies['rosetta_session']}"
    by_cookie = await rt.connect(headers={"Cookie": cookie})
    assert (await frame(by_cookie))["type"] == "hello"
    by_token, _ = await rt.hello(ana.token)  # a login token has no expiry
    assert await server.app.jobs.run_once("realtime.expiry") == 0  # nothing expired yet
    assert await quiet(by_cookie) == []
    clock.advance(hours=server.config.auth.session_ttl_hours + 1)
    assert await server.app.jobs.run_once("realtime.expiry") == 1
    assert await frame(by_cookie) is None and by_cookie.close_code == 4001
    assert await quiet(by_token) == []  # the token's socket stays open


@pytest.mark.gen_test(timeout=30)
async def test_a_guest_token_is_never_combined_with_another_credential(server, api, rt):
    dev = await register(api, "Dev")
    _, guest_token = await guest_room(api, dev)
    refused = [
        dict(query=f"guest_token={guest_token}", token=dev.token),
        dict(token=dev.token, headers={GUEST: guest_token}),
        dict(query=f"guest_token={guest_token}", headers={"Authorization": f"Bearer {dev.token}"}),
        dict(query=f"guest_token={guest_token}", headers={"Cookie": "rosetta_session=anything"}),
    ]
    for attempt in refused:
        with pytest.raises(HTTPClientError) as caught:
            await rt.connect(**attempt)
        assert caught.value.code == 401, attempt
    assert server.app.hub.connection_count(dev.id) == 0
    http = AsyncHTTPClient()
    base = f"http://127.0.0.1:{server.port}/api/v1/events"
    mixed = await http.fetch(HTTPRequest(f"{base}?access_token={dev.token}&guest_token={guest_token}",
                                         headers={"Accept": "text/event-stream"}), raise_error=False)
    assert mixed.code == 401 and json.loads(mixed.body)["message"]
    # Each alone still connects.
    alone = await rt.connect(query=f"guest_token={guest_token}")
    assert (await frame(alone))["type"] == "hello"
    await rt.hello(dev.token)
    assert server.app.hub.connection_count(dev.id) == 1
