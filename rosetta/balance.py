"""Even connection counts across the worker processes (``server.balance_connections``).

With several workers on one port (SO_REUSEPORT) the kernel picks each connection's worker by a
hash of its addresses. Many short connections even out; a few long keep-alive ones do not: 20 of
them split 7/13 about as often as 10/10, and the worker holding 13 then runs out of CPU while the
other idles (the core bench measured 86-88 % of a core against 49-70 %). A reverse proxy in front
of the server holds exactly such a handful of keep-alive connections.

So a worker that accepts a connection while it holds more than the least-loaded other worker hands
it over: the socket travels over a Unix datagram socket (SCM_RIGHTS) with its peer's address, this
worker closes its copy, and the other serves it as if it had accepted it. Handing over happens once,
at accept; the connection then lives in one worker.

Counts live in shared memory made before the fork (``Loads``). Every word has a single writer, so no
lock is needed: a worker's open connections, how many it passed to each other worker, and how many
it received from each. A worker's load is its open connections plus those on their way to it, so a
burst of accepts does not send everything to a worker that has not yet read its inbox.

What is counted: HTTP connections, from accept until closed. A WebSocket or SSE upgrade keeps the
HTTP connection until the upgrade detaches it (WebSockets): after that the kernel's hash is fair
enough, since realtime clients are many.

It must never lose a connection: when handing over fails (the other worker's inbox is full or gone),
this worker serves the connection itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import mmap
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import tornado.netutil

from rosetta.cluster import Links, close_unused, links

if TYPE_CHECKING:
    from rosetta.httpserver import HTTPServer

log = logging.getLogger("rosetta.balance")

_WORD = 8
MAX_NOTE_BYTES = 512  # the datagram beside the socket: its peer's address as JSON
RECEIVE_PER_TURN = 64  # sockets taken from the inbox per loop turn, so accepting stays fair


class Loads:
    """Every worker's connection counts, in shared memory; this view writes only worker ``index``'s words.

    Words: ``open[w]``, then ``passed[i][j]`` (written by i), then ``received[j][i]`` (written by j).
    """

    def __init__(self, size: int, memory: mmap.mmap | None = None, index: int = 0) -> None:
        self.size = size
        self.index = index
        self._memory = memory if memory is not None else self.allocate(size)
        self._words = memoryview(self._memory).cast("q")

    @staticmethod
    def allocate(size: int) -> mmap.mmap:
        """Shared memory for ``size`` workers; allocate before forking so each child inherits it."""
        return mmap.mmap(-1, (size + 2 * size * size) * _WORD)  # anonymous maps are MAP_SHARED

    def for_worker(self, index: int) -> Loads:
        return Loads(self.size, self._memory, index)

    def _passed(self, sender: int, receiver: int) -> int:
        return self.size + sender * self.size + receiver

    def _received(self, receiver: int, sender: int) -> int:
        return self.size + self.size * self.size + receiver * self.size + sender

    def opened(self) -> None:
        self._words[self.index] += 1

    def closed(self) -> None:
        self._words[self.index] -= 1

    def passed_to(self, receiver: int) -> None:
        self._words[self._passed(self.index, receiver)] += 1

    def received_from(self, sender: int) -> None:
        self._words[self._received(self.index, sender)] += 1

    def passed(self) -> int:
        """Connections this worker has handed to the others so far."""
        return sum(self._words[self._passed(self.index, other)] for other in range(self.size) if other != self.index)

    def received(self) -> int:
        """Connections this worker has taken from the others so far."""
        return sum(self._words[self._received(self.index, other)] for other in range(self.size) if other != self.index)

    def load(self, worker: int) -> int:
        """``worker``'s open connections plus those other workers passed it that it has not taken yet."""
        words = self._words
        on_the_way = sum(words[self._passed(sender, worker)] - words[self._received(worker, sender)]
                         for sender in range(self.size) if sender != worker)
        return words[worker] + on_the_way

    def lighter_worker(self) -> int | None:
        """The least-loaded other worker when it holds fewer connections than this one, else None."""
        mine = self.load(self.index)
        lightest, least = None, mine
        for worker in range(self.size):
            if worker != self.index:
                load = self.load(worker)
                if load < least:
                    lightest, least = worker, load
        return lightest


