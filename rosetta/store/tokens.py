"""SQL for bearer access tokens (login and personal). Only sha256(secret) is ever stored."""

from __future__ import annotations

import json
import sqlite3

from rosetta.store.connections import Conn, Tx


async def insert(tx: Tx, *, id: str, user_id: str, kind: str, name: str, secret_hash: str,
                 abilities: list[str], expires_at: str | None, now: str) -> None:
    await tx.execute(
        "INSERT INTO access_tokens (id, user_id, kind, name, secret_hash, abilities, expires_at, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (id, user_id, kind, name, secret_hash, json.dumps(abilities), expires_at, now),
    )


async def with_user(conn: Conn, token_id: str) -> sqlite3.Row | None:
    """The token and its user's state, in one read (the hot path of every request)."""
    return await conn.fetch_one(
        "SELECT t.id, t.user_id, t.kind, t.secret_hash, t.abilities, t.expires_at, t.revoked_at,"
        " t.last_used_at, u.is_active, u.kind AS user_kind"
        " FROM access_tokens t JOIN users u ON u.id = t.user_id WHERE t.id = ?",
        (token_id,),
    )


MAX_PERSONAL = 500  # live personal tokens a user may hold (services.accounts): the list shows them all


async def personal_for_user(conn: Conn, user_id: str) -> list[sqlite3.Row]:
    return await conn.fetch_all(
        "SELECT * FROM access_tokens WHERE user_id = ? AND kind = 'personal' AND revoked_at IS NULL"
        " ORDER BY id DESC LIMIT ?",
        (user_id, MAX_PERSONAL),
    )


async def count_personal(conn: Conn, user_id: str) -> int:
    row = await conn.fetch_one(
        "SELECT COUNT(*) FROM access_tokens WHERE user_id = ? AND kind = 'personal' AND revoked_at IS NULL",
        (user_id,),
    )
    return int(row[0]) if row else 0


async def by_id_for_user(conn: Conn, token_id: str, user_id: str) -> sqlite3.Row | None:
    return await conn.fetch_one(
        "SELECT * FROM access_tokens WHERE id = ? AND user_id = ? AND revoked_at IS NULL", (token_id, user_id)
    )


async def touch(tx: Tx, token_id: str, now: str) -> None:
    await tx.execute("UPDATE access_tokens SET last_used_at = ? WHERE id = ?", (now, token_id))


async def revoke(tx: Tx, token_id: str, now: str) -> int:
    return await tx.execute(
        "UPDATE access_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, token_id)
    )


async def revoke_all_for_user(tx: Tx, user_id: str, now: str, keep_id: str | None = None) -> list[str]:
    """Revoke every live token of a user except ``keep_id``; return the revoked ids."""
    rows = await tx.fetch_all(
        "UPDATE access_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL"
        " AND id IS NOT ? RETURNING id",
        (now, user_id, keep_id),
    )
    return [row["id"] for row in rows]


async def delete_dead(tx: Tx, now: str) -> int:
    """Cleanup: drop tokens revoked or expired (they can never authenticate again)."""
    return await tx.execute(
        "DELETE FROM access_tokens WHERE revoked_at IS NOT NULL OR (expires_at IS NOT NULL AND expires_at < ?)",
        (now,),
    )
