"""Worker CPU placement (server.pin_workers): which worker runs where, and slow work still spreads."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from rosetta import affinity


@pytest.mark.parametrize(("index", "workers", "cpus", "expected"), [
    (0, 1, [0, 1], None),  # a lone worker moves freely
    (0, 2, [0, 1], 0),
    (1, 2, [0, 1], 1),
    (1, 2, [2, 5, 7], 5),  # the CPUs the process is allowed (a container's cpuset), not 0..n-1
    (0, 3, [0, 1], None),  # more workers than CPUs: none is pinned
    (0, 2, [], None),  # unknown CPUs (no affinity support)
])
def test_worker_cpu(index: int, workers: int, cpus: list[int], expected: int | None) -> None:
    assert affinity.worker_cpu(index, workers, cpus) == expected


def test_a_cpu_the_kernel_refuses_leaves_the_worker_unpinned(caplog: pytest.LogCaptureFixture) -> None:
    before = os.sched_getaffinity(0)
    assert affinity.pin_worker(1, 2, [0, 4095]) is None  # no such CPU here: EINVAL
    assert os.sched_getaffinity(0) == before
    assert "worker 1 stays unpinned: CPU 4095 refused" in caplog.text


@pytest.mark.skipif(len(affinity.allowed_cpus()) < 2, reason="needs two CPUs")
def test_a_pinned_worker_runs_its_threads_on_its_cpu_and_its_executor_on_all() -> None:
    cpus = affinity.allowed_cpus()
    seen: dict[str, set[int]] = {}

    def worker() -> None:  # a thread of its own: the test process keeps its own affinity
        assert affinity.pin_worker(1, 2, cpus) == cpus[1]
        started = threading.Thread(target=lambda: seen.update(started=os.sched_getaffinity(0)))
        started.start()
        started.join()

        async def serve() -> None:
            affinity.spread_default_executor(asyncio.get_running_loop(), cpus)
            seen["loop"] = os.sched_getaffinity(0)
            seen["executor"] = await asyncio.get_running_loop().run_in_executor(None, os.sched_getaffinity, 0)

        asyncio.run(serve())

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == {"started": {cpus[1]}, "loop": {cpus[1]}, "executor": set(cpus)}
