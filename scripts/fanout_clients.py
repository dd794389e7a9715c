"""The realtime section's WebSocket clients, held by a process of their own around one epoll loop.

Why a process of its own: 1,000 clients receiving 50,000 frames a second cost a Python process
most of a core (measured: ~0.6 of a core here, about half of it the kernel's recv, with an asyncio
loop or this bare one alike). Kept in the senders' process, that work delayed the loop that paces
the sends, so a send's timestamp was taken late. A readable socket here costs one ``recvmsg`` and
a few lines that find the frame's length and, in a message frame, its send mark.

Latency ends when a frame reached the client's socket: Linux stamps each segment on arrival
(SO_TIMESTAMPNS), so a frame read alone is timed by the server's delivery, not by how long this
process took to get round to 1,000 sockets. A read returns one stamp: that of the LAST segment it
took (checked on this kernel: two sends 20 ms apart, read together, carry the second's stamp).
Every frame completed by a read arrived no later than that, so each gets the read's stamp: for the
last one the truth, for those before it an upper bound, later than the truth by at most the gap
between their segments. ``behind`` counts frames that shared a read, so the table shows how many
are timed that way. Without stamps (another OS) every frame gets the time of the read.

Only a sample is timed: every TIMED_EVERY-th connection (in sign-up order, so spread over the
server's workers and its delivery order) is read as soon as a frame lands. The others are read in
a sweep every SWEEP_S, several frames per ``recv``, and their message frames only counted, so
"delivered" still covers every connection. Why: this process shares the machine's 2 cores with
the server, and reading every connection at once cost ~0.8 of a core, CPU taken from the server
it measures (real clients sit on other machines). The sweep halves that. The server's work is
the same either way: every socket gets every frame, and on loopback a ``send`` pays for the
receiving side too (measured here: a bare 450-byte send cost ~10 µs of kernel time, whether the
reader waited in epoll or not).

The parent drives it through a pipe with ``Fanout``: open N connections (each waits for its
``hello``), ask for the count of message frames, collect the latencies, close.
"""

from __future__ import annotations

import base64
import os
import re
import select
import socket
import struct
import sys
import time
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlsplit

from benchlib import spawn

API = "/api/v1"
# Linux: SO_TIMESTAMPNS (asm-generic and x86 alike); Python's socket module does not name it.
SO_TIMESTAMPNS = 35
READ_SIZE = 65536
ANCILLARY_SIZE = 64
CONNECT_BATCH = 200  # connections handshaking at once: stays inside the server's listen backlog
OPEN_ROUND = 50  # connections both processes open together (fanout.open)
MARK_TEXT = b'"original_content":"t='
MARK = re.compile(re.escape(MARK_TEXT) + rb"(\d+\.\d+)")
# Of the counted clients, every TIMED_EVERY-th is timed and read as soon as a frame lands; the others
# are read every SWEEP_S, several frames per recv, and only counted (see the module docstring).
TIMED_EVERY = 5
SWEEP_S = 0.1
TIMESTAMPS = sys.platform == "linux"


class Client:
    """One connection: the upgrade answer, the hello, then message frames counted (``counted``) and,
    when ``timed``, timed."""

    __slots__ = ("behind", "buffer", "counted", "hello", "latencies", "messages", "sock", "timed", "upgraded")

    def __init__(self, sock: socket.socket, counted: bool, timed: bool, latencies: list[float]) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.upgraded = False
        self.hello = False
        self.messages = 0  # frames carrying a send mark (counted clients only)
        self.behind = 0  # of the timed ones, frames that shared a read with another: an upper bound
        self.counted = counted
        self.timed = timed
        self.latencies = latencies

    def readable(self) -> bool:
        """Read what arrived; False once the connection is gone."""
        try:
            data, ancillary, _, _ = self.sock.recvmsg(READ_SIZE, ANCILLARY_SIZE)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        if not data:
            return False
        arrived = time.time()
        if ancillary:
            seconds, nanoseconds = struct.unpack_from("qq", ancillary[0][2])
            arrived = seconds + nanoseconds / 1e9
        self.received(data, arrived)
        return True

    def received(self, data: bytes, arrived: float) -> None:
        buf = self.buffer
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(bytes(buf[:200]).decode("latin-1"))
            del buf[:end + 4]
            self.upgraded = True
        pos = 0
        timed = 0
        while len(buf) - pos >= 2:
            size = buf[pos + 1] & 0x7F
            head = 2
            if size == 126:
                if len(buf) - pos < 4:
                    break
                size, head = struct.unpack_from("!H", buf, pos + 2)[0], 4
            elif size == 127:
                if len(buf) - pos < 10:
                    break
                size, head = struct.unpack_from("!Q", buf, pos + 2)[0], 10
            if len(buf) - pos < head + size:
                break
            if not self.hello:
                self.hello = True
            elif self.timed:
                found = MARK.search(buf, pos + head, pos + head + size)
                if found:  # a message; other frames (presence) are not what is measured
                    self.messages += 1
                    self.latencies.append(arrived - float(found.group(1)))
                    timed += 1
            elif self.counted and buf.find(MARK_TEXT, pos + head, pos + head + size) >= 0:
                self.messages += 1
            pos += head + size
        del buf[:pos]
        if timed > 1:
            self.behind += timed


