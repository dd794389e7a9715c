"""Which CPUs a worker process's threads run on (``server.pin_workers``).

A worker is a loop thread plus the writer's thread (aiosqlite), and the two hand work and the GIL to
each other several times per write batch. On a virtual machine, waking a thread on another vCPU that
sat idle is slow, and the hypervisor books the wait as stolen time. Measured on the 2-core bench VM
with two processes playing ping-pong over loopback TCP: across vCPUs, 230-440 µs per round trip,
75-160 µs of the sender's time per ``send``, 28-38 % of the machine "stolen"; on one vCPU, 35 µs,
18 µs and 2-4 %.

So with one worker per core, each worker is pinned to a CPU of its own before it starts any thread:
its loop and its writer share that CPU and hand over without crossing. The default executor's
threads (bcrypt, thumbnails, file hashing, checkpoints) are given every allowed CPU back, so slow
work still spreads over the machine instead of queueing behind its worker's loop.

A lone worker (``server.workers = 1``) is never pinned: it should move away from whatever else the
machine runs (a local translation engine, say). Nor are workers pinned when there are more of them
than CPUs, or where the platform cannot pin (not Linux).
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("rosetta")


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity mask, e.g. a container's cpuset); [] if unknown."""
    if not hasattr(os, "sched_getaffinity"):
        return []
    return sorted(os.sched_getaffinity(0))


def worker_cpu(index: int, workers: int, cpus: list[int]) -> int | None:
    """The CPU worker ``index`` of ``workers`` runs on, or None when workers should not be pinned."""
    if workers < 2 or workers > len(cpus):
        return None
    return cpus[index]


def pin_worker(index: int, workers: int, cpus: list[int]) -> int | None:
    """Pin the calling thread, and every thread it starts from now on, to worker ``index``'s CPU.

    Call it in the forked worker before its loop starts, with the CPUs from ``allowed_cpus()``
    taken before. Returns the CPU, or None when not pinned: a refusal (a CPU taken offline, a
    sandbox that forbids it) is logged and the worker runs unpinned rather than not at all.
    """
    cpu = worker_cpu(index, workers, cpus)
    if cpu is None:
        return None
    try:
        os.sched_setaffinity(0, {cpu})  # pid 0: the calling thread; threads started later inherit it
    except OSError as exc:
        log.warning("worker %d stays unpinned: CPU %d refused (%s)", index, cpu, exc)
        return None
    log.info("worker %d runs on CPU %d", index, cpu)
    return cpu


def spread_default_executor(loop: asyncio.AbstractEventLoop, cpus: list[int]) -> None:
    """Make the loop's default executor run its threads on ``cpus`` rather than the worker's one CPU."""
    def unpin() -> None:
        os.sched_setaffinity(0, cpus)

    # The size asyncio's own default executor would have (min(32, cores + 4)).
    loop.set_default_executor(ThreadPoolExecutor(max_workers=min(32, len(cpus) + 4), initializer=unpin,
                                                 thread_name_prefix="rosetta-executor"))
