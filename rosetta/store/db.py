"""The SQLite database at run time: one writer with group commit, a few read-only readers, checkpoints.

Owns every connection (how each is opened: ``rosetta.store.connections``; the file's migrations and
backups: ``rosetta.store.dbfile``). Writes go through ``Database.write(unit)``: units queue up and
the writer runs as many as are waiting inside one ``BEGIN IMMEDIATE … COMMIT`` (group commit); when
one of them fails, the batch runs again with a SAVEPOINT per unit so the failing unit rolls back
alone. A unit's ``on_commit`` callbacks run, and its caller is answered, only after COMMIT returned:
an acknowledged write is durable (``synchronous=FULL`` by default) and a rolled-back change never
reaches a client.

Checkpoints (copying committed WAL pages into the database file) are not the writer's job: SQLite
would run one inside the COMMIT that crosses 1,000 WAL pages, holding the writer (and every send
queued behind it) for a file-sized copy and two fsyncs: stalls of 50-170 ms every few seconds
under the realtime bench. ``checkpoint()`` runs a PASSIVE one on a connection of its own, off the
loop (the ``db.checkpoint`` job, every second); writers keep appending meanwhile. The writer's own
automatic checkpoint stays as a backstop at a size the job never lets the WAL reach.

A unit must not await anything but its own statements: it runs on the writer's thread (below) and
holds the writer for the whole batch. Slow work (bcrypt, provider calls, file hashing) happens
before ``write()``.

Where statements run, and why (measured on the 2-core bench machine, scripts/bench):

- The writer is an aiosqlite connection: its calls can block — ``BEGIN IMMEDIATE`` waits for another
  process's write lock (the CLI), ``COMMIT`` waits for fsync — so they run on aiosqlite's thread,
  never on the event loop. A whole batch is ONE trip to that thread: the units' coroutines are
  driven to their end there (``complete``), their statements running as they are awaited. With a
  trip per statement, each trip also waited for the busy loop's next turn to come back: about 20
  trips per batch of 9 sends capped the core bench near 640 sends/s with the loop half idle.
- Readers are plain read-only sqlite3 connections used on the loop: in WAL mode a reader never waits
  for the writer, and the indexed reads the API makes cost 10-30 µs, far less than a hop. With every
  read behind a hop too, history reads fell from 488/s to 228/s and sends from 688/s to 340/s.
  Reads stay bounded (indexed, LIMITed) so none holds the loop for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from rosetta.store.connections import (
    Reader,
    Tx,
    WriterLock,
    complete,
    connect_checkpointer,
    connect_reader,
    connect_writer,
    run,
)
from rosetta.store.dbfile import backup_file, prepare_file
from rosetta.store.generations import Generations

log = logging.getLogger("rosetta.store")

T = TypeVar("T")
# How long background units with nothing else queued wait for a foreground unit to commit with (see _linger).
BACKGROUND_LINGER_S = 0.01
Outcome = tuple[Tx, Any, BaseException | None]  # a unit's transaction, its result, or its error


class _RetryIsolated(Exception):
    """A unit of a shared batch failed: roll back and run the batch again, a savepoint per unit."""


# A unit waiting for the writer: (unit, its caller's future, background).
Queued = tuple[Callable[[Tx], Awaitable[Any]], asyncio.Future[Any], bool]


class Database:
    def __init__(self, path: Path, synchronous: str = "FULL", readers: int = 2,
                 group_commit_max: int = 128, generations: Generations | None = None,
                 shared_writer: bool = False) -> None:
        self.path = path
        self.synchronous = synchronous
        self.reader_count = readers
        self.group_commit_max = group_commit_max
        self._writer: aiosqlite.Connection | None = None
        self._readers: list[Reader] = []
        self._next_reader = 0
        self._writer_thread: int | None = None  # aiosqlite's thread, known from its first batch
        self._queue: deque[Queued] = deque()
        self.background_linger_s = BACKGROUND_LINGER_S
        self._carrier: asyncio.Future[None] | None = None  # resolved when a foreground unit is queued
        self._drain_task: asyncio.Task[None] | None = None
        self.commits = 0  # counters the benchmark prints: units per commit shows group commit working
        self.units = 0
        self.longest_batch_s = 0.0  # and the longest a batch held the writer (what a send may wait behind)
        # Write generations (see freshness): bumped after each commit, per scope a unit declared,
        # or everywhere for a unit that declared none; shared with the other workers, if any.
        self.generations = generations or Generations()
        # Other worker processes write the same file: their writers queue on a lock file instead of
        # SQLite's busy handler, which polls with sleeps of up to 100 ms (a p99 of 120 ms measured).
        self._writer_lock = WriterLock(path.with_name(path.name + "-writer.lock")) if shared_writer else None
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpoint_lock = threading.Lock()  # one checkpoint at a time; close waits for it

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.get_running_loop().run_in_executor(None, prepare_file, self.path)
        self._writer = await connect_writer(self.path, self.synchronous)
        for _ in range(self.reader_count):
            self._readers.append(Reader(connect_reader(self.path)))

    async def checkpoint(self) -> tuple[int, int, int]:
        """A PASSIVE checkpoint off the loop: (busy, WAL frames, frames checkpointed), as SQLite reports.

        PASSIVE never waits: it copies what no reader still needs and leaves the rest for next time.
        """
        if self._writer is None:  # a job tick racing shutdown: nothing to open a connection for
            raise RuntimeError("the database is closed")
        return await asyncio.get_running_loop().run_in_executor(None, self._checkpoint_now)

    def _checkpoint_now(self) -> tuple[int, int, int]:
        with self._checkpoint_lock:
            if self._checkpointer is None:
                self._checkpointer = connect_checkpointer(self.path, self.synchronous)
            cursor = self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")
            try:
                busy, frames, copied = cursor.fetchone()
            finally:
                cursor.close()
            return int(busy), int(frames), int(copied)

    async def close(self) -> None:
        if self._drain_task is not None:
            await asyncio.shield(self._drain_task)
        with self._checkpoint_lock:
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None
        for reader in self._readers:
            reader.raw.close()
        self._readers.clear()
        if self._writer is not None:
            await self._writer.close()
            self._writer = None
            if self._writer_lock is not None:
                self._writer_lock.close()
            # The group-commit ratio (the benchmark reads this line from the server's stderr).
            log.info("database closed: %d write units in %d commits, longest batch %.1f ms", self.units,
                     self.commits, self.longest_batch_s * 1000)

    @property
    def reader(self) -> Reader:
        """A read-only connection (round robin); each call is a consistent single statement.

        Inside a write unit (on the writer's thread) it is the writer itself: the loop's readers
        belong to the loop's thread, and the unit's own batch is what it should see.
        """
        if threading.get_ident() == self._writer_thread and self._writer is not None:
            return Reader(self._writer._conn)
        self._next_reader = (self._next_reader + 1) % len(self._readers)
        return self._readers[self._next_reader]

    def freshness(self, scope: str) -> tuple[int, int]:
        """A stamp that changes whenever a committed write may have changed what ``scope`` reads.

        Take it before reading; a cached result stays valid while the stamp is unchanged. A stamp
        moves only after COMMIT, so a result read before a commit is never stamped after it.
        Commits of every worker process move it; writes by the CLI are not seen (none of them
        changes messages).
        """
        return self.generations.stamp(scope)

    def _committed(self, tx: Tx | None) -> None:
        self.generations.bump(tx.scopes if tx is not None else None)

    async def write(self, unit: Callable[[Tx], Awaitable[T]], *, background: bool = False) -> T:
        """Run ``unit(tx)`` in a write transaction; return its result once the COMMIT is durable.

        ``background``: work no person is waiting on (the translation worker's results). A batch
        takes at most one background unit, so a send queued behind several waits for one of them,
        not for all: their callers split their work into short units and queue each without waiting
        for the one before. With nothing else queued, a background unit waits briefly for a
        foreground one to share its COMMIT (``_linger``).
        """
        if self._writer is None:  # e.g. a job still finishing while the app stops: refuse, don't crash
            raise RuntimeError("the database is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((unit, future, background))
        if not background and self._carrier is not None and not self._carrier.done():
            self._carrier.set_result(None)
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = asyncio.create_task(self._drain())
        return await future

    def _next_batch(self) -> list[Queued]:
        """The queued units in order, up to group_commit_max, with no more than one background unit."""
        batch: list[Queued] = []
        skipped: list[Queued] = []
        has_background = False
        while self._queue and len(batch) < self.group_commit_max:
            queued = self._queue.popleft()
            if queued[2]:
                if has_background:
                    skipped.append(queued)
                    continue
                has_background = True
            batch.append(queued)
        self._queue.extendleft(reversed(skipped))  # they go first next time, in their order
        return batch

    async def _drain(self) -> None:
        while self._queue:
            if all(background for _, _, background in self._queue):
                await self._linger()
            batch = self._next_batch()
            try:
                await self._run_batch(batch)
            except Exception as exc:  # the batch as a whole failed (COMMIT, disk full): fail every caller
                self._committed(None)  # whatever it did or did not leave behind, cached reads start over
                log.exception("write batch of %d failed", len(batch))
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(exc)

    async def _linger(self) -> None:
        """Wait up to ``background_linger_s`` for a foreground unit, so a background one commits with it.

        Committed alone, each background unit costs a COMMIT (an fsync) of its own, and holds the
        writer (and the writers' lock every worker's sends queue on) meanwhile. Under the translation
        bench 60-70 % of the worker's units committed alone: ~14 extra fsyncs a second among ~200
        sends, and fsync is what the host's storage is slowest at (10-60 ms now and then). A send
        arrives every few ms at that rate, so the wait is short and carries the unit along; with no
        send coming the unit waits this long, once per batch, and commits alone.
        """
        if self.background_linger_s <= 0:
            return
        self._carrier = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait({self._carrier}, timeout=self.background_linger_s)
        finally:
            self._carrier = None

    async def _run_batch(self, batch: list[Queued]) -> None:
        """Commit a batch in ONE hop to the writer's thread, then answer its callers on the loop."""
        assert self._writer is not None, "database is not open"
        units = [unit for unit, _, _ in batch]
        # aiosqlite runs any function on its connection's thread through _execute; its public calls
        # are one statement each, and a hop per statement is what this module exists to avoid.
        began = time.perf_counter()
        outcomes = await self._writer._execute(self._commit_on_writer, units)
        self.longest_batch_s = max(self.longest_batch_s, time.perf_counter() - began)
        if isinstance(outcomes, BaseException):  # a lone unit failed: its error is its caller's answer
            _, future, _ = batch[0]
            if not future.done():
                future.set_exception(outcomes)
            return
        self.commits += 1
        self.units += len(batch)
        # The after-commit callbacks before the callers' futures: tasks the callbacks start (the hub's
        # fan-out) run before the callers resume. Measured the other way round (3 runs each, 1,000
        # sockets): senders were answered faster (p50 10-12 against 18-23 ms) but the frames left
        # later (p50 21-27 against 13-20 ms), and delivery is what realtime clients wait for.
        for (_, future, _), (tx, result, error) in zip(batch, outcomes, strict=True):
            if error is None:
                for callback in tx.after_commit:
                    try:
                        callback()
                    except Exception:
                        log.exception("on_commit callback failed")
            if future.done():  # the caller went away (cancelled); the write stands
                continue
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

    def _commit_on_writer(self, units: list[Callable[[Tx], Awaitable[Any]]]) -> list[Outcome] | BaseException:
        """On the writer's thread: run every unit and COMMIT once (group commit).

        Fast path: the units one after another, no savepoints. Only when a unit of a shared batch
        fails is the batch rolled back and run again with a savepoint per unit, so the failing unit
        rolls back alone. Units are SQL-only and see nothing committed by the first try, so running
        one again is safe. A lone unit needs no isolation: its exception is returned, for its caller.
        """
        assert self._writer is not None, "database is not open"
        raw = self._writer._conn
        self._writer_thread = threading.get_ident()
        with self._writer_lock or contextlib.nullcontext():
            try:
                outcomes = self._attempt(raw, units, isolate=False)
            except _RetryIsolated:
                outcomes = self._attempt(raw, units, isolate=True)
            except Exception as exc:
                if len(units) == 1:
                    return exc
                raise
            # Still holding the lock: the next worker's batch starts with these generations moved.
            for tx, _, error in outcomes:
                if error is None:
                    self._committed(tx)
            return outcomes

    @staticmethod
    def _attempt(raw: sqlite3.Connection, units: list[Callable[[Tx], Awaitable[Any]]],
                 isolate: bool) -> list[Outcome]:
        """One try at committing ``units``; raises _RetryIsolated when a unit of a shared batch failed."""
        single = len(units) == 1
        outcomes: list[Outcome] = []
        run(raw, "BEGIN IMMEDIATE")
        try:
            for unit in units:
                tx = Tx(raw)
                if isolate:
                    run(raw, "SAVEPOINT unit")
                try:
                    result = complete(unit(tx))
                except Exception as exc:
                    if not isolate:
                        if single:
                            raise
                        raise _RetryIsolated() from exc
                    run(raw, "ROLLBACK TO unit")
                    run(raw, "RELEASE unit")
                    outcomes.append((tx, None, exc))
                    continue
                if isolate:
                    run(raw, "RELEASE unit")
                outcomes.append((tx, result, None))
            run(raw, "COMMIT")
        except BaseException:
            if raw.in_transaction:
                run(raw, "ROLLBACK")
            raise
        return outcomes

    async def backup_to(self, target: Path) -> None:
        """SQLite online backup of the live database into ``target`` (readers and writer keep going)."""
        assert self._writer is not None, "database is not open"
        await asyncio.get_running_loop().run_in_executor(None, backup_file, self.path, target)
