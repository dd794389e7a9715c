"""SQL for the push outbox and for finding who a new message should reach by push."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from rosetta.store.connections import Conn, Tx


async def conversation_recipients(conn: Conn, conversation_id: str, author_id: str) -> list[sqlite3.Row]:
    """Other participants of a direct conversation that have at least one device, with their devices."""
    return await conn.fetch_all(
        "SELECT p.user_id, u.preferred_language AS language, d.id AS device_id"
        " FROM direct_participants p JOIN users u ON u.id = p.user_id JOIN devices d ON d.user_id = p.user_id"
        " WHERE p.conversation_id = ? AND p.user_id != ? AND u.is_active = 1",
        (conversation_id, author_id),
    )


async def devices_with_names(conn: Conn, user_ids: Sequence[str]) -> list[sqlite3.Row]:
    """(user_id, name, device_id) for the given users that have devices."""
    if not user_ids:
        return []
    marks = ", ".join("?" for _ in user_ids)
    return await conn.fetch_all(
        f"SELECT u.id AS user_id, u.name, d.id AS device_id FROM users u JOIN devices d ON d.user_id = u.id"
        f" WHERE u.id IN ({marks})",
        list(user_ids),
    )


async def enqueue(tx: Tx, rows: Sequence[tuple[str, str, str, str, str, str, str, str]]) -> None:
    """Rows of (id, device_id, user_id, message_id, language, reason, next_attempt_at, created_at)."""
    await tx.executemany(
        "INSERT INTO push_outbox (id, device_id, user_id, message_id, language, reason, next_attempt_at,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


async def due(conn: Conn, now: str, limit: int) -> list[sqlite3.Row]:
    return await conn.fetch_all(
        "SELECT o.*, d.provider, d.push_token, d.user_id AS device_user_id FROM push_outbox o"
        " JOIN devices d ON d.id = o.device_id"
        " WHERE o.status = 'pending' AND o.next_attempt_at <= ? ORDER BY o.next_attempt_at, o.id LIMIT ?",
        (now, limit),
    )


async def remove(tx: Tx, push_id: str) -> None:
    await tx.execute("DELETE FROM push_outbox WHERE id = ?", (push_id,))


async def reschedule(tx: Tx, push_id: str, *, attempts: int, next_attempt_at: str, status: str,
                     last_error: str | None) -> None:
    await tx.execute(
        "UPDATE push_outbox SET attempts = ?, next_attempt_at = ?, status = ?, last_error = ? WHERE id = ?",
        (attempts, next_attempt_at, status, last_error, push_id),
    )


async def drop_pending_for_device(tx: Tx, device_id: str) -> None:
    """A device changed hands: what was queued for its previous owner must not reach the new one."""
    await tx.execute("DELETE FROM push_outbox WHERE device_id = ?", (device_id,))


async def for_user(conn: Conn, user_id: str) -> list[sqlite3.Row]:
    return await conn.fetch_all("SELECT * FROM push_outbox WHERE user_id = ? ORDER BY id", (user_id,))


async def trim_failed(tx: Tx, chunk: int, *, cutoff: str) -> int:
    """Forget up to ``chunk`` pushes that ended failed before ``cutoff``."""
    return await tx.execute(
        "DELETE FROM push_outbox WHERE id IN"
        " (SELECT id FROM push_outbox WHERE status = 'failed' AND created_at < ? LIMIT ?)", (cutoff, chunk))
