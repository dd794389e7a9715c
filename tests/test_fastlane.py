"""The fast lane (rosetta/fastlane.py): a connection's plain history reads answered before Tornado sees them.

Requests go over raw sockets, so each test decides what shares a connection: the lane holds a
connection until its first request it does not take, then Tornado has it for good. Which path
answered is read from the real server (``lean_stats``, ``fast_lane.connections``).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest

from rosetta.app import IDLE_TIMEOUT_S
from rosetta.fastlane import PEEK_BYTES
from tests.rest_support import make_team


class Raw:
    """One HTTP/1.1 connection written and read by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, receive_buffer: int | None = None) -> Raw:
        if receive_buffer is None:
            return cls(*await asyncio.open_connection("127.0.0.1", port))
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)  # before connecting: the window
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        return cls(*await asyncio.open_connection(sock=sock))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self) -> tuple[int, dict[str, str], bytes]:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name] = value.strip()
        body = await asyncio.wait_for(self.reader.readexactly(int(headers.get("Content-Length", "0"))), 10)
        return int(lines[0].split(" ")[1]), headers, body

    async def at_end(self) -> bool:
        return await asyncio.wait_for(self.reader.read(1), 10) == b""

    def close(self) -> None:
        self.writer.close()


def get(path: str, token: str | None, *extra: str, version: str = "HTTP/1.1") -> bytes:
    lines = [f"GET /api/v1{path} {version}", "Host: rosetta.test", "Accept: application/json"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join([*lines, *extra]) + "\r\n\r\n").encode("latin-1")


def post(path: str, token: str, body: dict) -> bytes:
    payload = json.dumps(body).encode()
    return (f"POST /api/v1{path} HTTP/1.1\r\nHost: rosetta.test\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n").encode() + payload


def history(team) -> str:
    return f"/workspaces/{team.id}/channels/{team.general['id']}/messages"


def contents(body: bytes) -> list[str]:
    return [m["original_content"] for m in json.loads(body)["data"]]


