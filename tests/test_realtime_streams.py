"""SSE resume with Last-Event-ID, and backpressure: a reader that never reads is cut off, others are not."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from rosetta.realtime.subscription import CLOSE_OVERFLOW
from tests.support import Server, register, workspace_with
from tests.test_realtime import channel_path, events, post, until


class SseClient:
    """An EventSource over a real HTTP stream: each block parsed into {id, event, data}."""

    def __init__(self, server: Server, token: str, last_event_id: int | None = None, *,
                 query: str | None = None) -> None:
        """``query`` replaces ``access_token=<token>`` (``guest_token=…`` for a guest)."""
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.buffer = b""
        self.http = AsyncHTTPClient(force_instance=True)
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        query = query or f"access_token={token}"
        request = HTTPRequest(f"http://127.0.0.1:{server.port}/api/v1/events?{query}", headers=headers,
                              streaming_callback=self.on_chunk, request_timeout=60)
        self.response = asyncio.ensure_future(self.http.fetch(request, raise_error=False))

    def on_chunk(self, chunk: bytes) -> None:
        self.buffer += chunk
        while b"\n\n" in self.buffer:
            block, self.buffer = self.buffer.split(b"\n\n", 1)
            parsed: dict[str, Any] = {}
            for line in block.decode().split("\n"):
                field, _, value = line.partition(": ")
                parsed[field or "comment"] = value
            if "data" in parsed:
                parsed["data"] = json.loads(parsed["data"])
            self.queue.put_nowait(parsed)

    async def next(self, event: str | None = None) -> dict[str, Any]:
        while True:
            block = await asyncio.wait_for(self.queue.get(), 2.0)
            if event is None or block.get("event") == event:
                return block

    async def close(self) -> None:
        self.http.close()
        self.response.cancel()


@pytest.mark.gen_test(timeout=30)
async def test_sse_resumes_from_last_event_id(server, api):
    ana, bea = await register(api, "Ana"), await register(api, "Bea")
    team = await workspace_with(api, ana, bea)
    stream = SseClient(server, bea.token)
    assert (await stream.next())["retry"] == "3000"
    hello = await stream.next("hello")
    assert hello["data"]["type"] == "hello"
    first = await post(api, channel_path(team), "first", ana.token)
    got = await stream.next("message.created")
    assert got["data"]["id"] == first["id"] and int(got["id"]) > hello["data"]["seq"]
    await stream.close()
    missed = [await post(api, channel_path(team), f"missed {n}", ana.token) for n in range(3)]
    resumed = SseClient(server, bea.token, last_event_id=int(got["id"]))
    replayed = [await resumed.next("message.created") for _ in range(3)]
    assert [b["data"]["id"] for b in replayed] == [m["id"] for m in missed]
    assert [int(b["id"]) for b in replayed] == sorted(int(b["id"]) for b in replayed)
    live = await post(api, channel_path(team), "live", ana.token)
    nxt = await resumed.next("message.created")
    assert nxt["data"]["id"] == live["id"]  # no duplicate of the replay, no gap before live
    await resumed.close()


@pytest.mark.gen_test(timeout=30)
async def test_sse_stream_ends_on_shutdown(server, api):
    ana = await register(api, "Ana")
    stream = SseClient(server, ana.token)
    await stream.next("hello")
    await server.app.hub.close_all()
    result = await asyncio.wait_for(stream.response, 2.0)
    assert result.code == 200  # the response finished cleanly: EventSource reconnects with Last-Event-ID
    await stream.close()


async def stalled_reader(port: int, request: bytes, until_seen: bytes) -> socket.socket:
    """A client with a tiny receive window that reads up to ``until_seen``, then never again."""
    loop = asyncio.get_running_loop()
    stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # the server's bytes pile up on its side
    stalled.setblocking(False)
    try:
        await loop.sock_connect(stalled, ("127.0.0.1", port))
        await loop.sock_sendall(stalled, request)
        received = b""
        while until_seen not in received:
            chunk = await asyncio.wait_for(loop.sock_recv(stalled, 4096), 5.0)
            assert chunk, f"closed before {until_seen!r}: {received!r}"
            received += chunk
    except BaseException:
        stalled.close()
        raise
    return stalled


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("server_overrides", [{"realtime": {"send_buffer_kb": 1}}])
async def test_an_sse_reader_that_never_reads_has_its_stream_ended(server, api):
    """Spec §5: overflow closes a WebSocket with 4008 and ends an SSE stream; only the first was tested."""
    ana, cid = await register(api, "Ana"), await register(api, "Cid")
    team = await workspace_with(api, ana, cid)
    hub = server.app.hub
    request = (f"GET /api/v1/events?access_token={cid.token} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
               "Accept: text/event-stream\r\n\r\n").encode()
    stalled = await stalled_reader(server.port, request, b"event: hello")
    try:
        [sub] = hub.connections_of(cid.id)
        sent = 0
        big = "x" * 4000
        while hub.is_online(cid.id) and sent < 100:
            await post(api, channel_path(team), big, ana.token)
            sent += 1
        assert not hub.is_online(cid.id), "the stalled stream was never cut off"
        assert sub.close_code == CLOSE_OVERFLOW
        loop = asyncio.get_running_loop()
        while await asyncio.wait_for(loop.sock_recv(stalled, 65536), 5.0):  # what was in flight, then EOF
            pass
    finally:
        stalled.close()


def _upgrade(port: int, token: str) -> bytes:
    return (f"GET /api/v1/realtime?access_token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n").encode()


def _close_code(stream: bytes) -> int | None:
    """Walk the server's frames (after the HTTP head) and return the close frame's code."""
    _, _, data = stream.partition(b"\r\n\r\n")
    while len(data) >= 2:
        opcode, size = data[0] & 0x0F, data[1] & 0x7F
        offset = 2
        if size == 126:
            size, offset = struct.unpack("!H", data[2:4])[0], 4
        elif size == 127:
            size, offset = struct.unpack("!Q", data[2:10])[0], 10
        if len(data) < offset + size:
            return None
        if opcode == 0x8:
            return int(struct.unpack("!H", data[offset:offset + 2])[0])
        data = data[offset + size:]
    return None


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("server_overrides", [{"realtime": {"send_buffer_kb": 1}}])
async def test_a_reader_that_never_reads_is_closed_and_others_keep_receiving(server, api, rt):
    ana, bea, cid = await register(api, "Ana"), await register(api, "Bea"), await register(api, "Cid")
    team = await workspace_with(api, ana, bea, cid)
    healthy, _ = await rt.hello(bea.token)
    loop = asyncio.get_running_loop()
    stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # a tiny window: the server's bytes pile up
    stalled.setblocking(False)
    try:
        await loop.sock_connect(stalled, ("127.0.0.1", server.port))
        await loop.sock_sendall(stalled, _upgrade(server.port, cid.token))
        received = b""
        while b'"type":"hello"' not in received:  # read the upgrade and the hello, then never again
            received += await asyncio.wait_for(loop.sock_recv(stalled, 4096), 5.0)
        assert server.app.hub.is_online(cid.id)
        sent = []
        big = "x" * 4000
        while server.app.hub.is_online(cid.id) and len(sent) < 100:
            sent.append(await post(api, channel_path(team), big, ana.token))
        assert not server.app.hub.is_online(cid.id), "the stalled reader was never cut off"
        got = await events(healthy, len(sent))
        assert [e["data"]["id"] for e in got] == [m["id"] for m in sent]  # the healthy reader missed nothing
        while _close_code(received) is None:
            chunk = await asyncio.wait_for(loop.sock_recv(stalled, 65536), 5.0)
            assert chunk, "closed without a close frame"
            received += chunk
        assert _close_code(received) == 4008
    finally:
        stalled.close()
    # The cut-off reader resumes like any reconnecting client.
    again, _ = await rt.hello(cid.token, f"after={got[0]['seq'] - 1}")
    replay = await until(again, "message.created")
    assert replay[-1]["data"]["id"] == sent[0]["id"]
