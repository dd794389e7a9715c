"""Realtime over real sockets: audiences, resume without gap or duplicate, revocation, restart, cap."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError
from tornado.websocket import WebSocketClientConnection

from tests.support import frame, register, workspace_with

WAIT_S = 2.0  # "B receives A's message within 2 s"


async def events(ws: WebSocketClientConnection, count: int) -> list[dict[str, Any]]:
    """The next ``count`` event frames (pongs, typing and presence skipped)."""
    found = []
    while len(found) < count:
        got = await frame(ws)
        assert got is not None, f"closed after {found}"
        if got["type"] == "event" and "seq" in got:
            found.append(got)
        elif got["type"] == "resync_required":
            found.append(got)
    return found


async def until(ws: WebSocketClientConnection, name: str) -> list[dict[str, Any]]:
    """Every durable event up to and including the first called ``name``."""
    seen = []
    while True:
        [got] = await events(ws, 1)
        seen.append(got)
        if got.get("event") == name:
            return seen


async def eventually(condition: Callable[[], bool], what: str, within_s: float = 5.0) -> None:
    """Let the server (same loop) run until ``condition()`` holds; fail saying ``what`` did not happen.

    The server notices a closed socket on one of its own loop turns, not at a time a test could
    name: step the loop (``sleep(0)``) instead of guessing a delay, and give up after ``within_s``.
    """
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within_s} s: {what}")
        await asyncio.sleep(0)


def channel_path(ws: dict[str, Any]) -> str:
    return f"/workspaces/{ws['id']}/channels/{ws['general']['id']}/messages"


async def post(api: Any, path: str, content: str, token: str) -> dict[str, Any]:
    sent = await api.post(path, {"content": content}, token=token)
    assert sent.status == 201, sent
    return sent.json["data"]


async def barrier(api: Any, user: Any) -> str:
    """An event only ``user`` sees (their own workspace): delivered in seq order, so it fences earlier ones."""
    made = await api.post("/workspaces", {"name": f"fence {user.name}"}, token=user.token)
    assert made.status == 201, made
    return made.json["data"]["id"]


async def drain_to_fence(ws: WebSocketClientConnection, fence_workspace: str) -> list[dict[str, Any]]:
    seen = []
    while True:
        [got] = await events(ws, 1)
        data = got.get("data", {})
        if fence_workspace in (data.get("id"), data.get("workspace_id")):
            return seen
        seen.append(got)


@pytest.mark.gen_test(timeout=30)
async def test_member_receives_message_and_outsider_nothing(server, api, rt):
    ana, bea, cid = await register(api, "Ana"), await register(api, "Bea"), await register(api, "Cid")
    team = await workspace_with(api, ana, bea)
    ws_b, hello_b = await rt.hello(bea.token)
    ws_c, _ = await rt.hello(cid.token)
    assert hello_b["heartbeat_s"] == server.config.realtime.heartbeat_s and hello_b["connection_id"]
    began = time.monotonic()
    message = await post(api, channel_path(team), "hello team", ana.token)
    got = await until(ws_b, "message.created")
    assert time.monotonic() - began < WAIT_S
    assert got[-1]["data"]["id"] == message["id"] and got[-1]["data"]["original_content"] == "hello team"
    assert got[-1]["seq"] > hello_b["seq"]
    fence = await barrier(api, cid)
    leaked = await drain_to_fence(ws_c, fence)
    assert leaked == []  # nothing of Ana's team reached the outsider before its own later event
    ws_b.close()
    ws_c.close()


@pytest.mark.gen_test(timeout=30)
async def test_unauthenticated_and_bad_resume_point_are_refused(server, api, rt):
    with pytest.raises(HTTPClientError) as refused:
        await rt.connect()
    assert refused.value.code == 401
    ana = await register(api, "Ana")
    with pytest.raises(HTTPClientError) as bad:
        await rt.connect(ana.token, "after=soon")
    assert bad.value.code == 422
    with pytest.raises(HTTPClientError) as bad_token:
        await rt.connect(ana.token[:-2] + "xx")
    assert bad_token.value.code == 401


@pytest.mark.gen_test(timeout=30)
async def test_direct_conversation_events_reach_only_participants(server, api, rt):
    ana, bea, cid = await register(api, "Ana"), await register(api, "Bea"), await register(api, "Cid")
    await workspace_with(api, ana, bea, cid)  # all three share a workspace: only the pair may see their DM
    ws_b, _ = await rt.hello(bea.token)
    ws_c, _ = await rt.hello(cid.token)
    opened = await api.post("/direct-conversations", {"participant_user_id": bea.id}, token=ana.token)
    assert opened.status in (200, 201), opened
    conversation = opened.json["data"]["id"]
    sent = await post(api, f"/direct-conversations/{conversation}/messages", "just us", ana.token)
    got = await until(ws_b, "message.created")
    assert got[-1]["data"]["id"] == sent["id"] and got[-1]["data"]["conversation_id"] == conversation
    fence = await barrier(api, cid)
    leaked = await drain_to_fence(ws_c, fence)
    assert [e for e in leaked if conversation in json.dumps(e)] == []


@pytest.mark.gen_test(timeout=30)
async def test_reconnect_with_after_replays_exactly_the_missed_messages(server, api, rt):
    ana, bea = await register(api, "Ana"), await register(api, "Bea")
    team = await workspace_with(api, ana, bea)
    path = channel_path(team)
    ws_b, _ = await rt.hello(bea.token)
    first = await post(api, path, "before", ana.token)
    seen = await until(ws_b, "message.created")
    last_seq = seen[-1]["seq"]
    assert seen[-1]["data"]["id"] == first["id"]
    ws_b.close()
    missed = [await post(api, path, f"missed {n}", ana.token) for n in range(3)]
    ws_b, _ = await rt.hello(bea.token, f"after={last_seq}")
    replayed = await events(ws_b, 3)
    assert [e["data"]["id"] for e in replayed] == [m["id"] for m in missed]
    assert [e["seq"] for e in replayed] == sorted({e["seq"] for e in replayed})
    assert all(e["seq"] > last_seq for e in replayed)
    # Then live, with no duplicate of what the replay sent.
    live = await post(api, path, "live again", ana.token)
    [after_replay] = await events(ws_b, 1)
    assert after_replay["data"]["id"] == live["id"] and after_replay["seq"] > replayed[-1]["seq"]


@pytest.mark.gen_test(timeout=30)
async def test_resume_frame_replays_and_ping_gets_pong(server, api, rt):
    ana, bea = await register(api, "Ana"), await register(api, "Bea")
    team = await workspace_with(api, ana, bea)
    ws_b, hello_b = await rt.hello(bea.token)
    mark = hello_b["seq"]
    ws_b.close()
    sent = [await post(api, channel_path(team), f"m{n}", ana.token) for n in range(2)]
    ws_b, _ = await rt.hello(bea.token)
    await ws_b.write_message(json.dumps({"type": "resume", "after": mark}))
    got = await events(ws_b, 2)
    assert [e["data"]["id"] for e in got] == [m["id"] for m in sent]
    await ws_b.write_message(json.dumps({"type": "ping"}))
    assert await frame(ws_b) == {"type": "pong"}


@pytest.mark.gen_test(timeout=30)
async def test_every_resume_frame_replays_exactly_what_this_connection_never_sent(server, api, rt):
    """Spec §9: a resume frame on a live connection replays only events not yet sent on it. A second
    resume (or one after ?after=) was ignored, so what lay before the first resume point never came."""
    ana, bea = await register(api, "Ana"), await register(api, "Bea")
    team = await workspace_with(api, ana, bea)
    watcher, _ = await rt.hello(bea.token)
    earlier = [await post(api, channel_path(team), f"m{n}", ana.token) for n in range(2)]
    seqs = [e["seq"] for e in await until(watcher, "message.created")][-1:]
    seqs += [e["seq"] for e in await until(watcher, "message.created")][-1:]
    watcher.close()

    async def messages(ws, count):
        return [e["data"]["original_content"] for e in await events(ws, count)]

    ws_b, _ = await rt.hello(bea.token, f"after={seqs[1]}")  # it says it has m1: nothing is replayed
    await post(api, channel_path(team), "m2", ana.token)
    assert await messages(ws_b, 1) == ["m2"]
    # The client lost m0 and m1: both come now, m2 (sent on this connection) does not come again.
    await ws_b.write_message(json.dumps({"type": "resume", "after": seqs[0] - 1}))
    assert await messages(ws_b, 2) == [m["original_content"] for m in earlier]
    await post(api, channel_path(team), "m3", ana.token)
    assert await messages(ws_b, 1) == ["m3"]
    # Again from the same point: everything after it was sent here, so nothing is replayed.
    await ws_b.write_message(json.dumps({"type": "resume", "after": seqs[0] - 1}))
    await post(api, channel_path(team), "m4", ana.token)
    assert await messages(ws_b, 1) == ["m4"]


@pytest.mark.gen_test(timeout=30)
async def test_a_frame_that_is_not_a_json_object_gets_an_error_and_the_socket_stays(server, api, rt):
    ana = await register(api, "Ana")
    ws, _ = await rt.hello(ana.token)
    for bad in ("{not json", "[1, 2]", "[" * 60_000):  # the last makes json.loads raise RecursionError
        await ws.write_message(bad)
        assert await frame(ws) == {"type": "error", "message": "Frames must be JSON objects."}
    await ws.write_message(json.dumps({"type": "ping"}))
    assert await frame(ws) == {"type": "pong"}


@pytest.mark.gen_test(timeout=30)
async def test_edit_and_delete_made_while_away_are_replayed_without_content(server, api, rt):
    ana, bea = await register(api, "Ana"), await register(api, "Bea")
    team = await workspace_with(api, ana, bea)
    path = channel_path(team)
    ws_b, hello_b = await rt.hello(bea.token)
    ws_b.close()
    kept = await post(api, path, "first draft", ana.token)
    gone = await post(api, path, "secret oops", ana.token)
    edited = await api.patch(f"{path}/{kept['id']}", {"content": "final text"}, token=ana.token)
    assert edited.status == 200, edited
    deleted = await api.delete(f"{path}/{gone['id']}", token=ana.token)
    assert deleted.status == 204, deleted
    ws_b, _ = await rt.hello(bea.token, f"after={hello_b['seq']}")
    got = await until(ws_b, "message.deleted")
    names = [e["event"] for e in got]
    assert names == ["message.created", "message.created", "message.updated", "message.deleted"]
    update = got[2]["data"]
    assert update["id"] == kept["id"] and update["original_content"] == "final text"
    assert "secret oops" not in json.dumps(got)  # a deleted message's text never travels again
    assert got[3]["data"]["id"] == gone["id"]


@pytest.mark.gen_test(timeout=30)
async def test_trim_deletes_in_chunks_what_retention_no_longer_keeps(server, api, clock):
    ana, bea = await register(api, "Ana"), await register(api, "Bea")
    team = await workspace_with(api, ana, bea)
    for n in range(5):
        await post(api, channel_path(team), f"old news {n}", ana.token)
    clock.advance(hours=server.config.realtime.retention_hours + 1)
    fresh = await post(api, channel_path(team), "fresh", ana.token)
    db = server.app.db
    old = await db.reader.fetch_value("SELECT count(*) FROM events WHERE created_at < ?", (fresh["created_at"],))
    assert old >= 6  # the team's own events, and five messages
    assert await server.app.hub.trim(chunk=2) == old  # in units of 2, until one deletes fewer
    kept = await db.reader.fetch_all("SELECT name, payload FROM events")
    assert [(row["name"], json.loads(row["payload"])["id"]) for row in kept] == [("message.created", fresh["id"])]


@pytest.mark.gen_test(timeout=30)
async def test_resume_point_older_than_retention_gets_resync_required(server, api, clock, rt):
    ana, bea = await register(api, "Ana"), await register(api, "Bea")
    team = await workspace_with(api, ana, bea)
    ws_b, hello_b = await rt.hello(bea.token)
    ws_b.close()
    await post(api, channel_path(team), "old news", ana.token)
    clock.advance(hours=server.config.realtime.retention_hours + 1)
    fresh = await post(api, channel_path(team), "fresh", ana.token)
    trimmed = await server.app.jobs.run_once("events.trim")
    assert trimmed >= 1
    ws_b, _ = await rt.hello(bea.token, f"after={hello_b['seq']}")
    got = await frame(ws_b)
    assert got is not None and got["type"] == "resync_required" and got["oldest_seq"] > hello_b["seq"] + 1
    # A resume point inside the retained log still replays.
    ws_ok, _ = await rt.hello(bea.token, f"after={got['oldest_seq'] - 1}")
    replayed = await until(ws_ok, "message.created")
    assert replayed[-1]["data"]["id"] == fresh["id"]


@pytest.mark.gen_test(timeout=30)
async def test_revoking_the_token_closes_the_socket(server, api, rt):
    ana = await register(api, "Ana")
    login = await api.post("/auth/app/login", {"email": ana.email, "password": ana.password,
                                               "device_name": "phone"})
    assert login.status == 200, login
    phone = login.json["access_token"]
    ws, _ = await rt.hello(phone)
    other, _ = await rt.hello(ana.token)
    logout = await api.post("/auth/app/logout", token=phone)
    assert logout.status in (200, 204), logout
    assert await frame(ws) is None  # closed at once, well within 5 s
    assert ws.close_code == 4001
    await other.write_message(json.dumps({"type": "ping"}))
    assert await frame(other) == {"type": "pong"}  # the user's other token keeps its socket


@pytest.mark.gen_test(timeout=30)
async def test_restart_between_disconnect_and_resume_loses_nothing(server, api, rt):
    """Away, N messages, restart, M more, resume: all N+M once each, in order. The N were posted to
    the old process while the client was gone, so only the durable log can replay them."""
    ana, bea = await register(api, "Ana"), await register(api, "Bea")
    team = await workspace_with(api, ana, bea)
    ws_b, _ = await rt.hello(bea.token)
    ws_a, _ = await rt.hello(ana.token)  # stays connected through the restart
    before = await post(api, channel_path(team), "before restart", ana.token)
    [seen] = [e for e in await until(ws_b, "message.created")][-1:]
    assert seen["data"]["id"] == before["id"]
    ws_b.close()
    assert await frame(ws_b) is None
    away = [await post(api, channel_path(team), f"while away {n}", ana.token) for n in range(3)]
    await server.restart()
    while await frame(ws_a) is not None:  # what was sent before the restart, then the close
        pass
    assert ws_a.close_code == 1001
    after = [await post(api, channel_path(team), f"after restart {n}", ana.token) for n in range(2)]
    ws_b, _ = await rt.hello(bea.token, f"after={seen['seq']}")
    replayed = await drain_to_fence(ws_b, await barrier(api, bea))  # the fence also shows no event came twice
    created = [e for e in replayed if e["event"] == "message.created"]
    assert [e["data"]["id"] for e in created] == [m["id"] for m in away + after]
    seqs = [e["seq"] for e in replayed]
    assert seqs == sorted(set(seqs)) and seqs[0] > seen["seq"]


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("server_overrides", [{"realtime": {"max_connections_per_principal": 2}}])
async def test_connections_per_principal_are_capped(server, api, rt):
    ana = await register(api, "Ana")
    first, _ = await rt.hello(ana.token)
    second, _ = await rt.hello(ana.token)
    assert server.app.hub.is_online(ana.id)
    with pytest.raises(HTTPClientError) as refused:
        await rt.connect(ana.token)
    assert refused.value.code == 429
    first.close()
    assert await frame(first) is None
    await eventually(lambda: server.app.hub.connection_count(ana.id) < 2, "the hub forgot the closed socket")
    third, _ = await rt.hello(ana.token)
    third.close()
    second.close()


@pytest.mark.gen_test(timeout=30)
async def test_removed_member_stops_receiving(server, api, rt):
    ana, bea, cid = await register(api, "Ana"), await register(api, "Bea"), await register(api, "Cid")
    team = await workspace_with(api, ana, bea)
    ws_b, _ = await rt.hello(bea.token)
    # Delivered first, so the channel's readers are known (and kept) before she leaves.
    await post(api, channel_path(team), "before she left", ana.token)
    seen = await drain_to_fence(ws_b, await barrier(api, bea))
    assert "before she left" in json.dumps(seen)
    members = await api.get(f"/workspaces/{team['id']}/members", token=ana.token)
    bea_member = next(m for m in members.json["data"] if m["user"]["id"] == bea.id) if "user" in \
        members.json["data"][0] else next(m for m in members.json["data"] if m.get("user_id") == bea.id)
    removed = await api.delete(f"/workspaces/{team['id']}/members/{bea_member['id']}", token=ana.token)
    assert removed.status == 204, removed
    await post(api, channel_path(team), "after she left", ana.token)
    fence = await barrier(api, bea)
    seen = await drain_to_fence(ws_b, fence)
    assert "after she left" not in json.dumps(seen)
    del cid


@pytest.mark.gen_test(timeout=30)
async def test_typing_is_live_only_and_reaches_channel_readers(server, api, rt):
    ana, bea, cid = await register(api, "Ana"), await register(api, "Bea"), await register(api, "Cid")
    team = await workspace_with(api, ana, bea)
    ws_a, _ = await rt.hello(ana.token)
    ws_b, _ = await rt.hello(bea.token)
    ws_c, _ = await rt.hello(cid.token)
    await ws_a.write_message(json.dumps({"type": "typing", "channel_id": team["general"]["id"]}))
    got = await frame(ws_b)
    while got is not None and got.get("event") != "typing":
        got = await frame(ws_b)
    assert got is not None and "seq" not in got
    assert got["data"] == {"channel_id": team["general"]["id"], "user_id": ana.id}
    await ws_c.write_message(json.dumps({"type": "typing", "channel_id": team["general"]["id"]}))
    await ws_c.write_message(json.dumps({"type": "ping"}))
    assert await frame(ws_c) == {"type": "pong"}  # an outsider's typing is dropped, not relayed
    await ws_b.write_message(json.dumps({"type": "ping"}))
    nxt = await frame(ws_b)
    while nxt is not None and nxt.get("event") == "presence.updated":
        nxt = await frame(ws_b)
    assert nxt == {"type": "pong"}
    rows = await server.app.db.reader.fetch_all("SELECT name FROM events WHERE name = 'typing'")
    assert rows == []


async def next_live(ws: WebSocketClientConnection) -> dict[str, Any] | None:
    """The next frame that is not presence (presence may arrive at any time)."""
    got = await frame(ws)
    while got is not None and got.get("event") == "presence.updated":
        got = await frame(ws)
    return got


@pytest.mark.gen_test(timeout=30)
async def test_read_reaches_the_readers_other_connections_only(server, api, rt):
    ana, bea, cid = await register(api, "Ana"), await register(api, "Bea"), await register(api, "Cid")
    team = await workspace_with(api, ana, bea)
    message = await post(api, channel_path(team), "read me", bea.token)
    phone, _ = await rt.hello(ana.token)
    laptop, _ = await rt.hello(ana.token)
    ws_b, _ = await rt.hello(bea.token)
    cid_one, _ = await rt.hello(cid.token)
    cid_two, _ = await rt.hello(cid.token)
    await phone.write_message(json.dumps({"type": "read", "message_id": message["id"]}))
    got = await next_live(laptop)
    while got is not None and got.get("event") != "read":  # durable events of the setup come first
        got = await next_live(laptop)
    assert got is not None and "seq" not in got
    assert got["data"] == {"message_id": message["id"], "channel_id": team["general"]["id"], "user_id": ana.id}
    # Cid cannot see the message: his read is dropped, so his other connection's next frame is its pong.
    await cid_one.write_message(json.dumps({"type": "read", "message_id": message["id"]}))
    await cid_one.write_message(json.dumps({"type": "ping"}))
    assert await next_live(cid_one) == {"type": "pong"}
    await cid_two.write_message(json.dumps({"type": "ping"}))
    assert await next_live(cid_two) == {"type": "pong"}
    # Bea is another user: Ana's read is not hers to hear.
    await ws_b.write_message(json.dumps({"type": "ping"}))
    assert await next_live(ws_b) == {"type": "pong"}


@pytest.mark.gen_test(timeout=30)
async def test_a_resume_point_beyond_sqlite_integers_is_refused_not_a_replay_crash(server, api, rt):
    # 2**63 does not fit an SQLite INTEGER: the replay query raised OverflowError, the socket closed
    # with 4008 "resume again", and a client retrying the same point looped forever.
    ana = await register(api, "Ana")
    with pytest.raises(HTTPClientError) as bad:
        await rt.connect(ana.token, f"after={2 ** 63}")
    assert bad.value.code == 422
    ws, _ = await rt.hello(ana.token)
    await ws.write_message(json.dumps({"type": "resume", "after": 2 ** 63}))
    answer = await frame(ws)
    assert answer is not None and answer["type"] == "error", answer
    await ws.write_message(json.dumps({"type": "ping"}))
    assert await frame(ws) == {"type": "pong"}  # still open


@pytest.mark.gen_test(timeout=30)
async def test_messages_committed_together_arrive_complete_and_in_order(server, api, rt):
    ana, bea = await register(api, "Ana"), await register(api, "Bea")
    team = await workspace_with(api, ana, bea)
    ws_b, _ = await rt.hello(bea.token)
    # Sent at once they share commits, so the hub delivers them as one batch (frames corked per socket).
    await asyncio.gather(*(post(api, channel_path(team), f"burst {i}", ana.token) for i in range(8)))
    seen = await drain_to_fence(ws_b, await barrier(api, bea))
    created = [f for f in seen if f.get("event") == "message.created"]
    assert sorted(f["data"]["original_content"] for f in created) == [f"burst {i}" for i in range(8)]
    seqs = [f["seq"] for f in created]
    assert seqs == sorted(seqs) and len(set(seqs)) == 8


@pytest.mark.gen_test(timeout=30)
async def test_connections_that_come_and_go_between_messages_count_at_once(server, api, rt):
    """The hub keeps who gets a channel's events between messages; a connection opened or closed
    in between must change that for the very next message."""
    ana, bea = await register(api, "Ana"), await register(api, "Bea")
    team = await workspace_with(api, ana, bea)
    hub = server.app.hub
    ws_a, _ = await rt.hello(ana.token)
    await post(api, channel_path(team), "one", ana.token)
    assert (await until(ws_a, "message.created"))[-1]["data"]["original_content"] == "one"

    ws_b, _ = await rt.hello(bea.token)  # opened after the channel's readers were sorted once
    await post(api, channel_path(team), "two", ana.token)
    for ws in (ws_a, ws_b):
        assert (await until(ws, "message.created"))[-1]["data"]["original_content"] == "two"

    ws_a.close()
    assert await frame(ws_a) is None
    await eventually(lambda: not hub.connection_count(ana.id), "the hub forgot the closed socket")
    offered = hub.delivered
    await post(api, channel_path(team), "three", ana.token)
    assert (await until(ws_b, "message.created"))[-1]["data"]["original_content"] == "three"
    assert hub.delivered - offered == 1  # only Bea's connection: the closed one is not offered again
    ws_b.close()
