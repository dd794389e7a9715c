"""How the hub fans an event out: a few dozen connections per turn of the loop, for offers and for
what a corked batch holds; and an event whose message is gone reaches nobody."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rosetta.realtime.hub import OFFERS_BETWEEN_YIELDS
from rosetta.realtime.render import event_of
from rosetta.store import events as event_store
from tests.support import register, workspace_with
from tests.test_realtime import channel_path, events, post

CONNECTIONS = 2 * OFFERS_BETWEEN_YIELDS + 1  # three chunks, the last of one connection


@pytest.fixture
def server_overrides() -> dict:
    return {"realtime": {"max_connections_per_principal": CONNECTIONS}}


async def sockets_after_two_messages(api, rt) -> tuple[Any, dict[str, Any], list[Any], int]:
    """Ana with CONNECTIONS sockets, each of which read her two messages; and the first one's seq."""
    ana = await register(api, "Ana")
    team = await workspace_with(api, ana)
    sockets = [(await rt.hello(ana.token))[0] for _ in range(CONNECTIONS)]
    for n in range(2):
        await post(api, channel_path(team), f"hello {n}", ana.token)
    received = [await events(ws, 2) for ws in sockets]
    assert all([f["data"]["original_content"] for f in got] == ["hello 0", "hello 1"] for got in received)
    return ana, team, sockets, received[0][0]["seq"]


async def each_reads_the_next_message(api, ana, team, sockets) -> None:
    """Nobody got an event twice, or lost one: the next event every socket reads is a new message."""
    await post(api, channel_path(team), "after", ana.token)
    for ws in sockets:
        [got] = await events(ws, 1)
        assert got["data"]["original_content"] == "after"


@pytest.mark.gen_test(timeout=60)
async def test_a_fan_out_gives_the_loop_back_between_chunks_and_reaches_everyone_in_order(server, api, rt):
    ana, team, sockets, first_seq = await sockets_after_two_messages(api, rt)

    # Offer the last event again (the connections skip it: they sent it already) and watch the loop's turns.
    hub = server.app.hub
    [row] = await event_store.after(server.app.db.reader, first_seq, 1)
    before = hub.delivered
    delivering = asyncio.ensure_future(hub._deliver([event_of(row)]))
    while hub.delivered == before:  # noqa: ASYNC110 - stepping the loop one turn at a time is the point
        await asyncio.sleep(0)
    assert hub.delivered - before == OFFERS_BETWEEN_YIELDS  # the loop had a turn after the first chunk
    await delivering
    assert hub.delivered - before == CONNECTIONS
    await each_reads_the_next_message(api, ana, team, sockets)


@pytest.mark.gen_test(timeout=60)
async def test_a_corked_batch_is_sent_in_turns_too(server, api, rt):
    ana, team, sockets, first_seq = await sockets_after_two_messages(api, rt)

    # Two events in one batch: every connection is corked, then uncorked a chunk per turn of the loop.
    hub = server.app.hub
    subs = list(hub.subscriptions())
    rows = await event_store.after(server.app.db.reader, first_seq - 1, 2)
    delivering = asyncio.ensure_future(hub._deliver([event_of(row) for row in rows]))
    while not all(sub.held is not None for sub in subs):  # noqa: ASYNC110 - stepping the loop is the point
        await asyncio.sleep(0)
    while all(sub.held is not None for sub in subs):  # noqa: ASYNC110
        await asyncio.sleep(0)
    assert sum(sub.held is None for sub in subs) == OFFERS_BETWEEN_YIELDS
    await delivering
    assert all(sub.held is None for sub in subs)
    await each_reads_the_next_message(api, ana, team, sockets)


@pytest.mark.gen_test(timeout=30)
async def test_the_event_of_a_message_gone_since_reaches_nobody(server, api, rt):
    ana = await register(api, "Ana")
    team = await workspace_with(api, ana)
    ws, _ = await rt.hello(ana.token)
    message = await post(api, channel_path(team), "soon gone", ana.token)
    [got] = await events(ws, 1)
    hub = server.app.hub
    [row] = await event_store.after(server.app.db.reader, got["seq"] - 1, 1)
    await server.app.db.write(lambda tx: tx.execute("DELETE FROM messages WHERE id = ?", (message["id"],)))

    before = hub.delivered
    await hub._deliver([event_of(row)])  # as a purge racing its delivery would leave it
    assert hub.delivered == before
    await each_reads_the_next_message(api, ana, team, [ws])
