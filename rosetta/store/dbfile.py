"""The database file outside the server's connections: creating it in WAL mode, applying the numbered
migrations (each in one transaction with its record), and online backups.

Everything here blocks: callers run it off the loop (or before there is one, in the CLI).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

from rosetta.store.connections import run

log = logging.getLogger("rosetta.store")
MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def prepare_file(path: Path) -> list[int]:
    """Create the database if needed, switch it to WAL and apply migrations (blocking: off the loop)."""
    raw = sqlite3.connect(path, isolation_level=None)
    try:
        raw.execute("PRAGMA journal_mode=WAL").fetchall()
        return apply_migrations(raw)
    finally:
        raw.close()


# Files SQLite (and the writer lock of store/db.py) keep next to the database while it is in use.
LIVE_SUFFIXES = ("", "-wal", "-shm", "-journal", "-writer.lock")


def backup_target_problem(source_path: Path, target: Path) -> str | None:
    """Why ``target`` must not receive a backup of ``source_path``, or None when it may.

    The backup is renamed over the target: onto the live database or its WAL, the server's open
    connections would keep the old inode while later ones opened the copy, and writes would be lost.
    """
    if not target.name or target.name in (".", ".."):
        return f"{target} names no file"
    if target.is_dir():
        return f"{target} is a directory; name a file in it"
    resolved = target.resolve()
    for suffix in LIVE_SUFFIXES:
        live = source_path.with_name(source_path.name + suffix)
        same = resolved == live.resolve() or (target.exists() and live.exists() and os.path.samefile(target, live))
        if same:
            what = "database itself" if not suffix else f"database's {suffix[1:]} file"
            return f"{target} is the live {what} ({live})"
    return None


def backup_file(source_path: Path, target: Path) -> None:
    """Copy a live database (blocking: run it off the loop)."""
    problem = backup_target_problem(source_path, target)
    if problem is not None:  # the CLI says so first; this keeps any other caller from replacing a live file
        raise ValueError(f"backup refused: {problem}")
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
