"""Benchmark runner: a fresh real server per section, driven from this (separate) process; one table.

Usage: ``scripts/bench [--only NAME] [--duration S] [--workers N] [--no-pin] [--no-balance]
[--no-fast-lane] [--synchronous FULL|NORMAL|EXTRA] [--profile DIR] [--same-windows]`` (``--workers``: the servers'
``server.workers``, by default one per core, as an operator would set it; ``--no-pin``:
``server.pin_workers = false``, ``--no-balance``: ``server.balance_connections = false`` and
``--no-fast-lane``: ``server.fast_lane = false``, to compare; ``--profile`` runs a one-worker server
under cProfile, ``DIR/<section>.prof``; ``--same-windows`` makes the translation section's translated
windows identical to its baselines, to see how often its verdict reports a difference that is not there).

Writing a section (the interface other sections follow)
-------------------------------------------------------
A section is a module ``scripts/bench_<name>.py`` (``--only <name>`` runs just that one). It defines:

- ``TITLE: str`` — a heading for its rows in the table.
- optionally ``def server_env(tmp: pathlib.Path) -> dict[str, str]`` — extra ``ROSETTA_*`` variables
  for its server (e.g. ``ROSETTA_TRANSLATION_URL`` of a provider stub the section starts itself;
  ``tmp`` is the section's scratch directory, the server's data directory is ``tmp / "data"``).
- ``async def run(base_url: str, tmp: pathlib.Path) -> list[tuple[str, str, str]]`` — sets up what
  it needs through the HTTP API (``base_url`` is ``http://127.0.0.1:<port>``, no ``/api/v1``) and
  returns rows ``(metric, measured value, target)``, all three already formatted as text (target
  ``""`` when there is none).

The runner, for each section: makes a temporary directory; starts ``python -m rosetta serve --port
<free> --data-dir <tmp>/data`` as a subprocess, with the API, register and login rate limits off
(``ROSETTA_LIMITS_*=0``) and ``auth.bcrypt_rounds = 4`` (sign-ups are setup, not what is measured);
waits for ``GET /api/v1/health``; awaits ``run()`` in this process; stops the server with SIGTERM
and adds the share of CPU time the hypervisor stole meanwhile and the server's group-commit ratio
(logged at shutdown) as rows. Measured phases should run
for ``benchlib.duration_s()`` seconds (``--duration``, exported as ``BENCH_DURATION_S``). The
server's pid is exported as ``BENCH_SERVER_PID``: ``benchlib.server_cpu_s()`` reads its CPU time,
so a section can report CPU per request, which stays meaningful on a busy machine (it adds up the
server's worker processes too).
``scripts/benchlib.py`` has a keep-alive HTTP/1.1 client and percentile helpers.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import re
import signal
import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
Row = tuple[str, str, str]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def discover(only: str | None) -> list[tuple[str, ModuleType]]:
    # Sections import the rosetta of this tree (a worktree's, when comparing two), not whichever tree
    # the virtual environment's editable install points at; the server subprocess runs from ROOT too.
    sys.path[:0] = [str(SCRIPTS), str(ROOT)]
    found = []
    for path in sorted(SCRIPTS.glob("bench_*.py")):
        name = path.stem.removeprefix("bench_")
        if only and name != only:
            continue
        found.append((name, importlib.import_module(path.stem)))
    if only and not found:
        raise SystemExit(f"bench: no section named {only} (scripts/bench_{only}.py)")
    return found


def server_env(settings: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    """The server's environment: ``settings`` (``section.key`` -> value) as ROSETTA_* variables, then ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSETTA_")}
    env.update({"ROSETTA_" + name.replace(".", "_").upper(): value for name, value in settings.items()})
    env.update({
        "ROSETTA_LIMITS_API_PER_MINUTE": "0",
        "ROSETTA_LIMITS_REGISTER_PER_MINUTE": "0",
        "ROSETTA_LIMITS_LOGIN_PER_MINUTE": "0",
        "ROSETTA_AUTH_BCRYPT_ROUNDS": "4",
        "PYTHONPATH": str(ROOT),
    })
    env.update(extra)
    return env


async def wait_healthy(base_url: str, process: asyncio.subprocess.Process) -> None:
    from benchlib import KeepAlive

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before answering")
        client = KeepAlive(base_url)
        try:
            status, _ = await client.request("GET", "/api/v1/health")
            if status == 200:
                return
        except OSError:
            pass
        finally:
            await client.close()
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the server did not answer /api/v1/health within {START_TIMEOUT_S} s")


