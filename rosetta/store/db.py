"""The SQLite database: one writer with group commit, a few read-only readers, and migrations.

Owns every connection. Writes go through ``Database.write(unit)``: units queue up and a single
writer task runs as many as are waiting inside one ``BEGIN IMMEDIATE … COMMIT`` (group commit), each
inside its own SAVEPOINT so one failing unit rolls back alone. A unit's ``on_commit`` callbacks run,
and its caller is answered, only after COMMIT returned: an acknowledged write is durable
(``synchronous=FULL`` by default) and a rolled-back change never reaches a client.

A unit must not await anything but its own statements: it holds the writer for the whole batch.
Slow work (bcrypt, provider calls, file hashing) happens before ``write()``.

Where statements run (measured on the 2-core bench machine, scripts/bench): a thread hop per
statement (aiosqlite) cost ~55 µs plus GIL hand-offs between the loop and the connection threads,
and capped the server at ~150 requests/s with 20 clients; an indexed statement run directly costs
10-30 µs. So statements run on the event loop thread: reads (WAL readers never wait for the
writer) and the writer's statements inside a batch (they only touch the page cache while the
batch holds the write lock). The two calls that may block — ``BEGIN IMMEDIATE`` (waits for another
process's write lock, e.g. the CLI) and ``COMMIT`` (fsync) — run on one writer thread, one hop each
per batch; while they do, requests keep being served and the next batch queues up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger("rosetta.store")

T = TypeVar("T")
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_MS = 5000
READER_MMAP_BYTES = 256 * 1024 * 1024  # address space, not memory: pages come from the OS cache


class Conn:
    """One connection's statements, run directly (see the module docstring for why)."""

    def __init__(self, raw: sqlite3.Connection) -> None:
        self.raw = raw

    async def fetch_one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Row | None:
        cursor = self.raw.execute(sql, params)
        try:
            return cursor.fetchone()  # type: ignore[no-any-return]
        finally:
            cursor.close()  # resets the statement: no read transaction stays open between calls

    async def fetch_all(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        cursor = self.raw.execute(sql, params)
        try:
            return cursor.fetchall()
        finally:
            cursor.close()

    async def fetch_value(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        row = await self.fetch_one(sql, params)
        return None if row is None else row[0]


class Tx(Conn):
    """The writer connection inside one unit of a write batch."""

    def __init__(self, raw: sqlite3.Connection) -> None:
        super().__init__(raw)
        self.after_commit: list[Callable[[], Any]] = []

    async def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        """Run one statement and return the number of rows it changed."""
        return run(self.raw, sql, params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.raw.executemany(sql, rows)

    def on_commit(self, callback: Callable[[], Any]) -> None:
        """Run ``callback`` after this unit's batch committed; never when it rolled back."""
        self.after_commit.append(callback)


def run(raw: sqlite3.Connection, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
    """Run one statement to completion and close its cursor; the number of rows it changed.

    Closing matters: a statement left open (e.g. ``PRAGMA journal_mode`` returns a row) keeps the
    connection busy and makes the next COMMIT fail with "SQL statements in progress".
    """
    cursor = raw.execute(sql, params)
    try:
        return cursor.rowcount
    finally:
        cursor.close()


def connect(path: Path, readonly: bool, synchronous: str = "FULL") -> sqlite3.Connection:
    target = f"file:{path}?mode=ro" if readonly else f"file:{path}"
    # check_same_thread off: the writer runs BEGIN/COMMIT on its thread and statements on the loop,
    # never two at once (the drain task awaits each step).
    raw = sqlite3.connect(target, uri=True, isolation_level=None, check_same_thread=False)
    raw.row_factory = sqlite3.Row
    run(raw, f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    run(raw, "PRAGMA foreign_keys=ON")
    if readonly:
        run(raw, "PRAGMA query_only=ON")
    else:
        run(raw, f"PRAGMA synchronous={synchronous}")
    return raw


class Database:
    def __init__(self, path: Path, synchronous: str = "FULL", readers: int = 2,
                 group_commit_max: int = 128) -> None:
        self.path = path
        self.synchronous = synchronous
        self.reader_count = readers
        self.group_commit_max = group_commit_max
        self._writer: sqlite3.Connection | None = None
        # One thread for the writer's blocking calls (BEGIN IMMEDIATE, COMMIT), so they never run
        # concurrently and never occupy the loop.
        self._writer_thread: ThreadPoolExecutor | None = None
        self._readers: list[Conn] = []
        self._next_reader = 0
        self._queue: deque[tuple[Callable[[Tx], Awaitable[Any]], asyncio.Future[Any]]] = deque()
        self._drain_task: asyncio.Task[None] | None = None
        self.commits = 0  # counters the benchmark prints: units per commit shows group commit working
        self.units = 0

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rosetta-writer")
        self._writer = await self._on_writer_thread(connect, self.path, False, self.synchronous)
        await self._on_writer_thread(run, self._writer, "PRAGMA journal_mode=WAL")
        await self._on_writer_thread(apply_migrations, self._writer)
        for _ in range(self.reader_count):
            reader = connect(self.path, readonly=True)
            # Readers map the database file instead of read()ing pages: under constant writes a
            # reader's page cache is reset at every commit, and each re-read page was a syscall.
            run(reader, f"PRAGMA mmap_size={READER_MMAP_BYTES}")
            self._readers.append(Conn(reader))

    async def _on_writer_thread(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._writer_thread is not None, "database is not open"
        return await asyncio.get_running_loop().run_in_executor(self._writer_thread, fn, *args)

    async def close(self) -> None:
        if self._drain_task is not None:
            await asyncio.shield(self._drain_task)
        for reader in self._readers:
            reader.raw.close()
        self._readers.clear()
        if self._writer is not None:
            await self._on_writer_thread(self._writer.close)
            self._writer = None
            # The group-commit ratio (the benchmark reads this line from the server's stderr).
            log.info("database closed: %d write units in %d commits", self.units, self.commits)
        if self._writer_thread is not None:
            self._writer_thread.shutdown(wait=True)
            self._writer_thread = None

    @property
    def reader(self) -> Conn:
        """A read-only connection (round robin); each call is a consistent single statement."""
        self._next_reader = (self._next_reader + 1) % len(self._readers)
        return self._readers[self._next_reader]

    async def write(self, unit: Callable[[Tx], Awaitable[T]]) -> T:
        """Run ``unit(tx)`` in a write transaction; return its result once the COMMIT is durable."""
        if self._writer is None:  # e.g. a job still finishing while the app stops: refuse, don't crash the batch
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
                log.exception("write batch of %d failed", len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)

    async def _run_batch(self, batch: list[tuple[Callable[[Tx], Awaitable[Any]], asyncio.Future[Any]]]) -> None:
        assert self._writer is not None, "database is not open"
        raw = self._writer
        single = len(batch) == 1
        outcomes: list[tuple[asyncio.Future[Any], Tx, Any, BaseException | None]] = []
        await self._on_writer_thread(run, raw, "BEGIN IMMEDIATE")
        try:
            for unit, future in batch:
                tx = Tx(raw)
                if not single:
                    run(raw, "SAVEPOINT unit")
                try:
                    result = await unit(tx)
                except Exception as exc:
                    if single:
                        raise
                    run(raw, "ROLLBACK TO unit")
                    run(raw, "RELEASE unit")
                    outcomes.append((future, tx, None, exc))
                    continue
                if not single:
                    run(raw, "RELEASE unit")
                outcomes.append((future, tx, result, None))
            await self._on_writer_thread(run, raw, "COMMIT")
        except BaseException as exc:
            if raw.in_transaction:
                run(raw, "ROLLBACK")
            if single:
                _, future = batch[0]
                if not future.done():
                    future.set_exception(exc)
                return
            raise
        self.commits += 1
        self.units += len(batch)
        for future, tx, result, error in outcomes:
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
