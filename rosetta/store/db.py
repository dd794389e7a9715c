"""The SQLite database: one writer with group commit, a few read-only readers, and migrations.

Owns every connection. Writes go through ``Database.write(unit)``: units queue up and a single
writer task runs as many as are waiting inside one ``BEGIN IMMEDIATE … COMMIT`` (group commit), each
inside its own SAVEPOINT so one failing unit rolls back alone. A unit's ``on_commit`` callbacks run,
and its caller is answered, only after COMMIT returned: an acknowledged write is durable
(``synchronous=FULL`` by default) and a rolled-back change never reaches a client.

A unit must not await anything but its own statements: it holds the writer for the whole batch.
Slow work (bcrypt, provider calls, file hashing) happens before ``write()``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

log = logging.getLogger("rosetta.store")

T = TypeVar("T")
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_MS = 5000


class Conn:
    """One connection's statements, one thread hop each (~55 µs): prefer one call per question."""

    def __init__(self, raw: aiosqlite.Connection) -> None:
        self.raw = raw

    async def fetch_one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Row | None:
        rows = await self.raw.execute_fetchall(sql, params)
        return rows[0] if rows else None  # type: ignore[index]

    async def fetch_all(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        return list(await self.raw.execute_fetchall(sql, params))

    async def fetch_value(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        row = await self.fetch_one(sql, params)
        return None if row is None else row[0]


class Tx(Conn):
    """The writer connection inside one unit of a write batch."""

    def __init__(self, raw: aiosqlite.Connection) -> None:
        super().__init__(raw)
        self.after_commit: list[Callable[[], Any]] = []

    async def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        """Run one statement and return the number of rows it changed."""
        cursor = await self.raw.execute(sql, params)
        return cursor.rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self.raw.executemany(sql, rows)

    def on_commit(self, callback: Callable[[], Any]) -> None:
        """Run ``callback`` after this unit's batch committed; never when it rolled back."""
        self.after_commit.append(callback)


class Database:
    def __init__(self, path: Path, synchronous: str = "FULL", readers: int = 2,
                 group_commit_max: int = 128) -> None:
        self.path = path
        self.synchronous = synchronous
        self.reader_count = readers
        self.group_commit_max = group_commit_max
        self._writer: aiosqlite.Connection | None = None
        self._readers: list[Conn] = []
        self._next_reader = 0
        self._queue: deque[tuple[Callable[[Tx], Awaitable[Any]], asyncio.Future[Any]]] = deque()
        self._drain_task: asyncio.Task[None] | None = None
        self.commits = 0  # counters the benchmark prints: units per commit shows group commit working
        self.units = 0

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = await self._connect(readonly=False)
        await self._writer.execute("PRAGMA journal_mode=WAL")
        await apply_migrations(self._writer)
        for _ in range(self.reader_count):
            self._readers.append(Conn(await self._connect(readonly=True)))

    async def _connect(self, readonly: bool) -> aiosqlite.Connection:
        target = f"file:{self.path}?mode=ro" if readonly else f"file:{self.path}"
        raw = await aiosqlite.connect(target, uri=True, isolation_level=None)
        raw.row_factory = sqlite3.Row
        await raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        await raw.execute("PRAGMA foreign_keys=ON")
        if readonly:
            await raw.execute("PRAGMA query_only=ON")
        else:
            await raw.execute(f"PRAGMA synchronous={self.synchronous}")
        return raw

    async def close(self) -> None:
        if self._drain_task is not None:
            await asyncio.shield(self._drain_task)
        for reader in self._readers:
            await reader.raw.close()
        self._readers.clear()
        if self._writer is not None:
            await self._writer.close()
            self._writer = None
            # The group-commit ratio (the benchmark reads this line from the server's stderr).
            log.info("database closed: %d write units in %d commits", self.units, self.commits)

    @property
    def reader(self) -> Conn:
        """A read-only connection (round robin); each call is a consistent single statement."""
        self._next_reader = (self._next_reader + 1) % len(self._readers)
        return self._readers[self._next_reader]

    async def write(self, unit: Callable[[Tx], Awaitable[T]]) -> T:
        """Run ``unit(tx)`` in a write transaction; return its result once the COMMIT is durable."""
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
        await raw.execute("BEGIN IMMEDIATE")
        try:
            for unit, future in batch:
                tx = Tx(raw)
                if not single:
                    await raw.execute("SAVEPOINT unit")
                try:
                    result = await unit(tx)
                except Exception as exc:
                    if single:
                        raise
                    await raw.execute("ROLLBACK TO unit")
                    await raw.execute("RELEASE unit")
                    outcomes.append((future, tx, None, exc))
                    continue
                if not single:
                    await raw.execute("RELEASE unit")
                outcomes.append((future, tx, result, None))
            await raw.execute("COMMIT")
        except BaseException as exc:
            if raw.in_transaction:
                await raw.execute("ROLLBACK")
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
        target.parent.mkdir(parents=True, exist_ok=True)
        # Copy into a sibling file and rename it over the target, so a failed backup never leaves a
        # half-written file where a good one is expected. pages=-1 (the default) copies in one step,
        # inside one read transaction: a consistent snapshot even while the server keeps writing.
        partial = target.with_name(target.name + ".partial")
        partial.unlink(missing_ok=True)
        try:
            # A fresh read-only source, never the writer: between two statements of a write batch the
            # writer connection would show (and copy) changes that are not committed yet.
            async with aiosqlite.connect(f"file:{self.path}?mode=ro", uri=True) as source, \
                    aiosqlite.connect(partial) as dest:
                await source.backup(dest)
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


async def pending_migrations(path: Path) -> list[int]:
    """Numbers of the migrations a database file has not had yet, read without writing anything."""
    async with aiosqlite.connect(f"file:{path}?mode=ro", uri=True) as raw:
        tables = await raw.execute_fetchall("SELECT 1 FROM sqlite_master WHERE name = 'schema_migrations'")
        done = set()
        if tables:
            done = {row[0] for row in await raw.execute_fetchall("SELECT version FROM schema_migrations")}
    return [number for number, _, _ in migration_files() if number not in done]


async def apply_migrations(raw: aiosqlite.Connection) -> list[int]:
    """Apply every migration not yet recorded, each in one transaction with its record."""
    await raw.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
        " applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))"
    )
    done = {row[0] for row in await raw.execute_fetchall("SELECT version FROM schema_migrations")}
    applied = []
    for number, name, path in migration_files():
        if number in done:
            continue
        script = path.read_text(encoding="utf-8")
        safe_name = name.replace("'", "")
        try:
            await raw.executescript(
                f"BEGIN IMMEDIATE;\n{script}\n;"
                f"INSERT INTO schema_migrations (version, name) VALUES ({number}, '{safe_name}');\nCOMMIT;"
            )
        except sqlite3.Error:
            if raw.in_transaction:
                await raw.execute("ROLLBACK")
            raise
        log.info("applied migration %04d_%s", number, name)
        applied.append(number)
    return applied
