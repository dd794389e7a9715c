"""Client frames and handshakes over real sockets: typing and read frames are bounded per connection,
ids that name nobody stay out of the shared audience cache, a resume point past the log's head is told
to resync, and every handshake refusal comes in the JSON envelope."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from tornado.websocket import WebSocketClientConnection

from rosetta.handlers.realtime import READ_EVERY_S, READ_MESSAGES, TYPING_EVERY_S, TYPING_PLACES
from rosetta.ids import new_id
from rosetta.realtime.audience import CACHED_AUDIENCES
from rosetta.realtime.throttle import Throttle
from rosetta.store.db import Database
from tests.support import frame, register, workspace_with
from tests.test_realtime import channel_path, events, post, until
from tests.test_realtime_streams import SseClient

UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    """Every statement the database's readers run meanwhile, with its values (sqlite3's trace hook)."""
    seen: list[str] = []
    readers = {id(reader): reader for reader in (db.reader for _ in range(db.reader_count))}
    for reader in readers.values():
        reader.raw.set_trace_callback(seen.append)
    try:
        yield seen
    finally:
        for reader in readers.values():
            reader.raw.set_trace_callback(None)


def audience_reads(seen: list[str], channel_id: str) -> int:
    """How often a channel's readers were read from the database (store.channels.readers)."""
    return sum(1 for sql in seen if "channel_access" in sql and f"'{channel_id}'" in sql)


def place_reads(seen: list[str], message_id: str | None = None) -> int:
    """How often a message's place was looked up (store.realtime.message_place), for one id or any."""
    return sum(1 for sql in seen if "deleted_at FROM messages WHERE id" in sql
               and (message_id is None or f"'{message_id}'" in sql))


async def send(ws: WebSocketClientConnection, *frames: dict[str, Any]) -> None:
    for body in frames:
        await ws.write_message(json.dumps(body))


async def quiet(ws: WebSocketClientConnection) -> list[dict[str, Any]]:
    """Every frame the server wrote to ``ws`` before it handled a ping, presence aside (it comes on
    its own timer). Client frames are handled in order: all sent before the ping are dealt with."""
    await send(ws, {"type": "ping"})
    seen = []
    while (got := await frame(ws)) != {"type": "pong"}:
        assert got is not None, "closed while waiting for the pong"
        if got.get("event") != "presence.updated":
            seen.append(got)
    return seen