async def run_section(name: str, module: ModuleType, settings: dict[str, str], profile: Path | None) -> list[Row]:
    from benchlib import machine_ticks, stolen_share

    with tempfile.TemporaryDirectory(prefix=f"rosetta-bench-{name}-") as scratch:
        tmp = Path(scratch)
        extra = module.server_env(tmp) if hasattr(module, "server_env") else {}
        port = free_port()
        log_path = tmp / "server.log"
        with log_path.open("wb") as log:
            profiler = ["-m", "cProfile", "-o", str(profile / f"{name}.prof")] if profile else []
            process = await asyncio.create_subprocess_exec(
                sys.executable, *profiler, "-m", "rosetta", "serve", "--port", str(port),
                "--data-dir", str(tmp / "data"), cwd=tmp, env=server_env(settings, extra),
                stdout=log, stderr=log,
            )
            base_url = f"http://127.0.0.1:{port}"
            os.environ["BENCH_SERVER_PID"] = str(process.pid)
            try:
                await wait_healthy(base_url, process)
                ticks = machine_ticks()
                rows = list(await module.run(base_url, tmp))
                rows.append(("CPU time stolen by the hypervisor during the section (whole machine)",
                             stolen_share(ticks, machine_ticks()), ""))
            except Exception:
                traceback.print_exc()
                rows = [("section failed (see the trace above)", "—", "")]
            finally:
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
                    try:
                        await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
                    except TimeoutError:
                        process.kill()
                        await process.wait()
        server_log = log_path.read_text(encoding="utf-8", errors="replace")
    # One line per worker: "database closed: U write units in C commits, longest batch L ms".
    closed = re.findall(r"database closed: (\d+) write units in (\d+) commits, longest batch ([\d.]+) ms", server_log)
    units, commits = sum(int(u) for u, _, _ in closed), sum(int(c) for _, c, _ in closed)
    if commits:
        longest = max(float(ms) for _, _, ms in closed)
        rows.append(("write units per commit; longest batch (server log)",
                     f"{units / commits:.1f} ({units} in {commits}); {longest:.1f} ms", ""))
    errors = server_log.count(" ERROR ")
    if errors:
        rows.append(("server errors logged", str(errors), "0"))
    return rows


def table(results: list[tuple[str, list[Row]]], settings: dict[str, str], duration: float) -> str:
    lines = [
        f"Rosetta benchmark — {os.cpu_count()} cores, "
        + ", ".join(f"{name} = {value}" for name, value in settings.items())
        + f", {duration:g} s per measured phase, Python {sys.version.split()[0]}",
        "",
        "| section | metric | measured | target |",
        "|---|---|---|---|",
    ]
    for title, rows in results:
        for metric, measured, target in rows:
            lines.append(f"| {title} | {metric} | {measured} | {target} |")
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="run one section: NAME of scripts/bench_NAME.py")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured phase (default 10)")
    parser.add_argument("--synchronous", default="FULL", choices=("FULL", "NORMAL", "EXTRA"),
                        help="storage.synchronous of the servers (default FULL)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="server.workers of the servers (default: one per core)")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="server.pin_workers = false: workers float over the CPUs (default: pinned)")
    parser.add_argument("--no-balance", dest="balance", action="store_false",
                        help="server.balance_connections = false: the kernel's spread stands (default: evened out)")
    parser.add_argument("--no-fast-lane", dest="fast_lane", action="store_false",
                        help="server.fast_lane = false: Tornado reads every request (default: plain reads skip it)")
    parser.add_argument("--profile", type=Path, help="run the servers under cProfile, writing DIR/<section>.prof")
    parser.add_argument("--same-windows", action="store_true",
                        help="translation: its readers all read English, so no window translates (an A/A run)")
    args = parser.parse_args()
    if args.profile:
        args.workers = 1  # cProfile sees the process it started, not forked workers
    if args.profile:
        args.profile = args.profile.resolve()
        args.profile.mkdir(parents=True, exist_ok=True)
    os.environ["BENCH_DURATION_S"] = str(args.duration)
    os.environ["BENCH_SAME_WINDOWS"] = "1" if args.same_windows else ""
    settings = {
        "server.workers": str(args.workers),
        "server.pin_workers": "true" if args.pin else "false",
        "server.balance_connections": "true" if args.balance else "false",
        "server.fast_lane": "true" if args.fast_lane else "false",
        "storage.synchronous": args.synchronous,
    }
    results = []
    for name, module in discover(args.only):
        print(f"bench: {name} …", file=sys.stderr, flush=True)
        rows = await run_section(name, module, settings, args.profile)
        results.append((getattr(module, "TITLE", name), rows))
    print(table(results, settings, args.duration))


if __name__ == "__main__":
    asyncio.run(main())
