"""The SQLite database: one writer with group commit, a few read-only readers, and migrations.

Owns every connection. Writes go through ``Database.write(unit)``: units queue up and a single
writer task runs as many as are waiting inside one ``BEGIN IMMEDIATE … COMMIT`` (group commit), each
inside its own SAVEPOINT so one failing unit rolls back alone. A unit's ``on_commit`` callbacks run,
and its caller is answered, only after COMMIT returned: an acknowledged write is durable
(``synchronous=FULL`` by default) and a rolled-back change never reaches a client.

A unit must not await anything but its own statements: it holds the writer for the whole batch.
Slow work (bcrypt, provider calls, file hashing) happens before ``write()``.

Where statements run, and why (measured on the 2-core bench machine, scripts/bench):

- The writer is an aiosqlite connection: its calls can block — ``BEGIN IMMEDIATE`` waits for another
  process's write lock (the CLI), ``COMMIT`` waits for fsync — so they run on aiosqlite's thread,
  never on the event loop. Each awaited call is one thread hop; here a hop cost ~180 µs of CPU when
  the thread was idle and ~45 µs when busy (architecture note: ~55 µs), so a unit asks one question
  per call and group commit shares BEGIN, COMMIT and the fsync among every unit of a batch.
- Readers are plain read-only sqlite3 connections used on the loop: in WAL mode a reader never waits
  for the writer, and the indexed reads the API makes cost 10-30 µs, far less than a hop. With every
  read behind a hop too, history reads fell from 488/s to 228/s and sends from 688/s to 340/s.
  Reads stay bounded (indexed, LIMITed) so none holds the loop for long.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiosqlite

log = logging.getLogger("rosetta.store")

T = TypeVar("T")
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_MS = 5000
READER_MMAP_BYTES = 256 * 1024 * 1024  # address space, not memory: pages come from the OS cache
Params = Sequence[Any] | dict[str, Any]
MAX_TRACKED_SCOPES = 10_000  # per-scope write generations kept before they are folded into the global one


class _RetryIsolated(Exception):
    """A unit of a shared batch failed: roll back and run the batch again, a savepoint per unit."""


class Conn(Protocol):
    """What store functions that only read accept: a reader, or the writer inside a unit."""

    async def fetch_one(self, sql: str, params: Params = ()) -> sqlite3.Row | None: ...
    async def fetch_all(self, sql: str, params: Params = ()) -> list[sqlite3.Row]: ...
    async def fetch_value(self, sql: str, params: Params = ()) -> Any: ...


class Reader:
    """A read-only connection, used directly on the loop (see the module docstring for why)."""

    def __init__(self, raw: sqlite3.Connection) -> None:
        self.raw = raw

    async def fetch_one(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        cursor = self.raw.execute(sql, params)
        try:
            return cursor.fetchone()  # type: ignore[no-any-return]
        finally:
            cursor.close()  # resets the statement: no read transaction stays open between calls

    async def fetch_all(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        cursor = self.raw.execute(sql, params)
        try:
            return cursor.fetchall()
        finally:
            cursor.close()

    async def fetch_value(self, sql: str, params: Params = ()) -> Any:
        row = await self.fetch_one(sql, params)
        return None if row is None else row[0]


class Tx:
    """The writer (an aiosqlite connection) inside one unit of a write batch: one thread hop a call."""

    def __init__(self, raw: aiosqlite.Connection) -> None:
        self.raw = raw
        self.after_commit: list[Callable[[], Any]] = []
        self.scopes: set[str] = set()  # empty: this unit may have changed anything (see Database.freshness)

    async def fetch_one(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        rows = await self.raw.execute_fetchall(sql, params)
        return next(iter(rows), None)  # type: ignore[arg-type]

    async def fetch_all(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        return list(await self.raw.execute_fetchall(sql, params))  # type: ignore[arg-type]

    async def fetch_value(self, sql: str, params: Params = ()) -> Any:
        row = await self.fetch_one(sql, params)
        return None if row is None else row[0]

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement and return the number of rows it changed."""
        async with self.raw.execute(sql, params) as cursor:
            return cursor.rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self.raw.executemany(sql, rows)

    def on_commit(self, callback: Callable[[], Any]) -> None:
        """Run ``callback`` after this unit's batch committed; never when it rolled back."""
        self.after_commit.append(callback)

    def affects_only(self, scope: str) -> None:
        """Declare that of the reads callers cache, this unit changes only those of ``scope``.

        A unit that declares nothing invalidates every cached read when it commits: forgetting to
        declare costs cache hits, never correctness.
        """
        self.scopes.add(scope)


def run(raw: sqlite3.Connection, sql: str, params: Params = ()) -> int:
    """Run one statement to completion on a plain sqlite3 connection; the rows it changed.

    The cursor is closed at once: a statement left open (``PRAGMA journal_mode`` returns a row)
    keeps the connection busy and makes the next COMMIT fail with "SQL statements in progress".
    """
    cursor = raw.execute(sql, params)
    try:
        return cursor.rowcount
    finally:
        cursor.close()


