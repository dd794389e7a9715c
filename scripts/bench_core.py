"""Core section: durable message sends from 20 keep-alive clients, and authenticated history reads.

Setup goes through the public API like a real team: 20 users register, the first creates a
workspace and an invite, the others accept it; everyone then posts in ``general``. Every send is
acknowledged only after its COMMIT (``synchronous`` as the runner set it), so sends/s measures
durable writes; concurrent sends share commits (group commit).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from benchlib import Exchange, KeepAlive, cpu_s, duration_s, percentile, run_clients, server_cpu_s, server_pids

TITLE = "core"
CLIENTS = 20
HISTORY_LIMIT = 50
API = "/api/v1"


async def setup(base_url: str) -> tuple[list[str], str]:
    """Register CLIENTS users in one workspace; return their tokens and the general channel's messages path."""
    async def sign_up(i: int) -> str:
        client = KeepAlive(base_url)
        password = "bench-password-1"  # noqa: S105 - a throwaway account on a throwaway server
        status, body = await client.json("POST", f"{API}/auth/app/register", {
            "name": f"Bench {i}", "email": f"bench{i}@example.test", "password": password,
            "password_confirmation": password, "preferred_language": "en", "device_name": "bench",
        })
        await client.close()
        assert status == 200, (status, body)
        return str(body["access_token"])

    tokens = list(await asyncio.gather(*(sign_up(i) for i in range(CLIENTS))))
    owner = KeepAlive(base_url)
    status, body = await owner.json("POST", f"{API}/workspaces", {"name": "Bench team"}, token=tokens[0])
    assert status == 201, (status, body)
    workspace_id = body["data"]["id"]
    status, body = await owner.json("POST", f"{API}/workspaces/{workspace_id}/invites",
                                    {"expires_in_days": 1}, token=tokens[0])
    assert status == 201, (status, body)
    code = body["data"]["code"]
    for token in tokens[1:]:
        status, body = await owner.json("POST", f"{API}/invites/{code}/accept", token=token)
        assert status == 200, (status, body)
    status, body = await owner.json("GET", f"{API}/workspaces/{workspace_id}/channels", token=tokens[0])
    assert status == 200, (status, body)
    general = next(c for c in body["data"] if c["slug"] == "general")
    await owner.close()
    return tokens, f"{API}/workspaces/{workspace_id}/channels/{general['id']}/messages"


async def measure(base_url: str, tokens: list[str], method: str, path: str, payload: Any,
                  ok: int, seconds: float) -> tuple[float, float, float, int, float, str]:
    """(per second, p50 ms, p99 ms, failures, server CPU µs per request, each worker's CPU) for CLIENTS
    connections in a loop."""
    clients: list[Exchange] = []
    failures = 0
    host = base_url.split("//", 1)[1]

    async def make_step(i: int) -> Any:
        client = await Exchange.open(base_url)
        clients.append(client)
        counter = 0
        # The request head is built once: the loop below should cost the shared CPUs as little as it can.
        head = (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n"
                f"Authorization: Bearer {tokens[i]}\r\n")
        bare = (head + "\r\n").encode("latin-1")

        async def step() -> None:
            nonlocal counter, failures
            counter += 1
            if payload is None:
                request = bare
            else:
                body = json.dumps({"content": f"{payload} {i}/{counter}"}).encode()
                request = (f"{head}Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                           .encode("latin-1") + body)
            status = await client.send(request)
            if status != ok:
                failures += 1

        return step

    workers = server_pids()[1:]  # the forked workers, if any
    cpu_before, worker_before = server_cpu_s(), [cpu_s([pid]) for pid in workers]
    count, latencies, elapsed = await run_clients(CLIENTS, seconds, make_step)
    cpu_us = (server_cpu_s() - cpu_before) / max(count, 1) * 1e6
    # The kernel spreads the CLIENTS connections over the workers by a hash: 7 and 13 is about as likely as
    # 10 and 10, and then one worker runs out of CPU while the other idles.
    busy = sorted(((cpu_s([pid]) - before) / elapsed for pid, before in zip(workers, worker_before, strict=True)),
                  reverse=True)
    worker_cpu = " + ".join(f"{share:.0%}" for share in busy)
    for client in clients:
        client.close()
    return (count / elapsed, percentile(latencies, 0.50) * 1000, percentile(latencies, 0.99) * 1000, failures,
            cpu_us, worker_cpu)


async def run(base_url: str, tmp: Path) -> list[tuple[str, str, str]]:
    tokens, messages = await setup(base_url)
    seconds = duration_s()
    await measure(base_url, tokens, "POST", messages, "warm-up", 201, min(1.0, seconds))
    history = f"{messages}?limit={HISTORY_LIMIT}"
    sends, p50, p99, send_failures, send_cpu, send_workers = await measure(base_url, tokens, "POST", messages,
                                                                           "hello", 201, seconds)
    reads, r50, r99, read_failures, read_cpu, read_workers = await measure(base_url, tokens, "GET", history, None,
                                                                           200, seconds)
    rows = [
        (f"durable message sends/s ({CLIENTS} keep-alive clients)", f"{sends:,.0f}", "≥ 1,000"),
        ("send latency p50", f"{p50:.1f} ms", ""),
        ("send latency p99", f"{p99:.1f} ms", "≤ 50 ms"),
        (f"history reads/s (limit {HISTORY_LIMIT}, {CLIENTS} clients)", f"{reads:,.0f}", "≥ 3,000"),
        ("history read latency p50 / p99", f"{r50:.1f} / {r99:.1f} ms", ""),
        # CPU per request stays meaningful when other work shares the machine (throughput does not).
        ("server CPU per send / per history read", f"{send_cpu:.0f} / {read_cpu:.0f} µs", ""),
    ]
    if send_workers:
        rows.append(("CPU of each worker, busiest first: sends / reads (of a core)",
                     f"{send_workers} / {read_workers}", ""))
    if send_failures or read_failures:
        rows.append(("failed requests (sends, reads)", f"{send_failures}, {read_failures}", "0, 0"))
    return rows
