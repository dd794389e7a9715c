"""Realtime section: fan-out to 1,000 WebSocket clients at a fixed send rate, then 10,000 idle connections.

The server runs in its own process, the WebSocket clients in another (``fanout_clients.py``: bare
sockets around one epoll loop; a full client library would cost more CPU than the server's delivery
and measure itself), the senders in this one; all share the machine's 2 cores. Every message carries
its send time; a delivery's latency is its arrival in the client's socket (the kernel's receive
timestamp) minus the moment before the POST was sent, so it includes the durable COMMIT. Every
connection's frames are counted; a fifth of the connections are timed (``fanout_clients``). RSS per
idle connection is read from /proc/<pid>/status of the server and its workers.
"""

from __future__ import annotations

import asyncio
import resource
import time
from pathlib import Path

from benchlib import KeepAlive, cpu_s, duration_s, machine_ticks, percentile, server_cpu_s, server_rss_kib, stolen_share
from fanout_clients import SWEEP_S, TIMED_EVERY, Fanout

TITLE = "realtime"
API = "/api/v1"
FANOUT_USERS = 1000
RATE_PER_S = 50
POSTERS = 5
IDLE_CONNECTIONS = 10_000
IDLE_USERS = 10
WARM_UP_S = 2.0  # sends at the same rate before measuring: the server settles after 1,000 connects


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def server_env(tmp: Path) -> dict[str, str]:
    raise_nofile()  # the server subprocess inherits this process's limit
    return {"ROSETTA_REALTIME_MAX_CONNECTIONS_PER_PRINCIPAL": str(IDLE_CONNECTIONS)}


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


async def post_at_rate(base_url: str, token: str, path: str, seconds: float) -> list[float]:
    """POSTERS clients together send RATE_PER_S messages a second on a fixed schedule; each send's
    latency (its answer came after COMMIT), in seconds."""
    interval = POSTERS / RATE_PER_S
    latencies: list[float] = []

    async def poster(offset: float) -> None:
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
            began = time.perf_counter()
            status, _ = await client.json("POST", path, {"content": f"t={time.time():.6f}"}, token=token)
            assert status == 201, status
            latencies.append(time.perf_counter() - began)
            n += 1
        await client.close()

    await asyncio.gather(*(poster(i * interval / POSTERS) for i in range(POSTERS)))
    return latencies


async def until_delivered(fanout: Fanout, expected: int, timeout_s: float = 10) -> None:
    deadline = time.perf_counter() + timeout_s
    while fanout.messages() < expected and time.perf_counter() < deadline:  # noqa: ASYNC110 - with a deadline
        await asyncio.sleep(0.05)


async def run(base_url: str, tmp: Path) -> list[tuple[str, str, str]]:
    raise_nofile()  # the client process inherits this process's limit
    fanout = Fanout()
    try:
        return await measure(base_url, fanout)
    finally:
        fanout.stop()


async def measure(base_url: str, fanout: Fanout) -> list[tuple[str, str, str]]:
    seconds = duration_s()
    rows: list[tuple[str, str, str]] = []

    tokens, path = await team(base_url, FANOUT_USERS, "fan")
    connected = fanout.open(base_url, tokens, FANOUT_USERS, counted=True)
    # Steady state is what is measured: the burst of 1,000 connects leaves work behind (the
    # presence frames, and a full collection of the cyclic GC over the new connections' objects).
    warm_up = len(await post_at_rate(base_url, tokens[0], path, WARM_UP_S)) * connected
    await until_delivered(fanout, warm_up)
    fanout.latencies()  # dropped: the warm-up's
    fanout.reset()
    began = time.perf_counter()
    server_cpu, client_cpu, ticks = server_cpu_s(), cpu_s(fanout.pids) + time.process_time(), machine_ticks()
    send_latencies = await post_at_rate(base_url, tokens[0], path, seconds)
    sent = len(send_latencies)
    expected = sent * connected
    await until_delivered(fanout, expected)
    elapsed = time.perf_counter() - began
    server_cpu = server_cpu_s() - server_cpu
    client_cpu = cpu_s(fanout.pids) + time.process_time() - client_cpu
    stolen = stolen_share(ticks, machine_ticks())
    delivered = fanout.messages()
    latencies = fanout.latencies()
    rows.append((f"fan-out: {connected} WebSocket clients, {sent} messages at {RATE_PER_S}/s (after {WARM_UP_S:g} s"
                 " of warm-up at that rate)",
                 f"{delivered}/{expected} delivered", "all"))
    rows.append((f"frames timed (every {TIMED_EVERY}th connection, read at once; the rest read every {SWEEP_S} s)",
                 f"{len(latencies):,} on {fanout.timed()} connections", ""))
    rows.append(("deliveries per second", f"{delivered / elapsed:,.0f}", f"{RATE_PER_S * FANOUT_USERS:,}"))
    rows.append(("send→deliver latency p50", f"{percentile(latencies, 0.50) * 1000:.1f} ms", ""))
    rows.append(("send→deliver latency p99", f"{percentile(latencies, 0.99) * 1000:.1f} ms", "≤ 50 ms"))
    # The worker that took a send queues its fan-out ahead of the sender's answer (Database._run_batch),
    # so the answer leaves after that worker's frames: a server-side view of the same delivery tail.
    rows.append(("send latency (POST answered after COMMIT) p50 / p99",
                 f"{percentile(send_latencies, 0.50) * 1000:.1f} / {percentile(send_latencies, 0.99) * 1000:.1f} ms",
                 ""))
    # Frames that shared a read are timed by that read's last segment (fanout_clients): an upper bound.
    rows.append(("frames the clients read behind (timed by an upper bound)",
                 f"{fanout.behind() / max(1, len(latencies)):.0%}", ""))
    # The processes share the 2 cores: when they add up to ~200%, latency includes waiting for a CPU.
    rows.append(("CPU during fan-out: server / bench (clients and senders); stolen by the hypervisor",
                 f"{server_cpu / elapsed:.0%} / {client_cpu / elapsed:.0%} of a core; {stolen} of the machine", ""))
    fanout.close_all()
    await asyncio.sleep(1)  # let the server notice the closes before measuring the idle baseline

    idle_tokens, _ = await team(base_url, IDLE_USERS, "idle")
    before = server_rss_kib()
    if not before:
        rows.append(("RSS per idle connection", "server pid not found", "≤ 20 KiB"))
        return rows
    idle = fanout.open(base_url, idle_tokens, IDLE_CONNECTIONS, counted=False)
    await asyncio.sleep(2)  # settle: every hello written, nothing in flight
    after = server_rss_kib()
    rows.append(("idle WebSocket connections held", f"{idle:,}", f"{IDLE_CONNECTIONS:,}"))
    rows.append(("server RSS per idle connection", f"{(after - before) * 1024 / idle / 1024:.1f} KiB",
                 "≤ 20 KiB"))
    fanout.close_all()
    return rows