def prepare_file(path: Path) -> list[int]:
    """Create the database if needed, switch it to WAL and apply migrations (blocking: off the loop)."""
    raw = sqlite3.connect(path, isolation_level=None)
    try:
        raw.execute("PRAGMA journal_mode=WAL").fetchall()
        return apply_migrations(raw)
    finally:
        raw.close()


async def connect_writer(path: Path, synchronous: str) -> aiosqlite.Connection:
    raw = await aiosqlite.connect(f"file:{path}", uri=True, isolation_level=None)
    raw.row_factory = sqlite3.Row
    for pragma in (f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}", "PRAGMA foreign_keys=ON",
                   f"PRAGMA synchronous={synchronous}"):
        await raw.execute_fetchall(pragma)
    return raw


def connect_reader(path: Path) -> sqlite3.Connection:
    # check_same_thread off: tests and the CLI open the app on one loop thread and may close it from
    # another; a reader is still only ever used by one thread at a time.
    raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
    raw.row_factory = sqlite3.Row
    # Readers map the file instead of read()ing pages: under constant writes a reader's page cache is
    # reset at every commit, and each re-read page would be a syscall.
    for pragma in (f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}", "PRAGMA query_only=ON",
                   f"PRAGMA mmap_size={READER_MMAP_BYTES}"):
        run(raw, pragma)
    return raw


class Database:
    def __init__(self, path: Path, synchronous: str = "FULL", readers: int = 2,
                 group_commit_max: int = 128) -> None:
        self.path = path
        self.synchronous = synchronous
        self.reader_count = readers
        self.group_commit_max = group_commit_max
        self._writer: aiosqlite.Connection | None = None
        self._readers: list[Reader] = []
        self._next_reader = 0
        self._queue: deque[tuple[Callable[[Tx], Awaitable[Any]], asyncio.Future[Any]]] = deque()
        self._drain_task: asyncio.Task[None] | None = None
        self.commits = 0  # counters the benchmark prints: units per commit shows group commit working
        self.units = 0
        # Write generations (see freshness): bumped after each commit, per scope a unit declared,
        # or everywhere for a unit that declared none.
        self._generation = 0
        self._scope_generations: dict[str, int] = {}

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.get_running_loop().run_in_executor(None, prepare_file, self.path)
        self._writer = await connect_writer(self.path, self.synchronous)
        for _ in range(self.reader_count):
            self._readers.append(Reader(connect_reader(self.path)))

    async def close(self) -> None:
        if self._drain_task is not None:
            await asyncio.shield(self._drain_task)
        for reader in self._readers:
            reader.raw.close()
        self._readers.clear()
        if self._writer is not None:
            await self._writer.close()
            self._writer = None
            # The group-commit ratio (the benchmark reads this line from the server's stderr).
            log.info("database closed: %d write units in %d commits", self.units, self.commits)

    @property
    def reader(self) -> Reader:
        """A read-only connection (round robin); each call is a consistent single statement."""
        self._next_reader = (self._next_reader + 1) % len(self._readers)
        return self._readers[self._next_reader]

    def freshness(self, scope: str) -> tuple[int, int]:
        """A stamp that changes whenever a committed write may have changed what ``scope`` reads.

        Take it before reading; a cached result stays valid while the stamp is unchanged. A stamp
        moves only after COMMIT, so a result read before a commit is never stamped after it.
        Writes by another process (the CLI) are not seen; none of them changes messages.
        """
        return self._generation, self._scope_generations.get(scope, 0)

    def _committed(self, tx: Tx | None) -> None:
        if tx is not None and tx.scopes and len(self._scope_generations) < MAX_TRACKED_SCOPES:
            for scope in tx.scopes:
                self._scope_generations[scope] = self._scope_generations.get(scope, 0) + 1
            return
        # Everything may have changed (or too many scopes are tracked): one global bump covers every
        # scope, so their own counters can start again from zero.
        self._generation += 1
        self._scope_generations.clear()

    async def write(self, unit: Callable[[Tx], Awaitable[T]]) -> T:
        """Run ``unit(tx)`` in a write transaction; return its result once the COMMIT is durable."""
        if self._writer is None:  # e.g. a job still finishing while the app stops: refuse, don't crash
            raise RuntimeError("the database is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((unit, future))
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.group_commit_max))]
            try:
                await self._run_batch(batch)
            except Exception as exc:  # the batch as a whole failed (COMMIT, disk full): fail every caller
                self._committed(None)  # whatever it did or did not leave behind, cached reads start over
                log.exception("write batch of %d failed", len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)

    async def _run_batch(self, batch: list[tuple[Callable[[Tx], Awaitable[Any]], asyncio.Future[Any]]]) -> None:
        """Commit a batch. Fast path: the units one after another, no savepoints (each SAVEPOINT and
        RELEASE is another thread hop). Only when a unit fails is the batch rolled back and run again
        with a savepoint per unit, so the failing unit rolls back alone. Units are SQL-only and see
        nothing committed by the first try, so running one again is safe.
        """
        assert self._writer is not None, "database is not open"
        try:
            outcomes = await self._attempt(batch, isolate=False)
        except _RetryIsolated:
            outcomes = await self._attempt(batch, isolate=True)
        if outcomes is None:  # a lone unit failed: its caller already has the error
            return
        self.commits += 1
        self.units += len(batch)
        for future, tx, result, error in outcomes:
            if error is None:
                self._committed(tx)
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

    async def _attempt(self, batch: list[tuple[Callable[[Tx], Awaitable[Any]], asyncio.Future[Any]]],
                       isolate: bool) -> list[tuple[asyncio.Future[Any], Tx, Any, BaseException | None]] | None:
        """One try at committing ``batch``; raises _RetryIsolated when a unit of a shared batch failed.

        A lone unit needs no isolation: its failure is its caller's error, and the answer is None.
        """
        assert self._writer is not None, "database is not open"
        raw = self._writer
        single = len(batch) == 1
        outcomes: list[tuple[asyncio.Future[Any], Tx, Any, BaseException | None]] = []
        await raw.execute("BEGIN IMMEDIATE")
        try:
            for unit, future in batch:
                tx = Tx(raw)
                if isolate:
                    await raw.execute("SAVEPOINT unit")
                try:
                    result = await unit(tx)
                except Exception as exc:
                    if not isolate:
                        if single:
                            raise
                        raise _RetryIsolated() from exc
                    await raw.execute("ROLLBACK TO unit")
                    await raw.execute("RELEASE unit")
                    outcomes.append((future, tx, None, exc))
                    continue
                if isolate:
                    await raw.execute("RELEASE unit")
                outcomes.append((future, tx, result, None))
            await raw.execute("COMMIT")
        except BaseException as exc:
            if raw.in_transaction:
                await raw.execute("ROLLBACK")
            if single and not isinstance(exc, _RetryIsolated):
                _, future = batch[0]
                if not future.done():
                    future.set_exception(exc)
                return None
            raise
        return outcomes

    async def backup_to(self, target: Path) -> None:
        """SQLite online backup of the live database into ``target`` (readers and writer keep going)."""
        assert self._writer is not None, "database is not open"
        await asyncio.get_running_loop().run_in_executor(None, backup_file, self.path, target)


