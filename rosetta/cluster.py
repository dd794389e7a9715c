"""The worker processes of one server (``server.workers``) and the messages they send each other.

Workers are identical processes forked by ``rosetta.workers``: each serves HTTP, WebSocket and SSE
on the shared port over the shared SQLite file. The database is the truth; what the workers tell
each other is only what lives in memory: "new events are in the log" (the hub tails it), the
after-commit notifications (a revoked token's cached entry and sockets), live-only realtime frames
(typing, read, presence), and nudges for the background worker that only worker 0 runs.

Messages are lines of JSON on stream socket pairs made before the fork, one per (sender, receiver):
a stream with two writers would interleave their lines.
Sending never blocks the loop: each outgoing stream buffers (bounded) until the other worker reads.
Nothing is dropped while the workers live, which presence and the token caches rely on; a worker
that stops reading for so long that its buffer fills is stuck, and the server is stopped by the
supervisor when it dies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import tornado.iostream

from rosetta.store.generations import Generations

if TYPE_CHECKING:
    from rosetta.balance import Handoff

log = logging.getLogger("rosetta.cluster")

MAX_MESSAGE_BYTES = 1 << 20  # one message (a line); larger ones are refused at the sender
MAX_BUFFER_BYTES = 64 << 20  # per outgoing stream: a worker this far behind is stuck
Handler = Callable[[Any], None]
EVENTS_MESSAGE = b'["events",null]\n'


class Peers:
    """This worker's streams from and to each other worker."""

    def __init__(self, inboxes: list[socket.socket], outboxes: list[socket.socket]) -> None:
        self._inbox_sockets = inboxes
        self._outbox_sockets = outboxes
        self.handlers: dict[str, Handler] = {}
        self._streams: list[tornado.iostream.IOStream] = []
        self._outboxes: list[tornado.iostream.IOStream] = []
        self._reading: list[asyncio.Task[None]] = []
        self._pending: list[bytes] = []  # this loop turn's messages: they leave together, in order

    def on(self, kind: str, handler: Handler) -> None:
        """Run ``handler(payload)`` on the loop for each ``kind`` message another worker sends."""
        self.handlers[kind] = handler

    def send(self, kind: str, payload: Any = None) -> None:
        """Send a message to every other worker; messages arrive in the order they were sent.

        They leave at the end of this loop turn, together: a batch of 100 commits is one write per
        worker, and "events" said twice in a row is said once.
        """
        data = json.dumps([kind, payload], separators=(",", ":")).encode() + b"\n"
        if len(data) > MAX_MESSAGE_BYTES:
            log.error("a %s message of %d bytes was not sent to the other workers", kind, len(data))
            return
        if self._pending and self._pending[-1] == data == EVENTS_MESSAGE:
            return
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        data, self._pending = b"".join(self._pending), []
        for outbox in self._outboxes:
            if not outbox.closed():
                outbox.write(data).add_done_callback(_ignore_closed)

    def start(self) -> None:
        self._outboxes = [tornado.iostream.IOStream(sock, max_write_buffer_size=MAX_BUFFER_BYTES)
                          for sock in self._outbox_sockets]
        loop = asyncio.get_running_loop()
        for sock in self._inbox_sockets:
            inbox = tornado.iostream.IOStream(sock, max_buffer_size=MAX_BUFFER_BYTES)
            self._streams.append(inbox)
            self._reading.append(loop.create_task(self._read(inbox)))

    def stop(self) -> None:
        for task in self._reading:
            task.cancel()
        for stream in [*self._outboxes, *self._streams]:
            stream.close()

    async def _read(self, inbox: tornado.iostream.IOStream) -> None:
        while True:
            try:
                line = await inbox.read_until(b"\n", max_bytes=MAX_MESSAGE_BYTES)
            except tornado.iostream.StreamClosedError:
                return  # the other workers are gone: the server is stopping
            try:
                kind, payload = json.loads(line)
                handler = self.handlers.get(kind)
                if handler is not None:
                    handler(payload)
            except Exception:
                log.exception("a message from another worker failed")


def _ignore_closed(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("a message to another worker was lost: %s", future.exception())


@dataclass
class Cluster:
    """Which worker this process is, of how many; ``peers`` is None when it is the only one."""

    index: int = 0
    size: int = 1
    generations: Generations = field(default_factory=Generations)
    peers: Peers | None = None
    handoff: Handoff | None = None  # with server.balance_connections: connections handed between workers

    @property
    def runs_jobs(self) -> bool:
        """Background jobs (outboxes, translation, sweeps) run in worker 0 only."""
        return self.index == 0


Links = dict[tuple[int, int], tuple[socket.socket, socket.socket]]


def links(size: int, kind: int = socket.SOCK_STREAM) -> Links:
    """A socket pair (``kind``: stream or datagram) per (sender, receiver) of ``size`` workers, made
    before forking: the first end is the sender's, the second the receiver's."""
    return {(sender, receiver): socket.socketpair(socket.AF_UNIX, kind)
            for sender in range(size) for receiver in range(size) if sender != receiver}


def close_unused(index: int, pairs: Links) -> None:
    """In worker ``index`` after the fork: close every end of ``pairs`` that is not its own."""
    for (sender, receiver), (send_end, receive_end) in pairs.items():
        if sender != index:
            send_end.close()
        if receiver != index:
            receive_end.close()


def peers_for(index: int, pairs: Links) -> Peers:
    """Worker ``index``'s ends of the links: the read ends of those to it, the write ends of its own."""
    return Peers([read_end for (_, receiver), (_, read_end) in pairs.items() if receiver == index],
                 [write_end for (sender, _), (write_end, _) in pairs.items() if sender == index])


def cluster_for(index: int, size: int, memory: Any, pairs: Links, handoff: Handoff | None = None) -> Cluster:
    """In worker ``index`` after the fork: its cluster; every socket end it does not use is closed."""
    close_unused(index, pairs)
    return Cluster(index, size, Generations(size, memory).for_worker(index), peers_for(index, pairs), handoff)