def _connect(host: str, port: int, netloc: str, token: str) -> socket.socket:
    sock = socket.create_connection((host, port))
    if TIMESTAMPS:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET {API}/realtime?access_token={token} HTTP/1.1\r\nHost: {netloc}\r\n"
                  f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    sock.setblocking(False)
    return sock


class Holder:
    """The child's state: every client by file descriptor, one epoll set for the clients read at once
    (and the pipe to the parent), the swept clients, read in turn every SWEEP_S."""

    def __init__(self, pipe: Connection) -> None:
        self.pipe = pipe
        self.poll = select.epoll()
        self.poll.register(pipe.fileno(), select.EPOLLIN)
        self.clients: dict[int, Client] = {}
        self.swept: dict[int, Client] = {}
        self.next_sweep = 0.0
        self.latencies: list[float] = []

    def serve(self) -> None:
        while True:
            timeout = max(0.0, self.next_sweep - time.monotonic()) if self.swept else None
            for fd, _ in self.poll.poll(timeout):
                if fd == self.pipe.fileno():
                    if not self.command(self.pipe.recv()):
                        return
                    continue
                client = self.clients.get(fd)
                if client is not None and not client.readable():
                    self.drop(fd)
            if self.swept and time.monotonic() >= self.next_sweep:
                self.sweep()

    def sweep(self) -> None:
        self.next_sweep = time.monotonic() + SWEEP_S
        for fd, client in list(self.swept.items()):
            if not client.readable():
                self.drop(fd)

    def command(self, message: tuple[Any, ...]) -> bool:
        name = message[0]
        if name == "open":
            _, base_url, tokens, counted, timed = message
            try:
                self.open(base_url, tokens, counted, timed)
            except Exception as exc:  # the parent reports it; the child stays to be told to stop
                self.pipe.send(("error", repr(exc)))
                return True
            self.pipe.send(("ready",))
        elif name == "messages":
            self.sweep()  # what has arrived by now, not by the last sweep
            self.pipe.send(sum(client.messages for client in self.clients.values()))
        elif name == "count":
            self.pipe.send(len(self.clients))
        elif name == "timed":
            self.pipe.send(sum(client.timed for client in self.clients.values()))
        elif name == "reset":
            for client in self.clients.values():
                client.messages = client.behind = 0
            self.pipe.send("reset")
        elif name == "behind":
            self.pipe.send(sum(client.behind for client in self.clients.values()))
        elif name == "latencies":
            self.pipe.send(self.latencies)
            self.latencies.clear()  # in place: every client appends to this list
        elif name == "close":
            for fd in list(self.clients):
                self.drop(fd)
            self.pipe.send("closed")
        elif name == "stop":
            return False
        return True

    def open(self, base_url: str, tokens: list[str], counted: bool, timed: bool) -> None:
        """A connection per token; ``timed`` ones are read at once, the other counted ones swept."""
        parts = urlsplit(base_url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        for start in range(0, len(tokens), CONNECT_BATCH):
            waiting: set[int] = set()
            for token in tokens[start:start + CONNECT_BATCH]:
                sock = _connect(host, port, parts.netloc, token)
                self.clients[sock.fileno()] = Client(sock, counted, timed, self.latencies)
                self.poll.register(sock.fileno(), select.EPOLLIN)
                waiting.add(sock.fileno())
            deadline = time.monotonic() + 30
            while waiting:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(waiting)} connections got no hello within 30 s")
                for fd, _ in self.poll.poll(1.0):
                    client = self.clients.get(fd)
                    if client is None:
                        continue
                    if not client.readable():
                        raise ConnectionError("the server closed a connection before its hello")
                    if client.hello:
                        waiting.discard(fd)
        for fd, client in self.clients.items():
            if client.counted and not client.timed and fd not in self.swept:
                self.poll.unregister(fd)  # from now on read by the sweep
                self.swept[fd] = client

    def drop(self, fd: int) -> None:
        client = self.clients.pop(fd)
        if self.swept.pop(fd, None) is None:
            self.poll.unregister(fd)
        client.sock.close()