def backup_file(source_path: Path, target: Path) -> None:
    """Copy a live database (blocking: run it off the loop)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # Copy into a sibling file and rename it over the target, so a failed backup never leaves a
    # half-written file where a good one is expected. pages=-1 (the default) copies in one step,
    # inside one read transaction: a consistent snapshot even while the server keeps writing.
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        # A fresh read-only source, never the writer: between two statements of a write batch the
        # writer connection would show (and copy) changes that are not committed yet.
        source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True)
        dest = sqlite3.connect(partial)
        try:
            source.backup(dest)
        finally:
            dest.close()
            source.close()
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def migration_files() -> list[tuple[int, str, Path]]:
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        number, _, name = path.stem.partition("_")
        found.append((int(number), name, path))
    numbers = [n for n, _, _ in found]
    if len(numbers) != len(set(numbers)):
        raise RuntimeError(f"two migrations share a number: {numbers}")
    return found


def applied_migrations(raw: sqlite3.Connection) -> set[int]:
    tables = raw.execute("SELECT 1 FROM sqlite_master WHERE name = 'schema_migrations'").fetchall()
    if not tables:
        return set()
    return {row[0] for row in raw.execute("SELECT version FROM schema_migrations").fetchall()}


async def pending_migrations(path: Path) -> list[int]:
    """Numbers of the migrations a database file has not had yet, read without writing anything."""
    raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        done = applied_migrations(raw)
    finally:
        raw.close()
    return [number for number, _, _ in migration_files() if number not in done]


def apply_migrations(raw: sqlite3.Connection) -> list[int]:
    """Apply every migration not yet recorded, each in one transaction with its record (blocking)."""
    run(
        raw,
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
        " applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))"
    )
    done = applied_migrations(raw)
    applied = []
    for number, name, path in migration_files():
        if number in done:
            continue
        script = path.read_text(encoding="utf-8")
        safe_name = name.replace("'", "")
        try:
            raw.executescript(
                f"BEGIN IMMEDIATE;\n{script}\n;"
                f"INSERT INTO schema_migrations (version, name) VALUES ({number}, '{safe_name}');\nCOMMIT;"
            )
        except sqlite3.Error:
            if raw.in_transaction:
                run(raw, "ROLLBACK")
            raise
        log.info("applied migration %04d_%s", number, name)
        applied.append(number)
    return applied
