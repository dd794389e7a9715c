"""SQL for messages (channel and direct), with their author joined in for rendering."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from rosetta.store.connections import Conn, Tx

MESSAGE_SELECT = (
    "SELECT m.*, COALESCE(m.author_name, u.name) AS author_display_name,"
    " COALESCE(m.author_avatar_url, u.avatar_url) AS author_display_avatar"
    " FROM messages m LEFT JOIN users u ON u.id = m.author_id"
)


async def insert(tx: Tx, *, id: str, workspace_id: str | None, channel_id: str | None,
                 conversation_id: str | None, author_kind: str, author_id: str, author_name: str | None,
                 author_avatar_url: str | None, content: str, source_language: str, skip_translation: bool,
                 parent_message_id: str | None, now: str) -> sqlite3.Row:
    """Insert and return the stored row (RETURNING: no second read of it)."""
    row = await tx.fetch_one(
        "INSERT INTO messages (id, workspace_id, channel_id, conversation_id, author_kind, author_id,"
        " author_name, author_avatar_url, original_content, source_language, skip_translation,"
        " parent_message_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " RETURNING *",
        (id, workspace_id, channel_id, conversation_id, author_kind, author_id, author_name, author_avatar_url,
         content, source_language, int(skip_translation), parent_message_id, now, now),
    )
    assert row is not None
    return row


async def by_id(conn: Conn, message_id: str) -> sqlite3.Row | None:
    return await conn.fetch_one(f"{MESSAGE_SELECT} WHERE m.id = ?", (message_id,))


IDS_PER_QUERY = 500  # well under SQLite's bound-parameter limit


async def by_ids(conn: Conn, message_ids: Sequence[str]) -> list[sqlite3.Row]:
    """Messages as the views render them, for a batch of ids: one query per 500."""
    ids = list(dict.fromkeys(message_ids))
    rows: list[sqlite3.Row] = []
    for start in range(0, len(ids), IDS_PER_QUERY):
        chunk = ids[start:start + IDS_PER_QUERY]
        rows += await conn.fetch_all(f"{MESSAGE_SELECT} WHERE m.id IN ({','.join('?' * len(chunk))})", chunk)
    return rows


async def page(conn: Conn, *, channel_id: str | None = None, conversation_id: str | None = None,
               before: str | None = None, after: str | None = None, limit: int = 50) -> list[sqlite3.Row]:
    """Up to ``limit`` messages newest first; ``after`` takes the oldest ones after that id."""
    column, value = ("m.channel_id", channel_id) if channel_id else ("m.conversation_id", conversation_id)
    if after is not None:
        rows = await conn.fetch_all(
            f"{MESSAGE_SELECT} WHERE {column} = ? AND m.id > ? ORDER BY m.id ASC LIMIT ?", (value, after, limit)
        )
        return rows[::-1]
    if before is not None:
        return await conn.fetch_all(
            f"{MESSAGE_SELECT} WHERE {column} = ? AND m.id < ? ORDER BY m.id DESC LIMIT ?", (value, before, limit)
        )
    return await conn.fetch_all(f"{MESSAGE_SELECT} WHERE {column} = ? ORDER BY m.id DESC LIMIT ?", (value, limit))


async def exists_beyond(conn: Conn, *, channel_id: str | None, conversation_id: str | None, older_than: str | None,
                        newer_than: str | None) -> bool:
    column, value = ("channel_id", channel_id) if channel_id else ("conversation_id", conversation_id)
    if older_than is not None:
        sql, bound = f"SELECT 1 FROM messages WHERE {column} = ? AND id < ? LIMIT 1", older_than
    else:
        sql, bound = f"SELECT 1 FROM messages WHERE {column} = ? AND id > ? LIMIT 1", newer_than
    return await conn.fetch_one(sql, (value, bound)) is not None


async def update_content(tx: Tx, message_id: str, content: str, source_language: str, now: str) -> None:
    await tx.execute(
        "UPDATE messages SET original_content = ?, source_language = ?, updated_at = ? WHERE id = ?",
        (content, source_language, now, message_id),
    )


async def soft_delete(tx: Tx, message_id: str, now: str) -> None:
    await tx.execute(
        "UPDATE messages SET original_content = '', deleted_at = ?, updated_at = ? WHERE id = ?",
        (now, now, message_id),
    )


async def touch_conversation(tx: Tx, conversation_id: str, now: str) -> None:
    await tx.execute("UPDATE direct_conversations SET last_message_at = ? WHERE id = ?", (now, conversation_id))