def _child(pipe: Connection) -> None:
    Holder(pipe).serve()


class _Child:
    """One client process and the blocking pipe that drives it (the calls are short)."""

    def __init__(self) -> None:
        self.process, self.pipe = spawn(_child)

    def send(self, *message: Any) -> None:
        self.pipe.send(message)

    def answer(self, name: str, timeout: float = 600) -> Any:
        if not self.pipe.poll(timeout):
            raise TimeoutError(f"the client process did not answer {name!r}")
        return self.pipe.recv()

    def ask(self, *message: Any) -> Any:
        self.send(*message)
        return self.answer(message[0])

    def stop(self) -> None:
        if self.process.is_alive():
            self.pipe.send(("stop",))
            self.process.join(10)
        if self.process.is_alive():
            self.process.kill()


class Fanout:
    """The parent's handle on the two client processes: one reads the timed connections as soon as a
    frame lands, the other sweeps the rest (see the module docstring)."""

    def __init__(self) -> None:
        self.prompt = _Child()
        self.swept = _Child()
        self.children = (self.prompt, self.swept)

    @property
    def pids(self) -> list[int]:
        return [int(child.process.pid or 0) for child in self.children]

    def open(self, base_url: str, tokens: list[str], count: int, counted: bool) -> int:
        """Open ``count`` connections (the i-th with ``tokens[i % len(tokens)]``); with ``counted``
        their message frames are counted and every TIMED_EVERY-th connection's are timed."""
        chosen = [tokens[i % len(tokens)] for i in range(count)]
        if not counted:
            return self._open_all(((self.swept, base_url, chosen, False, False),))
        opened = 0
        # In rounds, both processes connecting at once, so the timed connections stay spread over
        # the server's delivery order as they were in sign-up order.
        for start in range(0, count, OPEN_ROUND):
            indexes = range(start, min(count, start + OPEN_ROUND))
            timed = [chosen[i] for i in indexes if i % TIMED_EVERY == 0]
            rest = [chosen[i] for i in indexes if i % TIMED_EVERY != 0]
            opened = self._open_all(((self.prompt, base_url, timed, True, True),
                                     (self.swept, base_url, rest, True, False)))
        return opened

    def _open_all(self, orders: tuple[tuple[_Child, str, list[str], bool, bool], ...]) -> int:
        """Send each process its order, then wait for all: they connect at the same time. Returns
        how many connections the processes hold in all."""
        for child, *order in orders:
            child.send("open", *order)
        for child, *_ in orders:
            answer = child.answer("open")
            if answer[0] == "error":
                raise RuntimeError(f"opening connections failed: {answer[1]}")
        return sum(int(child.ask("count")) for child in self.children)

    def messages(self) -> int:
        """Message frames received so far by the counted clients."""
        return sum(int(child.ask("messages")) for child in self.children)

    def reset(self) -> None:
        """Start counting messages (and frames read behind) from zero."""
        for child in self.children:
            child.ask("reset")

    def timed(self) -> int:
        """How many of the open connections time their frames."""
        return int(self.prompt.ask("timed"))

    def behind(self) -> int:
        """Message frames that shared a read with another: the reader was late to read them."""
        return int(self.prompt.ask("behind"))

    def latencies(self) -> list[float]:
        return list(self.prompt.ask("latencies"))

    def close_all(self) -> None:
        for child in self.children:
            child.ask("close")

    def stop(self) -> None:
        for child in self.children:
            child.stop()
