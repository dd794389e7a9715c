"""SQL for workspaces and their members."""

from __future__ import annotations

import sqlite3

from rosetta.store.db import Conn, Tx

WORKSPACE_COLUMNS = (
    "w.id, w.kind, w.name, w.slug, w.owner_id, w.password_hash IS NOT NULL AS has_password, w.created_at,"
    " w.updated_at, (SELECT COUNT(*) FROM members c WHERE c.workspace_id = w.id) AS member_count"
)


async def insert(tx: Tx, *, id: str, name: str, slug: str, owner_id: str, password_hash: str | None,
                 now: str, kind: str = "standard") -> None:
    await tx.execute(
        "INSERT INTO workspaces (id, kind, name, slug, owner_id, password_hash, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (id, kind, name, slug, owner_id, password_hash, now, now),
    )


async def slug_taken(conn: Conn, slug: str) -> bool:
    return await conn.fetch_one("SELECT 1 FROM workspaces WHERE slug = ?", (slug,)) is not None


async def for_member(conn: Conn, workspace_id: str, user_id: str) -> sqlite3.Row | None:
    """The workspace as ``user_id`` sees it (with ``my_role``), or None when not a member."""
    return await conn.fetch_one(
        f"SELECT {WORKSPACE_COLUMNS}, m.role AS my_role, m.id AS member_id,"
        " m.preferred_language AS member_language"
        " FROM workspaces w JOIN members m ON m.workspace_id = w.id AND m.user_id = ? WHERE w.id = ?",
        (user_id, workspace_id),
    )


async def list_for_user(conn: Conn, user_id: str, limit: int = 500) -> list[sqlite3.Row]:
    return await conn.fetch_all(
        f"SELECT {WORKSPACE_COLUMNS}, m.role AS my_role FROM workspaces w"
        " JOIN members m ON m.workspace_id = w.id AND m.user_id = ?"
        " WHERE w.kind = 'standard' ORDER BY w.id LIMIT ?",
        (user_id, limit),
    )


async def add_member(tx: Tx, *, id: str, workspace_id: str, user_id: str, role: str, now: str) -> None:
    await tx.execute(
        "INSERT INTO members (id, workspace_id, user_id, role, joined_at) VALUES (?, ?, ?, ?, ?)",
        (id, workspace_id, user_id, role, now),
    )


async def member(conn: Conn, workspace_id: str, user_id: str) -> sqlite3.Row | None:
    return await conn.fetch_one(
        "SELECT * FROM members WHERE workspace_id = ? AND user_id = ?", (workspace_id, user_id)
    )


async def reader_languages(conn: Conn, workspace_id: str) -> list[str]:
    """Every distinct language the workspace's members read in (member override, else user)."""
    rows = await conn.fetch_all(
        "SELECT DISTINCT COALESCE(m.preferred_language, u.preferred_language) FROM members m"
        " JOIN users u ON u.id = m.user_id WHERE m.workspace_id = ? AND u.is_active = 1",
        (workspace_id,),
    )
    return [row[0] for row in rows]
