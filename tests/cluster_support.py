"""Several whole servers in one test process, linked as ``rosetta.workers`` links forked workers.

Each listens on its own port so a test can say which worker it talks to (in production they share
one port and the kernel picks). ``KeepAlive`` is a raw HTTP/1.1 connection that stays open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

from tornado.ioloop import IOLoop

from rosetta.balance import Loads, handoff_ends, handoff_links
from rosetta.cli import prepare_workers
from rosetta.clock import ManualClock
from rosetta.cluster import Cluster, links, peers_for
from rosetta.store.generations import Generations
from tests import support
from tests.support import Server


def linked_clusters(size: int, balanced: bool = False) -> list[Cluster]:
    """The clusters ``rosetta.workers`` hands its forked workers (``balanced``: with the connection handoff)."""
    memory, pairs = Generations.allocate(size), links(size)
    loads, handoff = Loads(size), handoff_links(size) if balanced else {}
    return [Cluster(index, size, Generations(size, memory).for_worker(index), peers_for(index, pairs),
                    handoff_ends(index, loads, handoff) if balanced else None)
            for index in range(size)]


def two_workers(io_loop: IOLoop, tmp_path: Path, clock: ManualClock, balanced: bool = False,
                **sections: dict) -> Iterator[tuple[Server, Server]]:
    """Two started workers over one database (a fixture's body: yields them, stops them after)."""
    config = support.test_config(tmp_path / "data", **sections)
    io_loop.run_sync(lambda: prepare_workers(config))
    first, second = (Server(config, clock, cluster) for cluster in linked_clusters(2, balanced))
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
