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
from tests.support import register, workspace_with


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

    async def ask(self, request: bytes) -> tuple[int, dict[str, str], bytes]:
        """Send one request and read its answer."""
        await self.send(request)
        return await self.answer()

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


async def until(condition, within_s: float = 10.0) -> None:
    """Let the server (same loop) run until ``condition()``: it acts on what a socket received, on its
    own loop turns, and a read may wait for the database's thread. Fails after ``within_s``."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the server did not get there")
        await asyncio.sleep(0)


@pytest.mark.gen_test(timeout=30)
async def test_a_connection_reads_in_the_lane_until_it_asks_something_else(api, server):
    team = await make_team(api)
    path = history(team)
    assert (await api.post(path, {"content": "one"}, token=team.member.token)).status == 201
    stats, lane = server.app.http.lean_stats, server.app.fast_lane
    raw = await Raw.open(server.port)
    for _ in range(3):
        status, headers, body = await raw.ask(get(path, team.owner.token))
        assert status == 200 and contents(body) == ["one"] and "Connection" not in headers
    assert stats.in_fast_lane == 3 and len(lane.connections) == 1

    await raw.send(get("/me", team.owner.token))  # the lane does not take this route
    assert (await raw.answer())[0] == 200
    assert not lane.connections  # Tornado holds the connection now
    assert (await api.post(path, {"content": "two"}, token=team.member.token)).status == 201
    status, _, body = await raw.ask(get(path, team.owner.token))
    assert status == 200 and contents(body) == ["two", "one"]
    assert (stats.answered, stats.in_fast_lane) == (4, 3)  # Tornado's lean path answered that one
    # ... and the lane takes the connection back before its next request.
    await until(lambda: len(lane.connections) == 1)
    for _ in range(2):
        status, _, body = await raw.ask(get(path, team.owner.token))
        assert status == 200 and contents(body) == ["two", "one"]
    assert (stats.answered, stats.in_fast_lane) == (6, 5)
    raw.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_connection_that_only_asks_other_routes_stays_with_tornado(api, server):
    team = await make_team(api)
    lane = server.app.fast_lane
    raw = await Raw.open(server.port)
    for _ in range(3):
        assert (await raw.ask(get("/me", team.member.token)))[0] == 200
        assert not lane.connections  # no read answered by the lean path: nothing to take back
    raw.close()


@pytest.mark.gen_test(timeout=30)
async def test_pipelined_requests_are_answered_in_order_across_the_hand_over(api, server):
    team = await make_team(api)
    path = history(team)
    for text in ("a", "b"):
        assert (await api.post(path, {"content": text}, token=team.member.token)).status == 201
    raw = await Raw.open(server.port)
    # After /me, Tornado has read the two GETs behind it into its buffer: the lane must not take the
    # connection back while they are there, or they would be lost.
    await raw.send(get(f"{path}?limit=1", team.owner.token) + post(path, team.owner.token, {"content": "c"})
                   + get(path, team.owner.token) + get("/me", team.owner.token) + get(path, team.owner.token)
                   + get(f"{path}?limit=1", team.owner.token))
    answers = [await raw.answer() for _ in range(6)]
    assert [status for status, _, _ in answers] == [200, 201, 200, 200, 200, 200]
    assert contents(answers[0][2]) == ["b"] and contents(answers[2][2]) == ["c", "b", "a"]
    assert json.loads(answers[3][2])["id"] == team.owner.id
    assert contents(answers[4][2]) == ["c", "b", "a"] and contents(answers[5][2]) == ["c"]
    stats = server.app.http.lean_stats
    assert (stats.answered, stats.in_fast_lane, stats.written_in_fast_lane) == (4, 2, 3)  # 2 sends by api
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
        assert (await raw.ask(request))[0] == status, request[:120]
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
    assert (await raw.ask(request[20:]))[0] == 200
    assert server.app.http.lean_stats.in_fast_lane == 0
    raw.close()


@pytest.mark.gen_test(timeout=30)
async def test_connection_close_is_answered_then_the_connection_ends(api, server):
    team = await make_team(api)
    raw = await Raw.open(server.port)
    status, headers, _ = await raw.ask(get(history(team), team.owner.token, "Connection: close"))
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
    assert (await raw.ask(get(history(team), team.outsider.token)))[0] == 404
    assert (stats.answered, stats.handed_on) == (0, 1)  # the lane's try; Tornado's lean path did not retry
    assert not server.app.http.refused  # the mark was used up by that one request
    assert (await raw.ask(get(history(team), team.owner.token)))[0] == 200
    assert (stats.answered, stats.in_fast_lane) == (1, 0)
    raw.close()


@pytest.mark.gen_test(timeout=30)
async def test_idle_connections_are_closed_after_the_idle_timeout(api, server):
    team = await make_team(api)
    lane = server.app.fast_lane
    reader = await Raw.open(server.port)
    assert (await reader.ask(get(history(team), team.owner.token)))[0] == 200
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
    assert (await raw.ask(get(history(team), team.owner.token)))[0] == 200
    await server.restart()
    assert await raw.at_end()
    raw.close()


@pytest.mark.parametrize("server_overrides", [{"server": {"fast_lane": False}}])
@pytest.mark.gen_test(timeout=30)
async def test_with_the_lane_off_tornado_reads_every_request(api, server):
    team = await make_team(api)
    raw = await Raw.open(server.port)
    assert (await raw.ask(get(history(team), team.owner.token)))[0] == 200
    assert server.app.fast_lane is None
    assert (server.app.http.lean_stats.answered, server.app.http.lean_stats.in_fast_lane) == (1, 0)
    raw.close()


# Headers that differ between two answers made a moment apart.
VARYING = {"Date", "X-Ratelimit-Remaining", "Content-Length"}


def tornado_path(path: str) -> str:
    """The same route with a query string: the lane takes no POST with one, the handler ignores it."""
    return f"{path}?via=tornado"


async def answered_alike(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """``request``'s answer on a connection of its own, after checking that Tornado, reading the same
    request (the lane takes no POST with a query), gives the same status and body."""
    raw, handler = await Raw.open(port), await Raw.open(port)
    try:
        answer = await raw.ask(request)
        assert (await handler.ask(request.replace(b" HTTP/1.1", b"?via=tornado HTTP/1.1", 1)))[::2] == answer[::2]
        return answer
    finally:
        raw.close()
        handler.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_send_is_answered_in_the_lane_as_the_handler_answers_it(api, server):
    team = await make_team(api)
    path = history(team)
    stats = server.app.http.lean_stats
    raw = await Raw.open(server.port)
    sent = stats.written_in_fast_lane
    lane_status, lane_headers, lane_body = await raw.ask(post(path, team.member.token, {"content": "lane"}))
    assert stats.written_in_fast_lane == sent + 1 and len(server.app.fast_lane.connections) == 1
    status, headers, body = await raw.ask(post(tornado_path(path), team.member.token, {"content": "handler"}))
    assert stats.written_in_fast_lane == sent + 1 and not server.app.fast_lane.connections
    raw.close()

    assert lane_status == status == 201
    assert {k: v for k, v in lane_headers.items() if k not in VARYING} == \
        {k: v for k, v in headers.items() if k not in VARYING}
    lane_message, message = json.loads(lane_body)["data"], json.loads(body)["data"]
    assert lane_message.keys() == message.keys()
    assert (lane_message["original_content"], message["original_content"]) == ("lane", "handler")
    assert {k: v for k, v in lane_message.items() if k not in ("id", "original_content", "content", "created_at",
                                                               "updated_at", "display_content")} == \
        {k: v for k, v in message.items() if k not in ("id", "original_content", "content", "created_at",
                                                       "updated_at", "display_content")}
    read = await api.get(path, token=team.owner.token)
    assert contents(read.body) == ["handler", "lane"]


@pytest.mark.gen_test(timeout=30)
async def test_a_send_refused_before_it_writes_is_the_handlers_and_writes_nothing(api, server):
    team = await make_team(api)
    path = history(team)
    stats = server.app.http.lean_stats
    sent, handed = stats.written_in_fast_lane, stats.handed_on
    cases = [
        (post(path, team.member.token, {"content": ""}), 422),
        (post(path, team.member.token, {"content": "x" * 10_001}), 422),
        (post(path, team.outsider.token, {"content": "hi"}), 404),
        (post(path, "01arz3ndektsv4rrffq69g5fav|nope", {"content": "hi"}), 401),
        (post(path, team.member.token, {"content": "hi"})[:-1] + b"{", 400),  # the body is not JSON
    ]
    for request, status in cases:
        assert (await answered_alike(server.port, request))[0] == status, request[-60:]
    assert stats.written_in_fast_lane == sent
    assert stats.handed_on == handed + len(cases) - 1  # the long body never fit a peek: not even tried
    assert contents((await api.get(path, token=team.owner.token)).body) == []


@pytest.mark.parametrize("server_overrides", [{"server": {"max_body_mb": 0.001}}])  # 1,048 bytes
@pytest.mark.gen_test(timeout=30)
async def test_a_send_over_a_small_body_limit_is_refused_as_tornado_refuses_it(api, server):
    """The lane reads up to 8 KiB; it took any send that fit, whatever server.max_body_mb said."""
    team = await make_team(api)
    path = history(team)
    stats = server.app.http.lean_stats
    sent = stats.written_in_fast_lane
    assert (await answered_alike(server.port, post(path, team.member.token, {"content": "x" * 2000})))[0] == 413
    assert stats.written_in_fast_lane == sent
    assert (await api.post(path, {"content": "fits"}, token=team.member.token)).status == 201
    assert contents((await api.get(path, token=team.owner.token)).body) == ["fits"]


@pytest.mark.gen_test(timeout=30)
async def test_a_send_that_fails_in_its_write_is_answered_by_the_lane_as_the_handler_would(api, server):
    team = await make_team(api)
    path = history(team)
    stats = server.app.http.lean_stats
    sent = stats.written_in_fast_lane
    orphan = {"content": "re", "parent_message_id": "01arz3ndektsv4rrffq69g5fav"}  # no such message
    raw = await Raw.open(server.port)
    lane = await raw.ask(post(path, team.member.token, orphan))
    handler = await raw.ask(post(tornado_path(path), team.member.token, orphan))
    raw.close()
    assert stats.written_in_fast_lane == sent + 1  # the lane answered its own failed write
    assert lane[0] == handler[0] == 422 and lane[2] == handler[2]
    assert json.loads(lane[2])["errors"] == {"parent_message_id": ["The selected parent_message_id is invalid."]}


@pytest.mark.parametrize("server_overrides", [{"limits": {"api_per_minute": 2}}])
@pytest.mark.gen_test(timeout=30)
async def test_the_rate_limit_counts_a_send_once_and_the_handler_answers_429(api, server):
    ana = await register(api, "Ana")
    workspace = await workspace_with(api, ana)  # ana's token has used its two requests this minute
    path = f"/workspaces/{workspace['id']}/channels/{workspace['general']['id']}/messages"

    async def new_token() -> str:  # a new token: a new window
        login = await api.post("/auth/app/login", {"email": ana.email, "password": ana.password, "device_name": "t"})
        return login.json["access_token"]

    token = await new_token()
    raw = await Raw.open(server.port)
    remaining = []
    for text in ("one", "two"):
        status, headers, _ = await raw.ask(post(path, token, {"content": text}))
        assert status == 201
        remaining.append(headers["X-Ratelimit-Remaining"])
    assert remaining == ["1", "0"]
    status, headers, _ = await raw.ask(post(path, token, {"content": "three"}))
    assert status == 429 and headers["Retry-After"]
    assert not server.app.fast_lane.connections  # handed over: the handler answered the 429
    raw.close()
    assert contents((await api.get(path, token=await new_token())).body) == ["two", "one"]


@pytest.mark.gen_test(timeout=30)
async def test_a_send_whose_body_is_not_all_there_goes_to_tornado(api, server):
    team = await make_team(api)
    path = history(team)
    request = post(path, team.member.token, {"content": "slow"})
    lane = server.app.fast_lane
    raw = await Raw.open(server.port)
    await until(lambda: len(lane.connections) == 1)
    await raw.send(request[:-5])  # the head and part of the body
    await until(lambda: not lane.connections)
    assert (await raw.ask(request[-5:]))[0] == 201
    raw.close()
    assert contents((await api.get(path, token=team.owner.token)).body) == ["slow"]


@pytest.mark.gen_test(timeout=30)
async def test_stopping_the_server_finishes_a_send_being_made_in_the_lane(api, server):
    team = await make_team(api)
    path = history(team)
    lane = server.app.fast_lane
    raw = await Raw.open(server.port)
    await raw.send(post(path, team.member.token, {"content": "last words"}))
    await until(lambda: any(connection.task is not None for connection in lane.connections))
    await server.stop()  # while the send is on its way to the database
    assert (await raw.answer())[0] == 201
    assert await raw.at_end()
    raw.close()
    await server.start()
    assert contents((await api.get(path, token=team.owner.token)).body) == ["last words"]
