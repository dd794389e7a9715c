"""How the database's connections are opened and used: the writer's unit API (``Tx``), readers, the
writers' shared lock file, and the one-statement helper ``run``.

Owns nothing but connection set-up and the thin wrappers store functions are written against;
``rosetta.store.db`` decides which connection runs what, and when.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiosqlite

T = TypeVar("T")
BUSY_TIMEOUT_MS = 5000
READER_MMAP_BYTES = 256 * 1024 * 1024  # address space, not memory: pages come from the OS cache
# Only when the checkpoint job is not running (or cannot keep up) does a COMMIT checkpoint by itself.
WRITER_AUTOCHECKPOINT_PAGES = 16_000  # ~64 MB of WAL; SQLite's default is 1,000
WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024  # a WAL grown in a burst is truncated back to this after a reset
Params = Sequence[Any] | dict[str, Any]


class WriterLock:
    """An exclusive lock file the workers' writers hold from BEGIN IMMEDIATE to COMMIT.

    Taken on the writer's thread (it blocks until the other worker's COMMIT returned); the kernel
    wakes the next waiter at once and drops the lock if its holder dies.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        assert self._fd is not None
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


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


class Tx(Reader):
    """The writer inside one unit of a write batch.

    A batch runs on the writer's thread (see ``Database._commit_on_writer``): these methods are
    coroutines only so that units read like the rest of the code; each runs its statement at once,
    so a unit that awaits nothing else completes in a single step, without a thread hop.
    """

    def __init__(self, raw: sqlite3.Connection) -> None:
        super().__init__(raw)
        self.after_commit: list[Callable[[], Any]] = []
        self.scopes: set[str] = set()  # empty: this unit may have changed anything (see Database.freshness)

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement and return the number of rows it changed."""
        return run(self.raw, sql, params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.raw.executemany(sql, rows).close()

    def on_commit(self, callback: Callable[[], Any]) -> None:
        """Run ``callback`` on the loop after this unit's batch committed; never when it rolled back."""
        self.after_commit.append(callback)

    def affects_only(self, scope: str) -> None:
        """Declare that of the reads callers cache, this unit changes only those of ``scope``.

        A unit that declares nothing invalidates every cached read when it commits: forgetting to
        declare costs cache hits, never correctness.
        """
        self.scopes.add(scope)


def complete(step: Awaitable[T]) -> T:
    """Drive a write unit's coroutine to its end in one step, on the writer thread.

    Units await only their own statements, which never suspend; a unit that suspends (it awaited
    the network, a sleep, another task) is a bug, and fails here rather than stalling the writer.
    """
    coroutine = step.__await__()
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("a write unit awaited something other than its own statements")


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

async def connect_writer(path: Path, synchronous: str) -> aiosqlite.Connection:
    raw = await aiosqlite.connect(f"file:{path}", uri=True, isolation_level=None)
    raw.row_factory = sqlite3.Row
    for pragma in (f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}", "PRAGMA foreign_keys=ON",
                   f"PRAGMA synchronous={synchronous}", f"PRAGMA wal_autocheckpoint={WRITER_AUTOCHECKPOINT_PAGES}",
                   f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}"):
        await raw.execute_fetchall(pragma)
    return raw


def connect_checkpointer(path: Path, synchronous: str) -> sqlite3.Connection:
    # Used from executor threads, one call at a time (Database holds a lock around it).
    raw = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    run(raw, f"PRAGMA synchronous={synchronous}")  # the checkpoint's fsyncs follow this setting
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
