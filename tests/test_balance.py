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

from rosetta.balance import Loads, handoff_ends, handoff_links
from rosetta.cli import prepare_workers
from rosetta.clock import ManualClock
from rosetta.cluster import Cluster, links, peers_for
from rosetta.store.generations import Generations
from tests import support
from tests.support import Server


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


def balanced_clusters(size: int) -> list[Cluster]:
    memory, pairs, loads, handoff = Generations.allocate(size), links(size), Loads(size), handoff_links(size)
    return [Cluster(index, size, Generations(size, memory).for_worker(index), peers_for(index, pairs),
                    handoff_ends(index, loads, handoff))
            for index in range(size)]


@pytest.fixture
def workers(io_loop: IOLoop, tmp_path: Path, clock: ManualClock) -> Iterator[tuple[Server, Server]]:
    config = support.test_config(tmp_path / "data")
    io_loop.run_sync(lambda: prepare_workers(config))
    first, second = (Server(config, clock, cluster) for cluster in balanced_clusters(2))
    io_loop.run_sync(first.start)
    io_loop.run_sync(second.start)
    yield first, second
    io_loop.run_sync(second.stop)
    io_loop.run_sync(first.stop)


class KeepAlive:
    """One raw HTTP/1.1 keep-alive connection: several requests over the same socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> KeepAlive:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def health(self) -> int:
        self.writer.write(b"GET /api/v1/health HTTP/1.1\r\nHost: rosetta.test\r\n\r\n")
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        await self.reader.readexactly(length)
        return int(head.split(b" ")[1])

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


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
    assert (first.passed, second.received) == (5, 5)
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
    assert first.passed == 0 and first.loads.load(0) == 2
    await kept.close()
    await late.close()
