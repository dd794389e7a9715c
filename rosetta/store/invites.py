"""SQL for workspace invites: issue, list, revoke, look up by code, and the guarded use counter."""

from __future__ import annotations

import sqlite3

from rosetta.store.connections import Conn, Tx

INVITE_COLUMNS = "i.id, i.workspace_id, i.code, i.expires_at, i.max_uses, i.uses, i.created_by, i.revoked_at," \
                 " i.created_at"


async def insert(tx: Tx, *, id: str, workspace_id: str, code: str, expires_at: str, max_uses: int | None,
                 created_by: str, now: str) -> None:
    await tx.execute(
        "INSERT INTO invites (id, workspace_id, code, expires_at, max_uses, uses, created_by, created_at)"
        " VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
        (id, workspace_id, code, expires_at, max_uses, created_by, now),
    )


async def by_id(conn: Conn, workspace_id: str, invite_id: str) -> sqlite3.Row | None:
    return await conn.fetch_one(
        f"SELECT {INVITE_COLUMNS} FROM invites i WHERE i.workspace_id = ? AND i.id = ? AND i.revoked_at IS NULL",
        (workspace_id, invite_id),
    )


async def list_for_workspace(conn: Conn, workspace_id: str, limit: int = 500) -> list[sqlite3.Row]:
    """Invites not revoked, newest first (expired and used-up ones stay listed until revoked)."""
    return await conn.fetch_all(
        f"SELECT {INVITE_COLUMNS} FROM invites i WHERE i.workspace_id = ? AND i.revoked_at IS NULL"
        " ORDER BY i.id DESC LIMIT ?",
        (workspace_id, limit),
    )


async def usable_by_code(conn: Conn, code: str, now: str) -> sqlite3.Row | None:
    """An invite that can still be used: not revoked, not expired, not used up; with preview fields."""
    return await conn.fetch_one(
        f"SELECT {INVITE_COLUMNS}, w.name AS workspace_name, w.slug AS workspace_slug,"
        " (SELECT COUNT(*) FROM members c WHERE c.workspace_id = w.id) AS member_count,"
        " u.name AS inviter_name"
        " FROM invites i JOIN workspaces w ON w.id = i.workspace_id JOIN users u ON u.id = i.created_by"
        " WHERE i.code = ? AND i.revoked_at IS NULL AND i.expires_at > ?"
        " AND (i.max_uses IS NULL OR i.uses < i.max_uses)",
        (code, now),
    )


async def take_use(tx: Tx, invite_id: str, now: str) -> bool:
    """Count one use if one is left; False when the invite was used up meanwhile (checked atomically)."""
    changed = await tx.execute(
        "UPDATE invites SET uses = uses + 1 WHERE id = ? AND revoked_at IS NULL AND expires_at > ?"
        " AND (max_uses IS NULL OR uses < max_uses)",
        (invite_id, now),
    )
    return changed == 1


async def revoke(tx: Tx, invite_id: str, now: str) -> int:
    return await tx.execute("UPDATE invites SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, invite_id))


async def delete_dead(tx: Tx, expired_before: str) -> int:
    """Cleanup: invites an admin revoked (no list shows them, no code of theirs is accepted), and those
    that expired before ``expired_before`` (the admin's list shows an expired invite until then)."""
    return await tx.execute("DELETE FROM invites WHERE revoked_at IS NOT NULL OR expires_at < ?", (expired_before,))