async def until(condition, turns: int = 1000) -> None:
    """Let the server (same loop) run until ``condition()``: it acts on what a socket received."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the server did not get there")


@pytest.mark.gen_test(timeout=30)
async def test_a_connection_reads_in_the_lane_until_it_asks_something_else(api, server):
    team = await make_team(api)
    path = history(team)
    assert (await api.post(path, {"content": "one"}, token=team.member.token)).status == 201
    stats, lane = server.app.http.lean_stats, server.app.fast_lane
    raw = await Raw.open(server.port)
    for _ in range(3):
        await raw.send(get(path, team.owner.token))
        status, headers, body = await raw.answer()
        assert status == 200 and contents(body) == ["one"] and "Connection" not in headers
    assert stats.in_fast_lane == 3 and len(lane.connections) == 1

    await raw.send(post(path, team.owner.token, {"content": "two"}))  # the lane does not take a POST
    assert (await raw.answer())[0] == 201
    assert not lane.connections  # Tornado holds the connection now
    await raw.send(get(path, team.owner.token))
    status, _, body = await raw.answer()
    assert status == 200 and contents(body) == ["two", "one"]
    assert (stats.answered, stats.in_fast_lane) == (4, 3)  # Tornado's lean path answered that one
    # ... and the lane takes the connection back before its next request.
    await until(lambda: len(lane.connections) == 1)
    for _ in range(2):
        await raw.send(get(path, team.owner.token))
        status, _, body = await raw.answer()
        assert status == 200 and contents(body) == ["two", "one"]
    assert (stats.answered, stats.in_fast_lane) == (6, 5)
    raw.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_connection_that_only_sends_stays_with_tornado(api, server):
    team = await make_team(api)
    path = history(team)
    lane = server.app.fast_lane
    raw = await Raw.open(server.port)
    for i in range(3):
        await raw.send(post(path, team.member.token, {"content": f"m{i}"}))
        assert (await raw.answer())[0] == 201
        assert not lane.connections  # no read answered by the lean path: nothing to take back
    raw.close()


@pytest.mark.gen_test(timeout=30)
async def test_pipelined_requests_are_answered_in_order_across_the_hand_over(api, server):
    team = await make_team(api)
    path = history(team)
    for text in ("a", "b"):
        assert (await api.post(path, {"content": text}, token=team.member.token)).status == 201
    raw = await Raw.open(server.port)
    # After the POST, Tornado has read the two GETs behind it into its buffer: the lane must not take
    # the connection back while they are there, or they would be lost.
    await raw.send(get(f"{path}?limit=1", team.owner.token) + get(path, team.owner.token)
                   + post(path, team.owner.token, {"content": "c"}) + get(path, team.owner.token)
                   + get(f"{path}?limit=1", team.owner.token))
    answers = [await raw.answer() for _ in range(5)]
    assert [status for status, _, _ in answers] == [200, 200, 201, 200, 200]
    assert contents(answers[0][2]) == ["b"] and contents(answers[1][2]) == ["b", "a"]
    assert contents(answers[3][2]) == ["c", "b", "a"] and contents(answers[4][2]) == ["c"]
    assert (server.app.http.lean_stats.answered, server.app.http.lean_stats.in_fast_lane) == (4, 2)
    raw.close()


@pytest.mark.gen_test(timeout=30)
async def test_heads_the_lane_does_not_take_reach_tornado_unread(api, server):
    team = await make_team(api)
    path, token = history(team), team.owner.token
    stats = server.app.http.lean_stats
    cases = [
        (get(path, token, version="HTTP/1.0"), 200),  # keep-alive rules of its own
        (get(path, token, "Content-Length: 0"), 200),
        (get(path, token, "Connection: upgrade"), 200),
        (get(path, token, f"X-Pad: {'p' * PEEK_BYTES}"), 200),  # longer than one peek
        (get(f"{path}?limit=1&unread=1", token), 200),  # an argument the read does not know
        (get(path.replace("/messages", "/%6Dessages"), token), 404),  # Tornado does not decode it either
        (get(path, token, f"Authorization: Bearer {token}"), 401),  # twice: Tornado joins the two
        (get(path, token, "X-Folded: a", " b"), 400),  # an obsolete folded line: Tornado refuses it
        (get(path, token, "X-Note: a\x01b"), 400),  # a control character in a value: so does Tornado
        (get("/me", token), 200),  # a route without a lean read
    ]
    for request, status in cases:
        raw = await Raw.open(server.port)
        await raw.send(request)
        assert (await raw.answer())[0] == status, request[:120]
        raw.close()
    assert stats.in_fast_lane == 0
    assert stats.answered == 3  # Tornado's lean path: the HTTP/1.0, upgrade and padded reads


@pytest.mark.gen_test(timeout=30)
async def test_a_head_split_over_two_reads_goes_to_tornado(api, server):
    team = await make_team(api)
    request = get(history(team), team.owner.token)
    lane = server.app.fast_lane
    raw = await Raw.open(server.port)
    await until(lambda: len(lane.connections) == 1)
    await raw.send(request[:20])
    await until(lambda: not lane.connections)  # handed over on the first, incomplete read
    await raw.send(request[20:])
    assert (await raw.answer())[0] == 200
    assert server.app.http.lean_stats.in_fast_lane == 0
    raw.close()


@pytest.mark.gen_test(timeout=30)
async def test_connection_close_is_answered_then_the_connection_ends(api, server):
    team = await make_team(api)
    raw = await Raw.open(server.port)
    await raw.send(get(history(team), team.owner.token, "Connection: close"))
    status, headers, _ = await raw.answer()
    assert status == 200 and headers["Connection"] == "close"
    assert await raw.at_end()
    raw.close()
    assert not server.app.fast_lane.connections
    assert server.app.http.lean_stats.in_fast_lane == 1


@pytest.mark.gen_test(timeout=30)
async def test_a_refused_read_is_answered_by_the_handler_and_read_only_once(api, server):
    team = await make_team(api)
    stats = server.app.http.lean_stats
    raw = await Raw.open(server.port)
    await raw.send(get(history(team), team.outsider.token))
    assert (await raw.answer())[0] == 404
    assert (stats.answered, stats.handed_on) == (0, 1)  # the lane's try; Tornado's lean path did not retry
    assert not server.app.http.refused  # the mark was used up by that one request
    await raw.send(get(history(team), team.owner.token))
    assert (await raw.answer())[0] == 200
    assert (stats.answered, stats.in_fast_lane) == (1, 0)
    raw.close()


@pytest.mark.gen_test(timeout=30)
async def test_idle_connections_are_closed_after_the_idle_timeout(api, server):
    team = await make_team(api)
    lane = server.app.fast_lane
    reader = await Raw.open(server.port)
    await reader.send(get(history(team), team.owner.token))
    assert (await reader.answer())[0] == 200
    silent = await Raw.open(server.port)  # never sends a byte
    await until(lambda: len(lane.connections) == 2)
    assert lane.close_idle(time.monotonic()) == 0
    assert lane.close_idle(time.monotonic() + IDLE_TIMEOUT_S + 1) == 2
    assert await reader.at_end() and await silent.at_end()
    reader.close()
    silent.close()
    assert not lane.connections


@pytest.mark.gen_test(timeout=60)
async def test_an_answer_larger_than_the_kernel_takes_at_once_arrives_whole(api, server):
    team = await make_team(api)
    path = history(team)
    for i in range(100):
        content = f"{i:03d} " + "x" * 9_990
        assert (await api.post(path, {"content": content}, token=team.member.token)).status == 201
    expected = await api.get(f"{path}?limit=100&unread=1", token=team.owner.token)  # the handler's answer
    lane = server.app.fast_lane
    raw = await Raw.open(server.port, receive_buffer=4096)
    await until(lambda: len(lane.connections) == 1)
    for connection in lane.connections:  # a small kernel buffer on the server's side: it takes ~2 MB in parts
        connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    await raw.send(get(f"{path}?limit=100", team.owner.token))
    await until(lambda: any(connection.pending is not None for connection in lane.connections))
    status, _, body = await raw.answer()
    assert status == 200 and len(body) > 1_000_000 and body == expected.body
    await until(lambda: not any(connection.pending is not None for connection in lane.connections))
    await raw.send(get(f"{path}?limit=1", team.owner.token))  # and the connection reads again after
    assert contents((await raw.answer())[2]) == ["099 " + "x" * 9_990]
    raw.close()


@pytest.mark.gen_test(timeout=30)
async def test_stopping_the_server_closes_the_lanes_connections(api, server):
    team = await make_team(api)
    raw = await Raw.open(server.port)
    await raw.send(get(history(team), team.owner.token))
    assert (await raw.answer())[0] == 200
    await server.restart()
    assert await raw.at_end()
    raw.close()


@pytest.mark.parametrize("server_overrides", [{"server": {"fast_lane": False}}])
@pytest.mark.gen_test(timeout=30)
async def test_with_the_lane_off_tornado_reads_every_request(api, server):
    team = await make_team(api)
    raw = await Raw.open(server.port)
    await raw.send(get(history(team), team.owner.token))
    assert (await raw.answer())[0] == 200
    assert server.app.fast_lane is None
    assert (server.app.http.lean_stats.answered, server.app.http.lean_stats.in_fast_lane) == (1, 0)
    raw.close()
