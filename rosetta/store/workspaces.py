"""SQL for workspaces and their members."""

from __future__ import annotations

import sqlite3

from rosetta.store.connections import Conn, Tx

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


# Members --------------------------------------------------------------------------------------------

MEMBER_SELECT = (
    "SELECT m.id, m.workspace_id, m.user_id, m.role, m.preferred_language, m.joined_at,"
    " u.name AS user_name, u.avatar_url AS user_avatar_url"
    " FROM members m JOIN users u ON u.id = m.user_id"
)


async def count_members(conn: Conn, workspace_id: str) -> int:
    return int(await conn.fetch_value("SELECT COUNT(*) FROM members WHERE workspace_id = ?", (workspace_id,)))


# What a member list may be sorted by (?sort=), and the column each names. Member ids are ULIDs, so id
# order is join order: the tie-break, in the same direction.
MEMBER_ORDER = {"joined_at": "m.id", "name": "u.name COLLATE NOCASE", "role": "m.role"}


async def list_members(conn: Conn, workspace_id: str, offset: int, limit: int, sort: str = "joined_at",
                       descending: bool = False) -> list[sqlite3.Row]:
    """One page of the members, in join order unless ``sort`` names another field of MEMBER_ORDER."""
    direction = "DESC" if descending else "ASC"
    return await conn.fetch_all(
        f"{MEMBER_SELECT} WHERE m.workspace_id = ? ORDER BY {MEMBER_ORDER[sort]} {direction}, m.id {direction}"
        " LIMIT ? OFFSET ?", (workspace_id, limit, offset)
    )


async def member_by_id(conn: Conn, workspace_id: str, member_id: str) -> sqlite3.Row | None:
    return await conn.fetch_one(f"{MEMBER_SELECT} WHERE m.workspace_id = ? AND m.id = ?", (workspace_id, member_id))


async def count_owners(conn: Conn, workspace_id: str) -> int:
    return int(await conn.fetch_value(
        "SELECT COUNT(*) FROM members WHERE workspace_id = ? AND role = 'owner'", (workspace_id,)
    ))


async def update_member(tx: Tx, member_id: str, *, role: str, preferred_language: str | None) -> None:
    await tx.execute("UPDATE members SET role = ?, preferred_language = ? WHERE id = ?",
                     (role, preferred_language, member_id))


async def remove_member(tx: Tx, workspace_id: str, member_id: str, user_id: str) -> None:
    """Remove the membership and the channel passwords it had unlocked in this workspace."""
    await tx.execute(
        "DELETE FROM channel_access WHERE user_id = ?"
        " AND channel_id IN (SELECT id FROM channels WHERE workspace_id = ?)", (user_id, workspace_id)
    )
    await tx.execute("DELETE FROM members WHERE id = ?", (member_id,))


async def set_owner_id(tx: Tx, workspace_id: str, owner_id: str, now: str) -> None:
    await tx.execute("UPDATE workspaces SET owner_id = ?, updated_at = ? WHERE id = ?", (owner_id, now, workspace_id))


async def another_owner(conn: Conn, workspace_id: str, except_user_id: str) -> str | None:
    """The longest-standing owner other than ``except_user_id`` (who takes over ``owner_id``)."""
    return await conn.fetch_value(
        "SELECT user_id FROM members WHERE workspace_id = ? AND role = 'owner' AND user_id <> ? ORDER BY id LIMIT 1",
        (workspace_id, except_user_id),
    )


async def shared_with(conn: Conn, user_id: str, other_user_id: str) -> bool:
    """Whether two users are members of at least one common standard workspace."""
    row = await conn.fetch_one(
        "SELECT 1 FROM members a JOIN members b ON b.workspace_id = a.workspace_id"
        " JOIN workspaces w ON w.id = a.workspace_id AND w.kind = 'standard'"
        " WHERE a.user_id = ? AND b.user_id = ? LIMIT 1",
        (user_id, other_user_id),
    )
    return row is not None


async def admin_ids(conn: Conn, workspace_id: str) -> list[str]:
    """The workspace's active owners and admins."""
    rows = await conn.fetch_all(
        "SELECT m.user_id FROM members m JOIN users u ON u.id = m.user_id"
        " WHERE m.workspace_id = ? AND m.role IN ('owner', 'admin') AND u.is_active = 1",
        (workspace_id,),
    )
    return [row[0] for row in rows]


async def readers(conn: Conn, workspace_id: str) -> list[sqlite3.Row]:
    """Who hears of a workspace: its active members, each in their reading language there."""
    return await conn.fetch_all(
        "SELECT m.user_id, COALESCE(m.preferred_language, u.preferred_language) AS language"
        " FROM members m JOIN users u ON u.id = m.user_id WHERE m.workspace_id = ? AND u.is_active = 1",
        (workspace_id,),
    )
