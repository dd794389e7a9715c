"""Several worker processes over one database (server.workers): whatever worker a request lands on.

Two whole servers run here over the same SQLite file, linked as ``rosetta.workers`` links forked
workers: shared write generations, one stream per direction between them, the writers' lock file.
Each listens on its own port so a test can say which worker it talks to (in production both share
one port and the kernel picks). The last test runs ``rosetta serve`` with two forked workers.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.ioloop import IOLoop

from rosetta import affinity
from rosetta.clock import ManualClock
from tests.cluster_support import KeepAlive, two_workers
from tests.support import Api, Clients, Server, frame, register, workspace_with
from tests.test_cli import cli_env
from tests.test_realtime import events, post
from tests.test_realtime_presence import presence_until, quiet

T = TypeVar("T")


def established(pid: int, port: int) -> int:
    """How many TCP connections to ``port`` process ``pid`` holds (its sockets in /proc/net/tcp)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            local_port, state, inode = int(fields[1].split(":")[1], 16), fields[3], fields[9]
            count += local_port == port and state == "01" and inode in inodes  # 01: ESTABLISHED
    return count


@pytest.fixture
def workers(io_loop: IOLoop, tmp_path: Path, clock: ManualClock) -> Iterator[tuple[Server, Server]]:
    yield from two_workers(io_loop, tmp_path, clock, limits={"login_per_minute": 4})


def one_per_worker(make: Callable[[Server], T], workers: tuple[Server, Server]) -> Iterator[tuple[T, T]]:
    """A client of each worker (``Api``, ``Clients``), closed at teardown."""
    first, second = make(workers[0]), make(workers[1])
    yield first, second
    first.close()  # type: ignore[attr-defined]
    second.close()  # type: ignore[attr-defined]


@pytest.fixture
def apis(workers: tuple[Server, Server]) -> Iterator[tuple[Api, Api]]:
    yield from one_per_worker(Api, workers)


@pytest.fixture
def sockets(workers: tuple[Server, Server]) -> Iterator[tuple[Clients, Clients]]:
    yield from one_per_worker(Clients, workers)


@pytest.mark.gen_test(timeout=30)
async def test_a_message_posted_on_one_worker_reaches_sockets_and_reads_on_the_other(apis, sockets):
    api_a, api_b = apis
    ana, bea, cid = await register(api_a, "Ana"), await register(api_b, "Bea"), await register(api_b, "Cid")
    team = await workspace_with(api_a, ana, bea)
    path = f"/workspaces/{team['id']}/channels/{team['general']['id']}/messages"
    ws_b, _ = await sockets[1].hello(bea.token)
    ws_c, _ = await sockets[1].hello(cid.token)
    for _ in range(2):  # the first use of a token writes its last_used_at: the second read is kept
        before = await api_b.get(path, token=bea.token)
        assert before.status == 200 and before.json["data"] == []
    sent = await post(api_a, path, "hola from A", ana.token)
    [got] = await events(ws_b, 1)
    assert got["event"] == "message.created" and got["data"]["id"] == sent["id"]
    after = await api_b.get(path, token=bea.token)
    assert [m["id"] for m in after.json["data"]] == [sent["id"]]  # B's cached page was dropped
    assert [f for f in await quiet(ws_c) if f.get("type") == "event" and "seq" in f] == []  # outsider


