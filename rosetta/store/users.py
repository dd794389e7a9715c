"""SQL for users."""

from __future__ import annotations

import sqlite3
from typing import Any

from rosetta.store.connections import Conn, Tx

USER_UPDATABLE = ("name", "preferred_language", "avatar_url", "password_hash", "email_verified_at",
                  "is_active", "last_login_at", "room_plan")


async def insert(tx: Tx, *, id: str, name: str, email: str | None, password_hash: str | None,
                 preferred_language: str, now: str, kind: str = "user",
                 email_verified_at: str | None = None) -> None:
    await tx.execute(
        "INSERT INTO users (id, kind, name, email, password_hash, preferred_language, email_verified_at,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (id, kind, name, email, password_hash, preferred_language, email_verified_at, now, now),
    )


async def by_id(conn: Conn, user_id: str) -> sqlite3.Row | None:
    return await conn.fetch_one("SELECT * FROM users WHERE id = ?", (user_id,))


async def by_email(conn: Conn, email: str) -> sqlite3.Row | None:
    return await conn.fetch_one("SELECT * FROM users WHERE email = ? AND kind = 'user'", (email.lower(),))


async def update(tx: Tx, user_id: str, now: str, **fields: Any) -> None:
    unknown = set(fields) - set(USER_UPDATABLE)
    if unknown:
        raise ValueError(f"not updatable: {unknown}")
    if not fields:
        return
    assignments = ", ".join(f"{name} = ?" for name in fields)
    await tx.execute(f"UPDATE users SET {assignments}, updated_at = ? WHERE id = ?",
                     (*fields.values(), now, user_id))
