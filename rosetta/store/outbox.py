"""SQL for the mail outbox: enqueue inside a caller's transaction, pick what is due, record outcomes."""

from __future__ import annotations

import sqlite3

from rosetta.store.connections import Conn, Tx


async def enqueue(tx: Tx, *, id: str, to: str, subject: str, body: str, now: str) -> None:
    await tx.execute(
        'INSERT INTO mail_outbox (id, "to", subject, body, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?)',
        (id, to, subject, body, now, now),
    )


async def due(conn: Conn, now: str, limit: int) -> list[sqlite3.Row]:
    return await conn.fetch_all(
        "SELECT * FROM mail_outbox WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at, id"
        " LIMIT ?",
        (now, limit),
    )


async def by_id(conn: Conn, mail_id: str) -> sqlite3.Row | None:
    return await conn.fetch_one("SELECT * FROM mail_outbox WHERE id = ?", (mail_id,))


async def mark_sent(tx: Tx, mail_ids: list[str], now: str) -> None:
    """One statement for a whole batch: each statement is a hop for the GIL on the writer's thread.

    The body goes: it held a one-time code or link, in the clear, and is never needed again (so does
    a mail's that ends failed, in ``mark_failed``). What stays says who was mailed what, and when.
    """
    if not mail_ids:
        return
    marks = ",".join("?" * len(mail_ids))
    await tx.execute(
        "UPDATE mail_outbox SET status = 'sent', attempts = attempts + 1, sent_at = ?, last_error = NULL, body = ''"
        f" WHERE id IN ({marks})",
        (now, *mail_ids),
    )


async def mark_failed(tx: Tx, mail_id: str, error: str, next_attempt_at: str | None) -> None:
    """Record a failed attempt; ``next_attempt_at`` None means no attempts remain."""
    if next_attempt_at is None:
        await tx.execute(
            "UPDATE mail_outbox SET status = 'failed', attempts = attempts + 1, last_error = ?, body = ''"
            " WHERE id = ?",
            (error, mail_id),
        )
    else:
        await tx.execute(
            "UPDATE mail_outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE id = ?",
            (error, next_attempt_at, mail_id),
        )


async def delete_ended_chunk(tx: Tx, chunk: int, *, cutoff: str) -> int:
    """Delete up to ``chunk`` mails created before ``cutoff`` that were sent or ended failed."""
    return await tx.execute(
        "DELETE FROM mail_outbox WHERE id IN"
        " (SELECT id FROM mail_outbox WHERE status != 'pending' AND created_at < ? LIMIT ?)",
        (cutoff, chunk),
    )