@pytest.mark.gen_test(timeout=60)
async def test_sends_on_both_workers_commit_under_one_lock_and_every_socket_gets_them_in_seq_order(
        workers, apis, sockets):
    api_a, api_b = apis
    ana, bea = await register(api_a, "Ana"), await register(api_b, "Bea")
    team = await workspace_with(api_a, ana, bea)
    path = f"/workspaces/{team['id']}/channels/{team['general']['id']}/messages"
    ws_a, _ = await sockets[0].hello(ana.token)
    ws_b, _ = await sockets[1].hello(bea.token)
    sent = await asyncio.gather(*(post(api_a if i % 2 else api_b, path, f"m{i}", ana.token if i % 2 else bea.token)
                                  for i in range(40)))
    seen_a, seen_b = await events(ws_a, 40), await events(ws_b, 40)
    seqs = [f["seq"] for f in seen_a]
    assert seqs == sorted(seqs) and len(set(seqs)) == 40  # no gap filled late, no duplicate
    assert [f["seq"] for f in seen_b] == seqs
    assert {f["data"]["id"] for f in seen_a} == {m["id"] for m in sent}
    assert workers[0].app.db.commits > 0 and workers[1].app.db.commits > 0  # both wrote
    page = await api_b.get(f"{path}?limit=100", token=bea.token)
    assert len(page.json["data"]) == 40


@pytest.mark.gen_test(timeout=30)
async def test_removal_on_one_worker_is_enforced_on_the_other(apis, sockets):
    api_a, api_b = apis
    ana, bea = await register(api_a, "Ana"), await register(api_b, "Bea")
    team = await workspace_with(api_a, ana, bea)
    path = f"/workspaces/{team['id']}/channels/{team['general']['id']}/messages"
    assert (await api_b.get(path, token=bea.token)).status == 200  # B keeps Bea's view of the channel
    ws_b, _ = await sockets[1].hello(bea.token)
    await post(api_a, path, "before Bea left", ana.token)
    [got] = await events(ws_b, 1)  # B now knows (and keeps) who reads the channel
    assert got["data"]["display_content"] == "before Bea left"
    members = (await api_a.get(f"/workspaces/{team['id']}/members", token=ana.token)).json["data"]
    bea_member = next(m for m in members if bea.id in (m.get("user_id"), m.get("user", {}).get("id")))
    removed = await api_a.delete(f"/workspaces/{team['id']}/members/{bea_member['id']}", token=ana.token)
    assert removed.status == 204, removed
    assert (await api_b.get(path, token=bea.token)).status == 404
    assert (await api_b.post(path, {"content": "still here?"}, token=bea.token)).status == 404
    await post(api_a, path, "after Bea left", ana.token)
    frames = await quiet(ws_b)
    assert [f for f in frames if f.get("event") == "message.created"] == []


@pytest.mark.gen_test(timeout=30)
async def test_a_token_revoked_on_one_worker_stops_working_on_the_other(apis, sockets):
    api_a, api_b = apis
    ana = await register(api_a, "Ana")
    login = await api_b.post("/auth/app/login", {"email": ana.email, "password": ana.password,
                                                 "device_name": "phone"})
    phone = login.json["access_token"]
    assert (await api_b.get("/me", token=phone)).status == 200  # B has the token cached
    ws_b, _ = await sockets[1].hello(phone)
    assert (await api_a.post("/auth/app/logout", token=phone)).status in (200, 204)
    assert await frame(ws_b) is None and ws_b.close_code == 4001
    assert (await api_b.get("/me", token=phone)).status == 401


@pytest.mark.gen_test(timeout=60)
async def test_a_revocation_of_tens_of_thousands_of_tokens_reaches_the_other_worker(workers, apis):
    """One message between workers is at most 1 MiB (~36,000 token ids); a larger revocation was
    dropped, and the other worker's cache went on trusting the revoked tokens for up to 30 s."""
    api_a, api_b = apis
    ana = await register(api_a, "Ana")
    phone = (await api_b.post("/auth/app/login", {"email": ana.email, "password": ana.password,
                                                  "device_name": "phone"})).json["access_token"]
    assert (await api_b.get("/me", token=phone)).status == 200  # B has the token cached
    # Forty thousand sign-ins' tokens (a script that logged in every minute for a month).
    rows = [(f"t{n:025d}", ana.id, "h", "2026-01-01T00:00:00.000000+00:00") for n in range(40_000)]
    await workers[0].app.db.write(lambda tx: tx.executemany(
        "INSERT INTO access_tokens (id, user_id, kind, name, secret_hash, abilities, created_at)"
        " VALUES (?, ?, 'login', 'script', ?, '[\"*\"]', ?)", rows))
    changed = await api_a.post("/auth/app/change-password", {
        "current_password": ana.password, "password": "another-pass-1", "password_confirmation": "another-pass-1"},
        token=ana.token)
    assert changed.status == 200, changed
    assert (await api_b.get("/me", token=phone)).status == 401


