"""SQL for temporary rooms and guest tokens (only sha256 of a guest secret is ever stored)."""

from __future__ import annotations

import sqlite3

from rosetta.store.connections import Conn, Tx


async def insert(tx: Tx, *, id: str, workspace_id: str, channel_id: str, owner_id: str, name: str,
                 external_reference: str | None, expires_at: str, max_expires_at: str, plan: str,
                 now: str) -> None:
    await tx.execute(
        "INSERT INTO temporary_rooms (id, workspace_id, channel_id, owner_id, name, external_reference,"
        " expires_at, max_expires_at, plan, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (id, workspace_id, channel_id, owner_id, name, external_reference, expires_at, max_expires_at, plan, now),
    )


async def by_id(conn: Conn, room_id: str) -> sqlite3.Row | None:
    return await conn.fetch_one("SELECT * FROM temporary_rooms WHERE id = ?", (room_id,))


async def for_owner(conn: Conn, room_id: str, owner_id: str) -> sqlite3.Row | None:
    return await conn.fetch_one("SELECT * FROM temporary_rooms WHERE id = ? AND owner_id = ?", (room_id, owner_id))


# What a developer's room list may be sorted by (?sort=). Room ids are ULIDs: id order is creation order.
ROOM_ORDER = {"created_at": "r.id", "expires_at": "r.expires_at", "name": "r.name COLLATE NOCASE"}


async def page_for_owner(conn: Conn, owner_id: str, offset: int, limit: int, sort: str = "created_at",
                         descending: bool = True) -> tuple[list[sqlite3.Row], int]:
    """One page of the developer's rooms (newest first unless ``sort`` says otherwise) and how many
    there are in all."""
    direction = "DESC" if descending else "ASC"
    rows = await conn.fetch_all(
        "SELECT *, (SELECT COUNT(*) FROM temporary_rooms c WHERE c.owner_id = r.owner_id) AS total"
        f" FROM temporary_rooms r WHERE r.owner_id = ? ORDER BY {ROOM_ORDER[sort]} {direction}, r.id {direction}"
        " LIMIT ? OFFSET ?",
        (owner_id, limit, offset),
    )
    if rows:
        return rows, int(rows[0]["total"])
    total = await conn.fetch_value("SELECT COUNT(*) FROM temporary_rooms WHERE owner_id = ?", (owner_id,))
    return rows, int(total)


async def usage(conn: Conn, owner_id: str, now: str, month_start: str) -> tuple[int, int]:
    """``(active rooms, rooms created since month_start)``; a room past expires_at is no longer active
    even before the sweep marked it."""
    row = await conn.fetch_one(
        "SELECT COALESCE(SUM(status = 'active' AND expires_at > ?), 0) AS active,"
        " COALESCE(SUM(created_at >= ?), 0) AS monthly FROM temporary_rooms WHERE owner_id = ?",
        (now, month_start, owner_id),
    )
    assert row is not None
    return int(row["active"]), int(row["monthly"])


async def extend(tx: Tx, room_id: str, expires_at: str) -> None:
    """Move a room's end; its guests' sessions move with it."""
    await tx.execute(
        "UPDATE temporary_rooms SET expires_at = ?, extension_count = extension_count + 1 WHERE id = ?",
        (expires_at, room_id),
    )
    await tx.execute(
        "UPDATE guest_tokens SET expires_at = ? WHERE room_id = ? AND revoked_at IS NULL", (expires_at, room_id)
    )


async def due_for_expiry(conn: Conn, now: str, limit: int) -> list[sqlite3.Row]:
    return await conn.fetch_all(
        "SELECT * FROM temporary_rooms WHERE status = 'active' AND expires_at <= ? ORDER BY expires_at LIMIT ?",
        (now, limit),
    )


async def mark_expired(tx: Tx, room_id: str, now: str) -> bool:
    """Expire an active room; False when another run already did (the sweep is idempotent)."""
    changed = await tx.execute(
        "UPDATE temporary_rooms SET status = 'expired', expired_at = ? WHERE id = ? AND status = 'active'",
        (now, room_id),
    )
    return changed > 0


async def revoke_guest_tokens(tx: Tx, room_id: str, now: str) -> list[str]:
    rows = await tx.fetch_all(
        "UPDATE guest_tokens SET revoked_at = ? WHERE room_id = ? AND revoked_at IS NULL RETURNING id",
        (now, room_id),
    )
    return [row["id"] for row in rows]


