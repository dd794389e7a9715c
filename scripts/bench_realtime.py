"""Realtime section: fan-out to 1,000 WebSocket clients at a fixed send rate, then 10,000 idle connections.

The clients live in this (bench) process, the server in its own; both share the machine's 2 cores.
Each client is a minimal asyncio protocol that parses WebSocket frame headers (a full client library
would cost more CPU than the server's delivery and measure itself). Every message carries its send
time; a delivery's latency is receive time minus the moment before the POST was sent, so it includes
the durable COMMIT. RSS per idle connection is read from /proc/<pid>/status of the server and its
workers.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import resource
import struct
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchlib import KeepAlive, duration_s, percentile, server_cpu_s, server_rss_kib

TITLE = "realtime"
API = "/api/v1"
FANOUT_USERS = 1000
RATE_PER_S = 50
POSTERS = 5
IDLE_CONNECTIONS = 10_000
IDLE_USERS = 10
CONNECT_BATCH = 200
MARK = re.compile(rb'"original_content":"t=(\d+\.\d+)')


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def server_env(tmp: Path) -> dict[str, str]:
    raise_nofile()  # the server subprocess inherits this process's limit
    return {"ROSETTA_REALTIME_MAX_CONNECTIONS_PER_PRINCIPAL": str(IDLE_CONNECTIONS)}


class Client(asyncio.Protocol):
    """Counts event frames; when ``timed``, also reads each message's send time for latency."""

    def __init__(self, timed: bool, latencies: list[float], ready: asyncio.Future[None]) -> None:
        self.buffer = bytearray()
        self.upgraded = False
        self.frames = 0
        self.timed = timed
        self.latencies = latencies
        self.ready = ready
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buffer.startswith(b"HTTP/1.1 101"):
                if not self.ready.done():
                    self.ready.set_exception(RuntimeError(bytes(self.buffer[:200]).decode("latin-1")))
                return
            del self.buffer[:end + 4]
            self.upgraded = True
        buf = self.buffer
        pos = 0
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
            if not self.ready.done():
                self.ready.set_result(None)  # the hello
            else:
                self.frames += 1
                if self.timed:
                    found = MARK.search(buf, pos + head, pos + head + size)
                    if found:
                        self.latencies.append(now - float(found.group(1)))
            pos += head + size
        del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before hello"))