def named(frames: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [f for f in frames if f.get("event") == name]


def typing(channel_id: str) -> dict[str, Any]:
    return {"type": "typing", "channel_id": channel_id}


# Typing ------------------------------------------------------------------------------------------

@pytest.mark.gen_test(timeout=30)
async def test_typing_about_an_unknown_or_hidden_place_costs_one_lookup_per_window(server, api, rt, clock):
    """The throttle was recorded only after the visibility check passed: every frame naming a place
    the caller cannot see (or that does not exist) ran the readers query again."""
    ana, cid = await register(api, "Ana"), await register(api, "Cid")
    team = await workspace_with(api, ana)
    ws_c, _ = await rt.hello(cid.token)
    unknown, hidden = new_id(), team["general"]["id"]
    with statements(server.app.db) as seen:
        for _ in range(5):
            await send(ws_c, typing(unknown), typing(hidden))
        assert await quiet(ws_c) == []  # no existence leak: both are dropped without a word
    assert audience_reads(seen, unknown) == 1
    assert audience_reads(seen, hidden) <= 1  # a real audience: cached besides
    clock.advance(seconds=TYPING_EVERY_S)  # the window is over: one lookup again
    with statements(server.app.db) as seen:
        await send(ws_c, typing(unknown), typing(unknown))
        assert await quiet(ws_c) == []
    assert audience_reads(seen, unknown) == 1


@pytest.mark.gen_test(timeout=30)
async def test_typing_in_more_places_than_the_bound_is_dropped_until_the_window_ends(server, api, rt, clock):
    ana, bea = await register(api, "Ana"), await register(api, "Bea")
    team = await workspace_with(api, ana, bea)
    general = team["general"]["id"]
    ws_a, _ = await rt.hello(ana.token)
    ws_b, _ = await rt.hello(bea.token)
    made_up = [new_id() for _ in range(TYPING_PLACES + 10)]
    with statements(server.app.db) as seen:
        await send(ws_a, *(typing(place) for place in made_up))
        await send(ws_a, typing(general))  # a real place, but the connection's budget is spent
        assert await quiet(ws_a) == []
    assert sum(audience_reads(seen, place) for place in made_up) == TYPING_PLACES
    assert named(await quiet(ws_b), "typing") == []
    clock.advance(seconds=TYPING_EVERY_S)
    await send(ws_a, typing(general))
    assert await quiet(ws_a) == []
    [relayed] = named(await quiet(ws_b), "typing")
    assert relayed["data"] == {"channel_id": general, "user_id": ana.id}


def test_the_throttle_record_stays_bounded_and_a_clock_set_back_reopens_windows() -> None:
    throttle = Throttle(every_s=3.0, max_keys=2)
    assert throttle.allow("a", 100.0) and throttle.allow("b", 101.0)
    assert not throttle.allow("a", 102.0) and not throttle.allow("c", 102.0)
    assert len(throttle) == 2
    assert throttle.allow("c", 103.0)  # "a" expired and made room; "b" is still inside its window
    assert len(throttle) == 2 and not throttle.allow("b", 103.5)
    assert throttle.allow("b", 50.0)  # the clock went back: a window is not held closed by it


# Read --------------------------------------------------------------------------------------------

@pytest.mark.gen_test(timeout=30)
async def test_read_frames_are_relayed_once_per_window_and_bounded_per_connection(server, api, rt, clock):
    """Every read frame ran a message lookup and, for a visible message, a relay to every worker."""
    ana, bea = await register(api, "Ana"), await register(api, "Bea")
    team = await workspace_with(api, ana, bea)
    message = await post(api, channel_path(team), "read me", bea.token)
    phone, _ = await rt.hello(ana.token)
    laptop, _ = await rt.hello(ana.token)
    read = {"type": "read", "message_id": message["id"]}
    await send(phone, read, read, read)
    assert await quiet(phone) == []
    [relayed] = named(await quiet(laptop), "read")
    assert relayed["data"]["message_id"] == message["id"]

    made_up = [new_id() for _ in range(READ_MESSAGES + 5)]
    with statements(server.app.db) as seen:
        await send(phone, *({"type": "read", "message_id": mid} for mid in made_up))
        assert await quiet(phone) == []
    assert place_reads(seen) == READ_MESSAGES - 1  # the real message holds one place in this window
    clock.advance(seconds=READ_EVERY_S)
    await send(phone, read)
    assert await quiet(phone) == []
    [again] = named(await quiet(laptop), "read")
    assert again["data"]["message_id"] == message["id"]


# The shared audience cache ---------------------------------------------------------------------

@pytest.mark.gen_test(timeout=60)
async def test_ids_that_name_nobody_do_not_push_real_audiences_out_of_the_cache(server, api, rt, clock):
    """A made-up id's empty answer was kept in the shared LRU of CACHED_AUDIENCES entries: enough of
    them evicted the audiences deliveries reuse, so every delivery read its readers again."""
    ana, bea, cid = await register(api, "Ana"), await register(api, "Bea"), await register(api, "Cid")
    team = await workspace_with(api, ana, bea)
    general = team["general"]["id"]
    ws_b, _ = await rt.hello(bea.token)
    ws_c, _ = await rt.hello(cid.token)
    await post(api, channel_path(team), "one", ana.token)
    assert (await until(ws_b, "message.created"))[-1]["data"]["original_content"] == "one"
    for _ in range(0, CACHED_AUDIENCES, TYPING_PLACES):  # as many as the cache holds, a window at a time
        await send(ws_c, *(typing(new_id()) for _ in range(TYPING_PLACES)))
        assert await quiet(ws_c) == []
        clock.advance(seconds=TYPING_EVERY_S)
    with statements(server.app.db) as seen:
        await post(api, channel_path(team), "two", ana.token)
        assert (await until(ws_b, "message.created"))[-1]["data"]["original_content"] == "two"
    assert audience_reads(seen, general) == 0  # the channel's readers were still kept


# Resume past the head ------------------------------------------------------------------------------

@pytest.mark.gen_test(timeout=30)
async def test_a_resume_point_past_the_log_head_gets_resync_required_then_live(server, api, rt):
    """After a restore from an older backup, clients resume from seqs the log never issued: they were
    served nothing and went live silently, with new seqs below the point they hold."""
    ana, bea = await register(api, "Ana"), await register(api, "Bea")
    team = await workspace_with(api, ana, bea)
    _, hello = await rt.hello(bea.token)
    beyond = hello["seq"] + 1000

    by_query, _ = await rt.hello(bea.token, f"after={beyond}")
    told = await frame(by_query)
    assert told is not None and told["type"] == "resync_required", told
    assert 1 <= told["oldest_seq"] <= hello["seq"]  # where the retained log begins

    live, _ = await rt.hello(bea.token)
    await send(live, {"type": "resume", "after": beyond})
    assert await frame(live) == told

    stream = SseClient(server, bea.token, last_event_id=beyond)
    await stream.next("hello")
    resync = await stream.next()
    assert resync["event"] == "resync_required" and resync["data"] == told and "id" not in resync

    sent = await post(api, channel_path(team), "after the resync", ana.token)
    for ws in (by_query, live):  # then live, from the head
        [got] = await events(ws, 1)
        assert got["data"]["id"] == sent["id"] and got["seq"] > hello["seq"]
    assert (await stream.next("message.created"))["data"]["id"] == sent["id"]
    await stream.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_resume_point_at_the_head_is_no_resync(server, api, rt):
    ana, bea = await register(api, "Ana"), await register(api, "Bea")
    team = await workspace_with(api, ana, bea)
    _, hello = await rt.hello(bea.token)
    ws, _ = await rt.hello(bea.token, f"after={hello['seq']}")
    sent = await post(api, channel_path(team), "next", ana.token)
    [got] = await events(ws, 1)  # a resync_required would come first
    assert got["type"] == "event" and got["data"]["id"] == sent["id"]


# Handshake refusals ----------------------------------------------------------------------------

@pytest.mark.gen_test(timeout=30)
async def test_handshake_refusals_come_in_the_json_envelope(server, api):
    """Tornado answered these in plain text (400) or with an empty body (426) under a JSON content type."""
    ana = await register(api, "Ana")
    cases = [
        ({**UPGRADE, "Connection": "keep-alive"}, 400, 'A WebSocket handshake needs "Connection: Upgrade".'),
        ({k: v for k, v in UPGRADE.items() if k != "Sec-WebSocket-Key"}, 400,
         'A WebSocket handshake needs a "Sec-WebSocket-Key" header.'),
        ({**UPGRADE, "Sec-WebSocket-Version": "12"}, 426, "Only WebSocket version 13 is supported."),
        ({k: v for k, v in UPGRADE.items() if k != "Sec-WebSocket-Version"}, 426,
         "Only WebSocket version 13 is supported."),
    ]
    for headers, status, message in cases:
        answer = await api.get("/realtime", token=ana.token, headers=headers)
        assert answer.status == status, (headers, answer)
        assert answer.headers["Content-Type"].startswith("application/json")
        assert answer.json == {"message": message}, headers
    version = await api.get("/realtime", token=ana.token, headers={**UPGRADE, "Sec-WebSocket-Version": "8"})
    assert version.status == 426 and version.headers["Sec-WebSocket-Version"] == "13"
    # "Connection" may list several tokens (a proxy adds keep-alive): still a handshake.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        head = "".join(f"{k}: {v}\r\n" for k, v in {**UPGRADE, "Connection": "keep-alive, Upgrade"}.items())
        writer.write(f"GET /api/v1/realtime?access_token={ana.token} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n"
                     .encode())
        status = await asyncio.wait_for(reader.readline(), 5.0)
        assert status.startswith(b"HTTP/1.1 101"), status
    finally:
        writer.close()