async def due_for_purge(conn: Conn, cutoff: str, limit: int) -> list[sqlite3.Row]:
    """Expired rooms whose grace period ended (expired_at before ``cutoff``)."""
    return await conn.fetch_all(
        "SELECT * FROM temporary_rooms WHERE status = 'expired' AND expired_at <= ? ORDER BY expired_at LIMIT ?",
        (cutoff, limit),
    )


async def soft_delete_files(tx: Tx, room: sqlite3.Row, now: str) -> list[str]:
    """Soft-delete every live file of a room: those attached to its messages and those its guests
    uploaded (staged or not); their storage names, whose bytes go after COMMIT."""
    rows = await tx.fetch_all(
        "UPDATE files SET deleted_at = ? WHERE deleted_at IS NULL AND (id IN (SELECT a.file_id"
        "  FROM message_attachments a JOIN messages m ON m.id = a.message_id WHERE m.channel_id = ?)"
        " OR owner_id IN (SELECT user_id FROM members WHERE workspace_id = ? AND role = 'guest'))"
        " RETURNING storage_name",
        (now, room["channel_id"], room["workspace_id"]),
    )
    return [row["storage_name"] for row in rows]


async def delete_messages(tx: Tx, channel_id: str) -> int:
    return await tx.execute("DELETE FROM messages WHERE channel_id = ?", (channel_id,))


async def delete_guest_tokens(tx: Tx, room_id: str) -> int:
    return await tx.execute("DELETE FROM guest_tokens WHERE room_id = ?", (room_id,))


async def count_guests(tx: Tx, workspace_id: str) -> int:
    row = await tx.fetch_one("SELECT COUNT(*) FROM members WHERE workspace_id = ? AND role = 'guest'", (workspace_id,))
    return int(row[0]) if row else 0


async def delete_guests(tx: Tx, workspace_id: str) -> int:
    """The guest users of a room's workspace; their membership and anything else of theirs cascades.
    A guest user belongs to the one room it joined and exists only for it."""
    return await tx.execute(
        "DELETE FROM users WHERE kind = 'guest' AND id IN"
        " (SELECT user_id FROM members WHERE workspace_id = ? AND role = 'guest')",
        (workspace_id,),
    )


async def mark_purged(tx: Tx, room_id: str, now: str) -> bool:
    changed = await tx.execute(
        "UPDATE temporary_rooms SET status = 'purged', purged_at = ? WHERE id = ? AND status = 'expired'",
        (now, room_id),
    )
    return changed > 0


async def insert_guest_token(tx: Tx, *, id: str, room_id: str, user_id: str, secret_hash: str, expires_at: str,
                             now: str) -> None:
    await tx.execute(
        "INSERT INTO guest_tokens (id, room_id, user_id, secret_hash, expires_at, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (id, room_id, user_id, secret_hash, expires_at, now),
    )


async def guest_token(conn: Conn, token_id: str) -> sqlite3.Row | None:
    """A guest token with its room's state and its user's, in one read (every guest request)."""
    return await conn.fetch_one(
        "SELECT t.id, t.room_id, t.user_id, t.secret_hash, t.revoked_at, r.status AS room_status,"
        " r.expires_at AS room_expires_at, u.is_active"
        " FROM guest_tokens t JOIN temporary_rooms r ON r.id = t.room_id JOIN users u ON u.id = t.user_id"
        " WHERE t.id = ?",
        (token_id,),
    )


async def readers(conn: Conn, room_id: str) -> list[sqlite3.Row]:
    """Who hears a room's own events (audience "room"): its members, the developer and the guests,
    with their reading language. Guests of an ended room are closed out by their dead tokens."""
    return await conn.fetch_all(
        "SELECT m.user_id, COALESCE(m.preferred_language, u.preferred_language) AS language"
        " FROM temporary_rooms r JOIN members m ON m.workspace_id = r.workspace_id JOIN users u ON u.id = m.user_id"
        " WHERE r.id = ? AND u.is_active = 1",
        (room_id,),
    )


async def for_workspace(conn: Conn, workspace_id: str) -> sqlite3.Row | None:
    """The room whose workspace this is (workspace_id is unique and indexed); None for a standard workspace."""
    return await conn.fetch_one("SELECT * FROM temporary_rooms WHERE workspace_id = ?", (workspace_id,))