async def open_client(base_url: str, token: str, timed: bool, latencies: list[float]) -> Client:
    parts = urlsplit(base_url)
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    transport, client = await loop.create_connection(lambda: Client(timed, latencies, ready),
                                                     parts.hostname, parts.port)
    key = base64.b64encode(os.urandom(16)).decode()
    transport.write((f"GET {API}/realtime?access_token={token} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                     f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    await asyncio.wait_for(ready, 30)
    return client


async def connect_many(base_url: str, tokens: list[str], count: int, timed: int,
                       latencies: list[float]) -> list[Client]:
    clients: list[Client] = []
    for start in range(0, count, CONNECT_BATCH):
        batch = range(start, min(count, start + CONNECT_BATCH))
        clients += await asyncio.gather(*(open_client(base_url, tokens[i % len(tokens)], i < timed, latencies)
                                          for i in batch))
    return clients


async def team(base_url: str, users: int, prefix: str) -> tuple[list[str], str]:
    """``users`` accounts in one workspace; returns their tokens and the general channel's messages path."""
    sem = asyncio.Semaphore(20)

    async def sign_up(i: int) -> str:
        async with sem:
            client = KeepAlive(base_url)
            password = "bench-password-1"  # noqa: S105 - a throwaway account on a throwaway server
            status, body = await client.json("POST", f"{API}/auth/app/register", {
                "name": f"{prefix} {i}", "email": f"{prefix}{i}@example.test", "password": password,
                "password_confirmation": password, "preferred_language": "en" if i % 2 else "es",
                "device_name": "bench",
            })
            await client.close()
            assert status == 200, (status, body)
            return str(body["access_token"])

    tokens = list(await asyncio.gather(*(sign_up(i) for i in range(users))))
    owner = KeepAlive(base_url)
    status, body = await owner.json("POST", f"{API}/workspaces", {"name": f"{prefix} team"}, token=tokens[0])
    assert status == 201, (status, body)
    workspace_id = body["data"]["id"]
    status, body = await owner.json("POST", f"{API}/workspaces/{workspace_id}/invites", {"expires_in_days": 1},
                                    token=tokens[0])
    assert status == 201, (status, body)
    code = body["data"]["code"]

    async def accept(token: str) -> None:
        async with sem:
            client = KeepAlive(base_url)
            status, body = await client.json("POST", f"{API}/invites/{code}/accept", token=token)
            await client.close()
            assert status == 200, (status, body)

    await asyncio.gather(*(accept(token) for token in tokens[1:]))
    status, body = await owner.json("GET", f"{API}/workspaces/{workspace_id}/channels", token=tokens[0])
    await owner.close()
    general = next(c for c in body["data"] if c["slug"] == "general")
    return tokens, f"{API}/workspaces/{workspace_id}/channels/{general['id']}/messages"


async def post_at_rate(base_url: str, token: str, path: str, seconds: float) -> int:
    """POSTERS clients together send RATE_PER_S messages a second on a fixed schedule."""
    interval = POSTERS / RATE_PER_S
    sent = 0

    async def poster(offset: float) -> None:
        nonlocal sent
        client = KeepAlive(base_url)
        start = time.perf_counter() + offset
        n = 0
        while True:
            due = start + n * interval
            if due - start > seconds:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            status, _ = await client.json("POST", path, {"content": f"t={time.time():.6f}"}, token=token)
            assert status == 201, status
            sent += 1
            n += 1
        await client.close()

    await asyncio.gather(*(poster(i * interval / POSTERS) for i in range(POSTERS)))
    return sent


async def run(base_url: str, tmp: Path) -> list[tuple[str, str, str]]:
    raise_nofile()
    seconds = duration_s()
    rows: list[tuple[str, str, str]] = []

    tokens, path = await team(base_url, FANOUT_USERS, "fan")
    latencies: list[float] = []
    clients = await connect_many(base_url, tokens, FANOUT_USERS, FANOUT_USERS, latencies)
    began = time.perf_counter()
    server_cpu, client_cpu = server_cpu_s(), time.process_time()
    sent = await post_at_rate(base_url, tokens[0], path, seconds)
    expected = sent * len(clients)
    deadline = time.perf_counter() + 10
    # Poll the 1,000 counters every 50 ms (cheaper than an event set from every frame's hot path).
    while sum(c.frames for c in clients) < expected and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - began
    server_cpu, client_cpu = server_cpu_s() - server_cpu, time.process_time() - client_cpu
    delivered = sum(c.frames for c in clients)
    rows.append((f"fan-out: {len(clients)} WebSocket clients, {sent} messages at {RATE_PER_S}/s",
                 f"{delivered}/{expected} delivered", "all"))
    rows.append(("deliveries per second", f"{delivered / elapsed:,.0f}", f"{RATE_PER_S * FANOUT_USERS:,}"))
    rows.append(("send→deliver latency p50", f"{percentile(latencies, 0.50) * 1000:.1f} ms", ""))
    rows.append(("send→deliver latency p99", f"{percentile(latencies, 0.99) * 1000:.1f} ms", "≤ 50 ms"))
    # Both processes share the 2 cores: when they add up to ~200%, latency includes waiting for a CPU.
    rows.append(("CPU during fan-out: server / bench clients",
                 f"{server_cpu / elapsed:.0%} / {client_cpu / elapsed:.0%} of a core", ""))
    for client in clients:
        assert client.transport is not None
        client.transport.close()
    await asyncio.sleep(1)  # let the server notice the closes before measuring the idle baseline

    idle_tokens, _ = await team(base_url, IDLE_USERS, "idle")
    before = server_rss_kib()
    if not before:
        rows.append(("RSS per idle connection", "server pid not found", "≤ 20 KiB"))
        return rows
    idle = await connect_many(base_url, idle_tokens, IDLE_CONNECTIONS, 0, [])
    await asyncio.sleep(2)  # settle: every hello written, nothing in flight
    after = server_rss_kib()
    rows.append(("idle WebSocket connections held", f"{len(idle):,}", f"{IDLE_CONNECTIONS:,}"))
    rows.append(("server RSS per idle connection", f"{(after - before) * 1024 / len(idle) / 1024:.1f} KiB",
                 "≤ 20 KiB"))
    for client in idle:
        assert client.transport is not None
        client.transport.close()
    return rows
