"""Named periodic jobs on the event loop, each with ``run_once()`` so tests trigger them directly.

A job is an idempotent coroutine function safe to run after a crash. The runner never lets two
runs of one job overlap, and a failing run is logged, never fatal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import tornado.ioloop

log = logging.getLogger("rosetta.jobs")


@dataclass
class Job:
    name: str
    interval_s: float
    work: Callable[[], Awaitable[object]]
    every_worker: bool = False  # it tends this process's own state (its sockets), not the database's
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _timer: tornado.ioloop.PeriodicCallback | None = None

    async def run_once(self) -> object:
        async with self._lock:
            return await self.work()

    async def _tick(self) -> None:
        if self._lock.locked():
            return  # the previous run is still going: skip rather than pile up
        try:
            await self.run_once()
        except Exception:
            log.exception("job %s failed", self.name)


class JobRunner:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.running = False
        self.shared = True

    def add(self, name: str, interval_s: float, work: Callable[[], Awaitable[object]],
            every_worker: bool = False) -> Job:
        """Register a job; with several worker processes only worker 0 runs it, unless ``every_worker``."""
        if name in self.jobs:
            raise ValueError(f"job {name} exists")
        job = Job(name, interval_s, work, every_worker)
        self.jobs[name] = job
        if self.running and (self.shared or every_worker):
            self._schedule(job)
        return job

    async def run_once(self, name: str) -> object:
        return await self.jobs[name].run_once()

    def _schedule(self, job: Job) -> None:
        job._timer = tornado.ioloop.PeriodicCallback(job._tick, job.interval_s * 1000, jitter=0.1)
        job._timer.start()

    def start(self, enabled: bool = True, shared: bool = True) -> None:
        """Start the timers (``enabled``); ``shared`` false: only the ``every_worker`` jobs (workers 1..n)."""
        self.running = enabled
        self.shared = shared
        if enabled:
            for job in self.jobs.values():
                if shared or job.every_worker:
                    self._schedule(job)

    async def stop(self) -> None:
        """Stop the timers, then wait for runs in flight: the database closes only after they end."""
        self.running = False
        for job in self.jobs.values():
            if job._timer is not None:
                job._timer.stop()
                job._timer = None
        for job in self.jobs.values():
            async with job._lock:
                pass
