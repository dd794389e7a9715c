"""Guests on the realtime gateway: only their room's events, and the socket closed when the room ends."""

from __future__ import annotations

import asyncio
import json

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from tests.support import register

GUEST = "X-Rosetta-Guest-Token"
CLOSE_REVOKED = 4001


async def next_frame(ws, timeout=5.0):
    raw = await asyncio.wait_for(ws.read_message(), timeout)
    return None if raw is None else json.loads(raw)


async def next_event(ws):
    while True:
        frame = await next_frame(ws)
        # Durable events only: live-only frames (presence, typing) carry no seq and may arrive at any time.
        if frame is None or (frame["type"] == "event" and "seq" in frame):
            return frame


async def connect(server, query):
    ws = await websocket_connect(f"ws://127.0.0.1:{server.port}/api/v1/realtime?{query}")
    hello = await next_frame(ws)
    assert hello["type"] == "hello", hello
    return ws


@pytest.mark.gen_test(timeout=30)
async def test_guest_socket_gets_room_events_only_and_closes_when_the_room_ends(api, server, clock):
    dev = await register(api, "Dev")
    room = (await api.post("/external/rooms", {"name": "Support", "ttl_hours": 1}, token=dev.token)).json["data"]
    tokens = {}
    for nickname in ("Mei", "Hans"):
        joined = await api.post(f"/external/rooms/{room['room_id']}/guests", {"nickname": nickname})
        tokens[nickname] = joined.json["data"]["session"]["token"]
    mei_ws = await connect(server, f"guest_token={tokens['Mei']}")
    dev_ws = await connect(server, f"access_token={dev.token}")

    # Elsewhere: the developer's own workspace. Mei hears nothing of it.
    team = (await api.post("/workspaces", {"name": "Team"}, token=dev.token)).json["data"]
    general = (await api.get(f"/workspaces/{team['id']}/channels", token=dev.token)).json["data"][0]
    sent = await api.post(f"/workspaces/{team['id']}/channels/{general['id']}/messages", {"content": "internal"},
                          token=dev.token)
    assert sent.status == 201
    # In the room: Hans speaks, Mei and the developer hear it.
    said = await api.post(f"/external/rooms/{room['room_id']}/messages", {"content": "hello"},
                          headers={GUEST: tokens["Hans"]})
    assert said.status == 201
    event = await next_event(mei_ws)
    assert event["event"] == "message.created" and event["data"]["id"] == said.json["data"]["id"]
    assert event["data"]["author"]["kind"] == "guest" and event["data"]["channel_id"] == room["channel_id"]
    dev_names = []
    while True:
        dev_event = await next_event(dev_ws)
        dev_names.append(dev_event["event"])
        if dev_event["data"].get("id") == said.json["data"]["id"]:
            break

    # The room ends: Mei hears room.expired first, then her socket closes (her token is dead).
    clock.advance(hours=1)
    await server.app.jobs.run_once("rooms.expire")
    frames = []
    while (frame := await next_frame(mei_ws)) is not None:
        frames.append(frame)
    events = [f for f in frames if f["type"] == "event" and "seq" in f]
    assert [e["event"] for e in events] == ["room.expired"], frames
    assert events[0]["data"]["room_id"] == room["room_id"] and events[0]["data"]["status"] == "expired"
    assert mei_ws.close_code == CLOSE_REVOKED
    mei_ws.close()
    expired = await next_event(dev_ws)
    assert expired["event"] == "room.expired" and expired["data"]["room_id"] == room["room_id"]
    dev_ws.close()

    # The dead token cannot connect again.
    with pytest.raises(Exception) as refused:
        await websocket_connect(f"ws://127.0.0.1:{server.port}/api/v1/realtime?guest_token={tokens['Mei']}")
    assert "401" in str(refused.value)


@pytest.mark.gen_test(timeout=30)
async def test_guest_event_stream_sse(api, server):
    dev = await register(api, "Dev")
    room = (await api.post("/external/rooms", {"name": "Support", "ttl_hours": 1}, token=dev.token)).json["data"]
    joined = await api.post(f"/external/rooms/{room['room_id']}/guests", {"nickname": "Mei"})
    token = joined.json["data"]["session"]["token"]
    chunks: list[bytes] = []
    greeted, got_event = asyncio.Event(), asyncio.Event()

    def on_chunk(chunk: bytes) -> None:
        chunks.append(chunk)
        seen = b"".join(chunks)
        if b"hello" in seen:  # the hub registered the stream before it said hello
            greeted.set()
        if b"message.created" in seen:
            got_event.set()

    request = HTTPRequest(f"{server.base_url}/api/v1/events", headers={GUEST: token, "Accept": "text/event-stream"},
                          streaming_callback=on_chunk, request_timeout=10)
    stream = asyncio.ensure_future(api.http.fetch(request, raise_error=False))
    await asyncio.wait_for(greeted.wait(), 5)
    said = await api.post(f"/external/rooms/{room['room_id']}/messages", {"content": "hi"}, token=dev.token)
    assert said.status == 201
    await asyncio.wait_for(got_event.wait(), 5)
    assert said.json["data"]["id"].encode() in b"".join(chunks)
    stream.cancel()
