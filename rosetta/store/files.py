"""SQL for files and message attachments.

"Live" means not soft-deleted. A staged file is live, unclaimed and not past ``expires_at``; a claimed
file is live with ``claimed_at`` set. Functions take the connection or transaction first.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from rosetta.store.connections import Conn, Tx

SORTABLE = ("created_at", "size", "client_name")
SWEEP_BATCH = 500  # rows per sweep unit: keeps one write unit short


async def insert(tx: Tx, *, id: str, owner_id: str, owner_kind: str, client_name: str, mime_type: str, size: int,
                 sha256: str, storage_name: str, visibility: str, width: int | None, height: int | None,
                 has_thumbnail: bool, expires_at: str, now: str) -> None:
    await tx.execute(
        "INSERT INTO files (id, owner_id, owner_kind, client_name, mime_type, size, sha256, storage_name, visibility,"
        " width, height, has_thumbnail, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (id, owner_id, owner_kind, client_name, mime_type, size, sha256, storage_name, visibility, width, height,
         int(has_thumbnail), expires_at, now),
    )


async def bytes_used(conn: Conn, owner_id: str) -> int:
    """What an owner's live files take, for the quota."""
    return int(await conn.fetch_value(
        "SELECT COALESCE(SUM(size), 0) FROM files WHERE owner_id = ? AND deleted_at IS NULL", (owner_id,)) or 0)


async def bytes_used_by_room_guests(conn: Conn, room_id: str) -> int:
    """What every guest of a temporary room has stored together (guests share one quota)."""
    return int(await conn.fetch_value(
        "SELECT COALESCE(SUM(size), 0) FROM files WHERE deleted_at IS NULL"
        " AND owner_id IN (SELECT user_id FROM guest_tokens WHERE room_id = ?)", (room_id,)) or 0)


async def live_by_id(conn: Conn, file_id: str) -> sqlite3.Row | None:
    return await conn.fetch_one("SELECT * FROM files WHERE id = ? AND deleted_at IS NULL", (file_id,))


async def attachable(conn: Conn, owner_id: str, file_ids: Sequence[str], now: str) -> set[str]:
    """Which of ``file_ids`` the owner may attach: their own live files, claimed or still staged."""
    if not file_ids:
        return set()
    marks = ",".join("?" * len(file_ids))
    rows = await conn.fetch_all(
        f"SELECT id FROM files WHERE id IN ({marks}) AND owner_id = ? AND deleted_at IS NULL"
        " AND (claimed_at IS NOT NULL OR expires_at > ?)",
        (*file_ids, owner_id, now),
    )
    return {row["id"] for row in rows}


async def attach(tx: Tx, message_id: str, attachments: Sequence[tuple[str, str]], now: str) -> None:
    """Link ``(attachment_id, file_id)`` pairs to a message in order and mark the files claimed."""
    await tx.executemany(
        "INSERT INTO message_attachments (id, message_id, file_id, position) VALUES (?, ?, ?, ?)",
        [(attachment_id, message_id, file_id, position) for position, (attachment_id, file_id)
         in enumerate(attachments)],
    )
    marks = ",".join("?" * len(attachments))
    await tx.execute(
        f"UPDATE files SET claimed_at = COALESCE(claimed_at, ?), expires_at = NULL WHERE id IN ({marks})",
        (now, *[file_id for _, file_id in attachments]),
    )


ATTACHMENT_FROM = (
    " FROM message_attachments a JOIN files f ON f.id = a.file_id JOIN messages m ON m.id = a.message_id"
)
ATTACHMENT_COLUMNS = (
    "a.id AS attachment_id, a.message_id, a.position, f.id AS file_id, f.client_name, f.mime_type, f.size,"
    " f.width, f.height, f.has_thumbnail, f.sha256, f.storage_name, f.visibility,"
    " m.workspace_id, m.channel_id, m.conversation_id"
)


