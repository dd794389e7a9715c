"""Connection balancing between workers (server.balance_connections, rosetta/balance.py).

Two whole servers run in this process, linked as ``rosetta.workers`` links forked ones (shared
memory, the peers' streams, the handoff sockets); every client connects to the first one's port,
as if the kernel's hash had sent them all there. The ``rosetta serve`` test in test_workers.py
checks the same with forked workers sharing one port.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from tornado.ioloop import IOLoop

from rosetta.balance import Loads
from rosetta.clock import ManualClock
from tests.cluster_support import KeepAlive, two_workers
from tests.rest_support import make_team
from tests.support import Api, Server
from tests.test_fastlane import Raw, get, until


def test_a_connection_on_its_way_counts_for_its_receiver():
    loads = Loads(2)
    first, second = loads.for_worker(0), loads.for_worker(1)
    first.opened()
    first.opened()
    assert first.lighter_worker() == 1
    first.passed_to(1)  # in flight: the second worker has not taken it yet
    assert (first.load(0), first.load(1)) == (2, 1)
    assert first.lighter_worker() == 1  # 2 against 1 still: one more would even it out
    first.passed_to(1)
    assert first.lighter_worker() is None  # 2 against 2
    second.opened()
    second.received_from(0)
    assert (second.load(0), second.load(1)) == (2, 2)  # taken: counted once, not twice
    first.closed()
    assert second.lighter_worker() == 0 and first.lighter_worker() is None


@pytest.fixture
def workers(io_loop: IOLoop, tmp_path: Path, clock: ManualClock) -> Iterator[tuple[Server, Server]]:
    yield from two_workers(io_loop, tmp_path, clock, balanced=True)


def balancers(workers):
    return [server.app.balancer for server in workers]


@pytest.mark.gen_test(timeout=30)
async def test_connections_all_sent_to_one_worker_end_up_half_on_each(workers):
    first, second = balancers(workers)
    clients = []
    for _ in range(10):  # one after another, each answered before the next connects
        client = await KeepAlive.open(workers[0].port)
        assert await client.health() == 200
        clients.append(client)
    assert (first.loads.passed(), second.loads.received()) == (5, 5)
    assert (first.loads.load(0), first.loads.load(1)) == (5, 5)
    for client in clients:  # a handed-over connection stays usable: keep-alive, on its new worker
        assert [await client.health() for _ in range(3)] == [200, 200, 200]
    for client in clients:
        await client.close()
    for _ in range(100):  # the servers notice the closes on their own loop turns
        if first.loads.load(0) == first.loads.load(1) == 0:
            break
        await asyncio.sleep(0.01)
    assert (first.loads.load(0), first.loads.load(1)) == (0, 0)


@pytest.mark.gen_test(timeout=30)
async def test_a_worker_that_cannot_hand_over_serves_the_connection_itself(workers):
    first, _ = balancers(workers)
    kept = await KeepAlive.open(workers[0].port)
    assert await kept.health() == 200
    await workers[1].stop()  # its inbox is closed: nothing can be handed to it any more
    late = await KeepAlive.open(workers[0].port)
    assert await late.health() == 200
    assert first.loads.passed() == 0 and first.loads.load(0) == 2
    await kept.close()
    await late.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_connection_the_fast_lane_holds_counts_until_it_ends(workers):
    first, _ = balancers(workers)
    lane = workers[0].app.fast_lane
    client = await KeepAlive.open(workers[0].port)  # it asks nothing yet: the lane holds it
    await until(lambda: lane.connections)
    assert len(lane.connections) == 1 and first.loads.load(0) == 1
    await client.close()
    await until(lambda: not lane.connections)  # the lane reads the end of the stream on its own turn
    assert first.loads.load(0) == 0


@pytest.mark.gen_test(timeout=30)
async def test_a_connection_the_lane_takes_back_from_tornado_is_counted_once(workers):
    first, _ = balancers(workers)
    api = Api(workers[0])
    team = await make_team(api)
    api.close()
    lane = workers[0].app.fast_lane
    path = f"/workspaces/{team.id}/channels/{team.general['id']}/messages"
    # The API client's connections (one per request) end on the servers' own turns.
    await until(lambda: first.loads.load(0) == first.loads.load(1) == 0)
    raw = await Raw.open(workers[0].port)
    for request, status in [(get("/me", team.owner.token), 200),  # to Tornado
                            (get(path, team.owner.token), 200),  # Tornado's lean path, then back to the lane
                            (get(path, team.owner.token), 200)]:
        await raw.send(request)
        assert (await raw.answer())[0] == status
    await until(lambda: first.loads.load(0) == 1)  # Tornado's request loop ends on its own turn
    assert len(lane.connections) == 1 and (first.loads.load(0), first.loads.load(1)) == (1, 0)
    raw.close()