@pytest.mark.gen_test(timeout=30)
async def test_typing_and_presence_cross_workers(apis, sockets):
    api_a, api_b = apis
    ana, bea = await register(api_a, "Ana"), await register(api_b, "Bea")
    team = await workspace_with(api_a, ana, bea)
    ws_a, _ = await sockets[0].hello(ana.token)
    ws_b, _ = await sockets[1].hello(bea.token)
    await presence_until(ws_a, bea.id, "online")  # Bea connected to the other worker
    await ws_a.write_message(json.dumps({"type": "typing", "channel_id": team["general"]["id"]}))
    got = await frame(ws_b)
    while got is not None and got.get("event") != "typing":
        got = await frame(ws_b)
    assert got is not None and got["data"] == {"channel_id": team["general"]["id"], "user_id": ana.id}
    ws_b.close()
    await presence_until(ws_a, bea.id, "offline")


@pytest.mark.gen_test(timeout=30)
async def test_login_attempts_are_counted_across_workers(apis):
    api_a, api_b = apis
    ana = await register(api_a, "Ana")
    statuses = []
    for attempt in range(6):  # limit 4 per minute, alternating workers
        api = api_a if attempt % 2 else api_b
        wrong = await api.post("/auth/app/login", {"email": ana.email, "password": "wrong-password-1",
                                                   "device_name": "x"})
        statuses.append(wrong.status)
    assert 429 not in statuses[:4] and len(set(statuses[:4])) == 1, statuses  # wrong password, 4 times
    assert statuses[4:] == [429, 429], statuses  # each worker counted the other's attempts


@pytest.mark.gen_test(timeout=90)
async def test_serve_with_two_workers_shares_one_port_and_stops_cleanly(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rosetta", "serve", "--port", "0", "--data-dir", str(tmp_path / "data"),
        cwd=tmp_path, env=cli_env(ROSETTA_SERVER_WORKERS="2"), stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL)
    assert process.stderr is not None
    try:
        port, pids, listening = None, [], 0
        while listening < 2:
            line = (await asyncio.wait_for(process.stderr.readline(), 30)).decode()
            assert line, "the server exited before listening"
            found = re.search(r"2 workers on port (\d+) \(pids (\d+), (\d+)\)", line)
            if found:
                port, pids = int(found.group(1)), [int(found.group(2)), int(found.group(3))]
            listening += "listening on" in line
        cpus = affinity.allowed_cpus()
        if len(cpus) >= 2:  # one worker per CPU at most: each on a CPU of its own (server.pin_workers)
            assert [os.sched_getaffinity(pid) for pid in pids] == [{cpus[0]}, {cpus[1]}]
        client = AsyncHTTPClient(force_instance=True)
        answered = set()
        for _ in range(20):  # each fetch is a new connection: the kernel spreads them over both workers
            health = await client.fetch(f"http://127.0.0.1:{port}/api/v1/health")
            answered.add(health.code)
        client.close()
        assert answered == {200}
        # Keep-alive connections stay where they were accepted: however the kernel hashed these 10,
        # the workers hand connections over until each holds 5 (server.balance_connections).
        kept = []
        for _ in range(10):
            connection = await KeepAlive.open(port)
            assert await connection.health() == 200
            kept.append(connection)
        assert [established(pid, port) for pid in pids] == [5, 5]
        for connection in kept:
            await connection.close()
        process.send_signal(signal.SIGTERM)
        rest = (await asyncio.wait_for(process.stderr.read(), 30)).decode()
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:  # a failed assertion above: stop the workers too, via their parent
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)
    assert rest.count("database closed") == 2 and "Traceback" not in rest