async def for_messages(conn: Conn, message_ids: Sequence[str]) -> list[sqlite3.Row]:
    """Every live attachment of these messages, in one query, in message and position order."""
    if not message_ids:
        return []
    marks = ",".join("?" * len(message_ids))
    return await conn.fetch_all(
        f"SELECT {ATTACHMENT_COLUMNS}{ATTACHMENT_FROM} WHERE a.message_id IN ({marks}) AND f.deleted_at IS NULL"
        " ORDER BY a.message_id, a.position",
        tuple(message_ids),
    )


async def attachment(conn: Conn, attachment_id: str) -> sqlite3.Row | None:
    """A live attachment of a live message, with the message's place."""
    return await conn.fetch_one(
        f"SELECT {ATTACHMENT_COLUMNS}{ATTACHMENT_FROM}"
        " WHERE a.id = ? AND f.deleted_at IS NULL AND m.deleted_at IS NULL",
        (attachment_id,),
    )


async def is_participant(conn: Conn, conversation_id: str, user_id: str) -> bool:
    return await conn.fetch_one(
        "SELECT 1 FROM direct_participants WHERE conversation_id = ? AND user_id = ?", (conversation_id, user_id)
    ) is not None


async def soft_delete(tx: Tx, file_id: str, owner_id: str, now: str) -> str | None:
    """Soft-delete an owner's live file; its storage name, or None when there was none to delete."""
    row = await tx.fetch_one(
        "UPDATE files SET deleted_at = ? WHERE id = ? AND owner_id = ? AND deleted_at IS NULL RETURNING storage_name",
        (now, file_id, owner_id),
    )
    return None if row is None else row["storage_name"]


async def soft_delete_expired(tx: Tx, now: str, limit: int = SWEEP_BATCH) -> list[str]:
    """Soft-delete up to ``limit`` staged files past their expiry; their storage names.

    The conditions are checked in this statement, inside the writer: a file claimed a moment ago is
    not touched.
    """
    rows = await tx.fetch_all(
        "UPDATE files SET deleted_at = ? WHERE id IN (SELECT id FROM files WHERE claimed_at IS NULL"
        " AND deleted_at IS NULL AND expires_at <= ? ORDER BY expires_at LIMIT ?) RETURNING storage_name",
        (now, now, limit),
    )
    return [row["storage_name"] for row in rows]


async def live_storage_names(conn: Conn) -> set[str]:
    rows = await conn.fetch_all("SELECT storage_name FROM files WHERE deleted_at IS NULL")
    return {row["storage_name"] for row in rows}


async def soft_delete_by_storage_names(tx: Tx, names: Sequence[str], now: str) -> int:
    await tx.executemany("UPDATE files SET deleted_at = ? WHERE storage_name = ? AND deleted_at IS NULL",
                         [(now, name) for name in names])
    return len(names)


async def list_for_owner(conn: Conn, owner_id: str, *, claimed: bool, visibility: str | None, q: str | None,
                         sort: str, descending: bool, limit: int, offset: int,
                         now: str) -> tuple[list[sqlite3.Row], int]:
    """A user's own uploads (guest uploads never), filtered, sorted and paged; and the total."""
    assert sort in SORTABLE
    where = ["owner_id = ?", "owner_kind = 'user'", "deleted_at IS NULL"]
    params: list[Any] = [owner_id]
    if claimed:
        where.append("claimed_at IS NOT NULL")
    else:
        where.append("claimed_at IS NULL AND expires_at > ?")  # staged and not yet expired
        params.append(now)
    if visibility is not None:
        where.append("visibility = ?")
        params.append(visibility)
    if q:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append("client_name LIKE ? ESCAPE '\\'")
        params.append(f"%{escaped}%")
    clause = " AND ".join(where)
    direction = "DESC" if descending else "ASC"
    order = f"{sort} COLLATE NOCASE {direction}" if sort == "client_name" else f"{sort} {direction}"
    total = int(await conn.fetch_value(f"SELECT COUNT(*) FROM files WHERE {clause}", params) or 0)
    rows = await conn.fetch_all(
        f"SELECT * FROM files WHERE {clause} ORDER BY {order}, id {direction} LIMIT ? OFFSET ?",
        (*params, limit, offset),
    )
    return rows, total
