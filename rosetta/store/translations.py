"""SQL for translation jobs/results (message_translations) and glossaries."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence

from rosetta.store.connections import Conn, Tx

# Above SQLite's default 999 bound-parameter limit we would fail; pages and claims stay far below it.
MAX_IDS = 500


async def add_jobs(tx: Tx, message_id: str, languages: Iterable[str], audience_kind: str, audience_id: str,
                   now: str) -> None:
    """One pending job per language (an existing row for that language is left alone)."""
    await tx.executemany(
        "INSERT OR IGNORE INTO message_translations (message_id, language, status, next_attempt_at,"
        " audience_kind, audience_id, updated_at) VALUES (?, ?, 'pending', ?, ?, ?, ?)",
        [(message_id, language, now, audience_kind, audience_id, now) for language in languages],
    )


async def delete_for_message(tx: Tx, message_id: str) -> int:
    return await tx.execute("DELETE FROM message_translations WHERE message_id = ?", (message_id,))


CRASHED = "gave up: the worker stopped during every attempt"


async def claim(tx: Tx, now: str, lease_until: str, limit: int, max_attempts: int) -> list[sqlite3.Row]:
    """Lease up to ``limit`` due pending jobs (none leased, or the lease expired: a crashed worker's).

    A lease counts as an attempt (``attempts`` is the try this lease is), so a job whose worker dies
    every time still ends: one found with its attempts used up is marked ``failed`` instead, and
    comes back with that status for the caller to skip. One statement however many jobs.
    """
    return await tx.fetch_all(
        "UPDATE message_translations SET"
        " status = CASE WHEN attempts >= :max THEN 'failed' ELSE status END,"
        " last_error = CASE WHEN attempts >= :max THEN :crashed ELSE last_error END,"
        " lease_until = CASE WHEN attempts >= :max THEN NULL ELSE :lease END,"
        " attempts = CASE WHEN attempts >= :max THEN attempts ELSE attempts + 1 END,"
        " updated_at = :now"
        " WHERE rowid IN ("
        " SELECT rowid FROM message_translations WHERE status = 'pending' AND next_attempt_at <= :now"
        " AND (lease_until IS NULL OR lease_until <= :now) ORDER BY next_attempt_at LIMIT :limit)"
        " RETURNING message_id, language, status, attempts, lease_until, audience_kind, audience_id",
        {"max": max_attempts, "crashed": CRASHED, "lease": lease_until, "now": now, "limit": limit},
    )


async def sources(conn: Conn, message_ids: Sequence[str]) -> list[sqlite3.Row]:
    """What the worker needs of each message: text, source language, flags and the workspace glossary."""
    if not message_ids:
        return []
    marks = ",".join("?" * len(message_ids))
    return await conn.fetch_all(
        "SELECT m.id, m.original_content, m.source_language, m.skip_translation, m.deleted_at,"
        " COALESCE(w.glossary, '[]') AS glossary FROM messages m LEFT JOIN workspaces w ON w.id = m.workspace_id"
        f" WHERE m.id IN ({marks})",
        list(message_ids),
    )


async def complete_many(tx: Tx, results: Sequence[tuple[str, str, str, str]], now: str) -> set[tuple[str, str]]:
    """Store results (message_id, language, lease_until, content) if each lease is still ours; 200 per statement.

    Returns the (message_id, language) pairs actually stored: the others were edited or re-leased meanwhile.
    """
    stored: set[tuple[str, str]] = set()
    for start in range(0, len(results), 200):
        chunk = results[start:start + 200]
        values = ",".join("(?, ?, ?, ?)" for _ in chunk)
        rows = await tx.fetch_all(
            f"WITH r(message_id, language, lease, content) AS (VALUES {values})"
            " UPDATE message_translations SET status = 'completed', content = r.content, lease_until = NULL,"
            " last_error = NULL, updated_at = ? FROM r WHERE message_translations.message_id = r.message_id"
            " AND message_translations.language = r.language AND message_translations.lease_until = r.lease"
            " AND message_translations.status = 'pending'"
            " RETURNING message_translations.message_id, message_translations.language",
            [value for row in chunk for value in row] + [now],
        )
        stored.update((row[0], row[1]) for row in rows)
    return stored


async def retry_or_fail(tx: Tx, message_id: str, language: str, lease_until: str, error: str, *, final: bool,
                        next_attempt_at: str, now: str) -> bool:
    changed = await tx.execute(
        "UPDATE message_translations SET last_error = ?, lease_until = NULL,"
        " next_attempt_at = ?, status = ?, updated_at = ?"
        " WHERE message_id = ? AND language = ? AND lease_until = ? AND status = 'pending'",
        (error[:500], next_attempt_at, "failed" if final else "pending", now, message_id, language, lease_until),
    )
    return changed > 0


async def upsert_completed(tx: Tx, message_id: str, language: str, content: str, audience_kind: str,
                           audience_id: str, now: str) -> None:
    """An on-demand translation: stored like a finished job (a pending one for that language is done too)."""
    await tx.execute(
        "INSERT INTO message_translations (message_id, language, status, content, next_attempt_at, audience_kind,"
        " audience_id, updated_at) VALUES (?, ?, 'completed', ?, ?, ?, ?, ?)"
        " ON CONFLICT (message_id, language) DO UPDATE SET status = 'completed', content = excluded.content,"
        " lease_until = NULL, last_error = NULL, updated_at = excluded.updated_at",
        (message_id, language, content, now, audience_kind, audience_id, now),
    )


async def for_language(conn: Conn, message_ids: Sequence[str], language: str) -> list[sqlite3.Row]:
    """One query for a page: each message's translation state in ``language``."""
    if not message_ids:
        return []
    ids = list(message_ids)[:MAX_IDS]
    marks = ",".join("?" * len(ids))
    return await conn.fetch_all(
        f"SELECT message_id, status, content FROM message_translations WHERE language = ? AND message_id IN ({marks})",
        [language, *ids],
    )


async def one(conn: Conn, message_id: str, language: str) -> sqlite3.Row | None:
    return await conn.fetch_one(
        "SELECT * FROM message_translations WHERE message_id = ? AND language = ?", (message_id, language)
    )


# The translation memory's old table (the memory has a file of its own: store/translation_memory.py) --------

async def drop_old_memory(tx: Tx) -> None:
    await tx.execute("DROP TABLE IF EXISTS translation_memory")


# Glossary -----------------------------------------------------------------------------------------------

async def glossary(conn: Conn, workspace_id: str) -> list[str]:
    raw = await conn.fetch_value("SELECT glossary FROM workspaces WHERE id = ?", (workspace_id,))
    try:
        terms = json.loads(raw or "[]")
    except ValueError:
        return []
    return [t for t in terms if isinstance(t, str)] if isinstance(terms, list) else []


async def set_glossary(tx: Tx, workspace_id: str, terms: list[str], now: str) -> None:
    await tx.execute(
        "UPDATE workspaces SET glossary = ?, updated_at = ? WHERE id = ?",
        (json.dumps(terms, ensure_ascii=False), now, workspace_id),
    )