def handoff_links(size: int) -> Links:
    """A datagram socket pair per (sender, receiver) of ``size`` workers, made before forking."""
    return links(size, socket.SOCK_DGRAM)


@dataclass
class Handoff:
    """One worker's share: its view of the loads, its sockets to and from each other worker."""

    loads: Loads
    outboxes: dict[int, socket.socket]  # receiver -> this worker's sending end
    inboxes: dict[int, socket.socket]  # sender -> this worker's receiving end


def handoff_for(index: int, loads: Loads, pairs: Links) -> Handoff:
    """In worker ``index`` after the fork: its ends of the links; every end it does not use is closed."""
    close_unused(index, pairs)
    return handoff_ends(index, loads, pairs)


def handoff_ends(index: int, loads: Loads, pairs: Links) -> Handoff:
    """Worker ``index``'s ends of the links (tests run several workers in one process with these)."""
    outboxes = {receiver: send_end for (sender, receiver), (send_end, _) in pairs.items() if sender == index}
    inboxes = {sender: receive_end for (sender, receiver), (_, receive_end) in pairs.items() if receiver == index}
    for end in [*outboxes.values(), *inboxes.values()]:
        end.setblocking(False)  # a full inbox means serving here, never waiting
    return Handoff(loads.for_worker(index), outboxes, inboxes)


class Balancer:
    """Accepts for ``server`` on the listening sockets; hands new connections over as ``Loads`` says."""

    def __init__(self, server: HTTPServer, handoff: Handoff) -> None:
        self.server = server
        self.handoff = handoff
        self.loads = handoff.loads
        server.loads = handoff.loads
        self._stop_accepting: list[Callable[[], None]] = []
        self._sockets: list[socket.socket] = []

    def listen(self, sockets: list[socket.socket]) -> None:
        self._sockets = list(sockets)
        for sock in sockets:
            self._stop_accepting.append(tornado.netutil.add_accept_handler(sock, self.accepted))
        loop = asyncio.get_running_loop()
        for sender, inbox in self.handoff.inboxes.items():
            loop.add_reader(inbox.fileno(), self._receive, sender, inbox)

    def stop(self) -> None:
        """Stop accepting and receiving; connections already served are the server's to close."""
        for stop in self._stop_accepting:
            stop()
        for sock in self._sockets:
            sock.close()
        loop = asyncio.get_running_loop()
        for inbox in self.handoff.inboxes.values():
            loop.remove_reader(inbox.fileno())
            inbox.close()
        for outbox in self.handoff.outboxes.values():
            outbox.close()
        self._stop_accepting, self._sockets = [], []

    def accepted(self, connection: socket.socket, address: Any) -> None:
        target = self.loads.lighter_worker()
        if target is not None and self._hand_over(target, connection, address):
            return
        self._serve(connection, address)

    def _hand_over(self, target: int, connection: socket.socket, address: Any) -> bool:
        note = json.dumps(list(address) if isinstance(address, tuple) else address).encode()
        try:
            socket.send_fds(self.handoff.outboxes[target], [note], [connection.fileno()])
        except OSError:  # full (the other worker is busy) or gone (stopping): serve it here
            return False
        self.loads.passed_to(target)
        connection.close()  # the other worker holds its own descriptor of the same connection now
        return True

    def _receive(self, sender: int, inbox: socket.socket) -> None:
        for _ in range(RECEIVE_PER_TURN):
            try:
                note, fds, _, _ = socket.recv_fds(inbox, MAX_NOTE_BYTES, 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                log.warning("the connection inbox from worker %d failed", sender, exc_info=True)
                return
            if not fds:
                continue
            connection = socket.socket(fileno=fds[0])
            try:
                address = json.loads(note)
                address = tuple(address) if isinstance(address, list) else address
            except ValueError:
                address = ("", 0)  # never written by us: keep the connection, without a peer address
            self._serve(connection, address)
            self.loads.received_from(sender)  # after _serve counted it: never briefly under-counted

    def _serve(self, connection: socket.socket, address: Any) -> None:
        """Serve a connection accepted or received here; a failure closes it and the accepting goes on."""
        try:
            self.server.serve_socket(connection, address)
        except Exception:  # one bad connection must not stop the accepting
            log.exception("serving a connection from %s failed", address)
            connection.close()
