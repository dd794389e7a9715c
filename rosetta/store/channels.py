"""SQL for channels and password-channel access."""

from __future__ import annotations

import sqlite3

from rosetta.store.connections import Conn, Tx


async def insert(tx: Tx, *, id: str, workspace_id: str, name: str, slug: str, password_hash: str | None,
                 now: str, kind: str = "standard") -> None:
    await tx.execute(
        "INSERT INTO channels (id, workspace_id, kind, name, slug, password_hash, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (id, workspace_id, kind, name, slug, password_hash, now, now),
    )


async def slug_taken(conn: Conn, workspace_id: str, slug: str, except_id: str | None = None) -> bool:
    row = await conn.fetch_one(
        "SELECT 1 FROM channels WHERE workspace_id = ? AND slug = ? AND id IS NOT ?",
        (workspace_id, slug, except_id),
    )
    return row is not None


CHANNEL_FOR_USER = (
    "SELECT c.*, c.password_hash IS NOT NULL AS has_password,"
    " (c.password_hash IS NULL OR m.role IN ('owner', 'admin')"
    "  OR EXISTS (SELECT 1 FROM channel_access a WHERE a.channel_id = c.id AND a.user_id = m.user_id))"
    "  AS is_member,"
    " m.role AS my_role, COALESCE(m.preferred_language, u.preferred_language) AS reader_language"
    " FROM channels c JOIN members m ON m.workspace_id = c.workspace_id AND m.user_id = ?"
    " JOIN users u ON u.id = m.user_id"
)


async def for_user(conn: Conn, workspace_id: str, channel_id: str, user_id: str) -> sqlite3.Row | None:
    """The channel as a workspace member sees it (``is_member``, ``my_role``, ``reader_language``)."""
    return await conn.fetch_one(
        f"{CHANNEL_FOR_USER} WHERE c.id = ? AND c.workspace_id = ?", (user_id, channel_id, workspace_id)
    )


async def list_for_user(conn: Conn, workspace_id: str, user_id: str, limit: int = 1000) -> list[sqlite3.Row]:
    return await conn.fetch_all(
        f"{CHANNEL_FOR_USER} WHERE c.workspace_id = ? ORDER BY c.id LIMIT ?", (user_id, workspace_id, limit)
    )


async def grant_access(tx: Tx, channel_id: str, user_id: str, now: str) -> None:
    await tx.execute(
        "INSERT OR IGNORE INTO channel_access (channel_id, user_id, joined_at) VALUES (?, ?, ?)",
        (channel_id, user_id, now),
    )


async def readers(conn: Conn, channel_id: str) -> list[sqlite3.Row]:
    """Exactly who may read a channel: user id and reading language (for events and translation)."""
    return await conn.fetch_all(
        "SELECT m.user_id, COALESCE(m.preferred_language, u.preferred_language) AS language"
        " FROM channels c JOIN members m ON m.workspace_id = c.workspace_id JOIN users u ON u.id = m.user_id"
        " WHERE c.id = ? AND u.is_active = 1 AND (c.password_hash IS NULL OR m.role IN ('owner', 'admin')"
        "  OR EXISTS (SELECT 1 FROM channel_access a WHERE a.channel_id = c.id AND a.user_id = m.user_id))",
        (channel_id,),
    )


async def update(tx: Tx, channel_id: str, *, name: str, slug: str, password_hash: str | None, now: str) -> None:
    await tx.execute(
        "UPDATE channels SET name = ?, slug = ?, password_hash = ?, updated_at = ? WHERE id = ?",
        (name, slug, password_hash, now, channel_id),
    )


async def clear_access(tx: Tx, channel_id: str) -> None:
    """Forget who joined with the old password (a changed or removed password)."""
    await tx.execute("DELETE FROM channel_access WHERE channel_id = ?", (channel_id,))


async def password_hash(conn: Conn, channel_id: str) -> str | None:
    return await conn.fetch_value("SELECT password_hash FROM channels WHERE id = ?", (channel_id,))


async def delete(tx: Tx, channel_id: str) -> int:
    """Delete a channel; its messages and access rows go with it (ON DELETE CASCADE)."""
    return await tx.execute("DELETE FROM channels WHERE id = ?", (channel_id,))
