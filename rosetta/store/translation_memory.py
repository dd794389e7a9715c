"""The translation memory: a SQLite file of its own, next to the database, holding masked translations.

The memory is a cache. Losing its last few seconds costs one provider call per line learned in them,
and nothing a reader sees, so it does not ride the database's durable, shared writer:

- In the database, its inserts were ~1.8 ms of each ~4.9 ms finishing unit of the translation
  worker, measured under the translation bench (a masked text's hash is its key, so every insert
  lands on a page of its own, and each page was written and fsynced again in the unit's COMMIT).
  Every send queued behind such a unit waited for that too.
- Here, writes run on a thread of this class's own, in transactions of their own, with
  ``synchronous=NORMAL``: a commit is not fsynced; a power loss may forget the last ones, but WAL
  keeps the file consistent. Writers of other worker processes meet on SQLite's own lock; only an
  on-demand translation writes from a process that does not run the queue.
- Lookups stay on the loop, on a read-only connection: an indexed read of a few keys, 10-30 µs.

The memory once lived in the database's ``translation_memory`` table: ``adopt`` moves what that held.
It is not part of ``rosetta backup``, which copies the database only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from rosetta.store.connections import BUSY_TIMEOUT_MS, connect_reader, run
from rosetta.store.translations import MAX_IDS

T = TypeVar("T")
FILE_NAME = "translation-memory.sqlite3"
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS translation_memory ("
    " provider TEXT NOT NULL, source TEXT NOT NULL, target TEXT NOT NULL,"
    " masked_hash TEXT NOT NULL,"  # sha256 of the masked text (placeholders, not their pieces)
    " translated TEXT NOT NULL,"  # the masked translation; pieces are restored per message
    " created_at TEXT NOT NULL,"
    " PRIMARY KEY (provider, source, target, masked_hash))"
)
Entry = tuple[str, str, str, str, str]  # (provider, source, target, masked_hash, translated)


def masked_hash(text: str) -> str:
    """A masked text's key in the memory."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class TranslationMemory:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: sqlite3.Connection | None = None  # used on self._thread only
        self._reader: sqlite3.Connection | None = None  # used on the loop
        self._thread: ThreadPoolExecutor | None = None

    async def open(self) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="translation-memory")
        self._writer = await self._on_thread(connect_writer, self.path)
        self._reader = connect_reader(self.path)  # the database's readers' settings: read-only, mapped

    async def close(self) -> None:
        if self._thread is None:
            return
        if self._writer is not None:
            await self._on_thread(self._writer.close)
            self._writer = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._thread.shutdown(wait=True)
        self._thread = None

    async def _on_thread(self, fn: Callable[..., T], *args: object) -> T:
        if self._thread is None:  # a job tick racing shutdown: refuse, don't crash
            raise RuntimeError("the translation memory is closed")
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def lookup(self, provider: str, source: str, target: str, hashes: Sequence[str]) -> dict[str, str]:
        """The remembered masked translation of each of ``hashes`` that has one."""
        if self._reader is None:  # closed: the server is stopping, and an on-demand request still came in
            return {}
        found: dict[str, str] = {}
        unique = list(dict.fromkeys(hashes))
        for start in range(0, len(unique), MAX_IDS):
            chunk = unique[start:start + MAX_IDS]
            cursor = self._reader.execute(
                "SELECT masked_hash, translated FROM translation_memory WHERE provider = ? AND source = ?"
                f" AND target = ? AND masked_hash IN ({','.join('?' * len(chunk))})",
                [provider, source, target, *chunk],
            )
            found.update((row[0], row[1]) for row in cursor.fetchall())
        return found

    async def remember(self, entries: Iterable[Entry], now: str) -> None:
        """Learn ``entries`` (one transaction); an entry already known keeps its text and its age."""
        rows = [(*entry, now) for entry in entries]
        if rows and self._thread is not None:  # closed (stopping): nothing is learned, as after a power loss
            await self._on_thread(self._insert, rows)

    def _insert(self, rows: list[tuple[str, ...]]) -> None:
        assert self._writer is not None, "the translation memory is closed"
        with transaction(self._writer) as raw:
            raw.executemany(
                "INSERT OR IGNORE INTO translation_memory (provider, source, target, masked_hash, translated,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?)", rows)

    async def trim_chunk(self, cutoff: str, chunk: int) -> int:
        """Forget, of the ``chunk`` oldest entries, those learned before ``cutoff`` (one transaction, so
        another process's writer gets in between chunks); how many went.

        Oldest by rowid: entries are only ever appended, so rowid order is learning order, and this
        reads ``chunk`` rows however large the memory is (no index on created_at to keep up on every
        insert).
        """
        return await self._on_thread(self._trim_chunk, cutoff, chunk)

    def _trim_chunk(self, cutoff: str, chunk: int) -> int:
        assert self._writer is not None, "the translation memory is closed"
        with transaction(self._writer) as raw:
            return run(raw, "DELETE FROM translation_memory WHERE rowid IN"
                            " (SELECT rowid FROM translation_memory ORDER BY rowid LIMIT ?) AND created_at < ?",
                       (chunk, cutoff))


def connect_writer(path: Path) -> sqlite3.Connection:
    """A writing connection to the memory file, created with its table when missing (blocking)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = sqlite3.connect(f"file:{path}", uri=True, isolation_level=None, check_same_thread=False)
    for statement in ("PRAGMA journal_mode=WAL", f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
                      "PRAGMA synchronous=NORMAL", SCHEMA):
        run(raw, statement)
    return raw


@contextlib.contextmanager
def transaction(raw: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on an error. The connection autocommits otherwise, so a
    bare executemany would commit row by row."""
    run(raw, "BEGIN IMMEDIATE")
    try:
        yield raw
    except BaseException:
        run(raw, "ROLLBACK")
        raise
    run(raw, "COMMIT")


def adopt(path: Path, database: Path) -> int | None:
    """Copy into the memory at ``path`` what the database's old ``translation_memory`` table holds
    (blocking); how many entries were new, or None when the database has no such table.

    The memory lived in that table before it had a file of its own. Idempotent (INSERT OR IGNORE), so
    a start-up that stops before the old table is dropped copies again next time. Learning order is
    kept: the trim relies on it.
    """
    raw = connect_writer(path)
    try:
        run(raw, "ATTACH DATABASE ? AS old", (f"file:{database}?mode=ro",))
        cursor = raw.execute(
            "SELECT 1 FROM old.sqlite_master WHERE type = 'table' AND name = 'translation_memory'")
        found = cursor.fetchall()
        cursor.close()
        if not found:
            return None
        with transaction(raw):
            return run(raw, "INSERT OR IGNORE INTO main.translation_memory (provider, source, target, masked_hash,"
                            " translated, created_at) SELECT provider, source, target, masked_hash, translated,"
                            " created_at FROM old.translation_memory ORDER BY rowid")
    finally:
        raw.close()
