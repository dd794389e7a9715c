"""Helpers for benchmark sections: a minimal keep-alive HTTP/1.1 client and latency statistics.

Tornado's simple_httpclient opens a new connection per request (no keep-alive) and curl_httpclient
is not installed, so a benchmark of "keep-alive clients" needs its own client. This one speaks just
enough HTTP/1.1 for Rosetta's answers: a status line, headers, and a Content-Length body (Tornado
sets Content-Length on every finished response; 204/304 have no body). It is not a general client.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import re
import socket
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any
from urllib.parse import urlsplit

DEFAULT_DURATION_S = 10.0
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


def spawn(target: Callable[[Connection], None]) -> tuple[BaseProcess, Connection]:
    """Start ``target(pipe)`` in a process of its own (a daemon); the process and this end of the pipe.

    Spawned, not forked: a fresh interpreter, not a copy of this process and its running loop.
    """
    context = multiprocessing.get_context("spawn")
    pipe, child_end = context.Pipe()
    process = context.Process(target=target, args=(child_end,), daemon=True)
    process.start()
    child_end.close()
    return process, pipe


def duration_s() -> float:
    """How long each measured phase runs; the runner's ``--duration`` (exported as BENCH_DURATION_S)."""
    return float(os.environ.get("BENCH_DURATION_S", DEFAULT_DURATION_S))


def server_pids() -> list[int]:
    """The server's pid (BENCH_SERVER_PID) and its worker processes' (server.workers > 1)."""
    pid = os.environ.get("BENCH_SERVER_PID")
    if not pid:
        return []
    pids = [int(pid)]
    for proc in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if proc.isdigit():
            try:
                with open(f"/proc/{proc}/stat", encoding="ascii") as stat:
                    if stat.read().rsplit(")", 1)[1].split()[1] == pid:
                        pids.append(int(proc))
            except (OSError, IndexError):
                continue
    return pids


def machine_ticks() -> tuple[int, int]:
    """(stolen, total) clock ticks of all CPUs so far, from /proc/stat; (0, 0) without it.

    "Stolen" is time a vCPU had work but did not run: the hypervisor ran something else, or was still
    waking the vCPU from a halt. The second part is partly the workload's own doing: two processes
    passing messages across vCPUs showed 28-38 % stolen, on one vCPU 2-4 % (see rosetta/affinity.py).
    Either way, a run that lost a tenth of the machine is not comparable with one that lost none.
    """
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(value) for value in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0, 0
    if len(fields) < 8:  # a kernel that does not count stolen time
        return 0, 0
    return fields[7], sum(fields)


def stolen_share(before: tuple[int, int], after: tuple[int, int]) -> str:
    """The machine's CPU time stolen between two ``machine_ticks()``, as a percentage (or "n/a")."""
    total = after[1] - before[1]
    return f"{(after[0] - before[0]) / total:.0%}" if total > 0 else "n/a"


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().rsplit(")", 1)[1].split()


def server_cpu_s() -> float:
    """CPU seconds (user + system, all threads, every worker) the server has used so far; 0 without /proc."""
    return cpu_s(server_pids())


def cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system, all threads) the processes ``pids`` have used so far; 0 without /proc."""
    total = 0
    for pid in pids:
        try:
            fields = _stat_fields(pid)
        except (OSError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def server_rss_kib() -> int:
    """Resident memory of the server and its workers, in KiB; 0 without /proc."""
    total = 0
    for pid in server_pids():
        try:
            with open(f"/proc/{pid}/status", encoding="ascii") as status:
                found = re.search(r"VmRSS:\s+(\d+) kB", status.read())
        except OSError:
            continue
        total += int(found.group(1)) if found else 0
    return total


class Exchange(asyncio.Protocol):
    """A keep-alive connection for measured loops: send one request, learn the answer's status.

    An asyncio protocol rather than streams: the answer is gathered in ``data_received`` and one
    future per request is resolved, where a StreamReader wakes the client for the head and again
    for the body. The client shares the machine's cores with the server; this halves what reading
    a 28 KB answer costs it. The body is counted, not kept (measured loops look at the status).
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._status = 0
        self._needed = -1  # bytes of the whole answer once its head is parsed
        self._answer: asyncio.Future[int] | None = None

    @classmethod
    async def open(cls, base_url: str) -> Exchange:
        parts = urlsplit(base_url)
        _, protocol = await asyncio.get_running_loop().create_connection(
            cls, parts.hostname or "127.0.0.1", parts.port or 80)
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def send(self, request: bytes) -> int:
        """Send a whole request; the answer's status once all of it arrived."""
        assert self.transport is not None
        self._answer = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self._answer

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if self._needed < 0:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end])
            self._status = int(head[9:12])  # "HTTP/1.1 200 OK"
            length = CONTENT_LENGTH.search(head)
            self._needed = end + 4 + (int(length.group(1)) if length else 0)
        if len(buffer) >= self._needed:
            del buffer[:self._needed]
            self._needed = -1
            if self._answer is not None and not self._answer.done():
                self._answer.set_result(self._status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(ConnectionError("the server closed the connection"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class KeepAlive:
    """One persistent connection; one request at a time (like a browser tab or a bot)."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:  # small request/response pairs: do not wait for Nagle's 40 ms
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()
            self.writer = self.reader = None

    async def request(self, method: str, path: str, body: bytes | None = None,
                      headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Accept: application/json"]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        payload = body or b""
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(payload)}")
        return await self.send_raw(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)

    async def send_raw(self, request: bytes) -> tuple[int, bytes]:
        """Send one whole request (head and body) and read the answer.

        The measured loops call this with bytes they build cheaply, and the answer is parsed in one
        pass over its head: the client shares the machine's two cores with the server, so every
        microsecond it spends is one the server does not get.
        """
        if self.writer is None:
            await self.connect()
        assert self.reader is not None and self.writer is not None
        self.writer.write(request)
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            raise ConnectionError("the server closed the connection") from None
        lines = head.decode("latin-1").lower().split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        keep = True
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip() == "close":
                keep = False
            elif name == "transfer-encoding":
                raise ConnectionError("chunked answers are not supported by this small client")
        data = await self.reader.readexactly(length) if length else b""
        if not keep:
            await self.close()
        return status, data

    async def json(self, method: str, path: str, payload: Any = None, token: str | None = None) -> tuple[int, Any]:
        headers = {}
        body = None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if payload is not None:
            body = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        status, data = await self.request(method, path, body, headers)
        return status, (json.loads(data) if data else None)


def percentile(samples: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``samples`` (which it sorts in place)."""
    if not samples:
        return float("nan")
    samples.sort()
    index = min(len(samples) - 1, max(0, round(fraction * len(samples)) - 1))
    return samples[index]


async def run_clients(clients: int, seconds: float, make_step: Any) -> tuple[int, list[float], float]:
    """Run ``clients`` loops of ``await step()`` for ``seconds``; returns (count, latencies in s, elapsed s).

    ``make_step(i)`` returns the async callable for client ``i`` (set up its own connection first).
    """
    steps = [await make_step(i) for i in range(clients)]
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()

    async def loop(step: Any) -> None:
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            await step()
            latencies.append(time.perf_counter() - began)

    await asyncio.gather(*(loop(step) for step in steps))
    return len(latencies), latencies, time.perf_counter() - start
