"""SQL for direct conversations between two users and their participants."""

from __future__ import annotations

import sqlite3

from rosetta.store.connections import Conn, Tx

CONVERSATION_COLUMNS = "d.id, d.pair_key, d.last_message_at, d.created_at"


def pair_key(user_a: str, user_b: str) -> str:
    low, high = sorted((user_a, user_b))
    return f"{low}:{high}"


async def by_pair(conn: Conn, key: str) -> sqlite3.Row | None:
    return await conn.fetch_one(f"SELECT {CONVERSATION_COLUMNS} FROM direct_conversations d WHERE d.pair_key = ?",
                                (key,))


async def insert(tx: Tx, *, id: str, key: str, user_ids: tuple[str, str], now: str) -> None:
    await tx.execute("INSERT INTO direct_conversations (id, pair_key, created_at) VALUES (?, ?, ?)", (id, key, now))
    await tx.executemany("INSERT INTO direct_participants (conversation_id, user_id) VALUES (?, ?)",
                         [(id, user_id) for user_id in user_ids])


async def for_participant(conn: Conn, conversation_id: str, user_id: str) -> sqlite3.Row | None:
    """The conversation when ``user_id`` takes part in it, else None."""
    return await conn.fetch_one(
        f"SELECT {CONVERSATION_COLUMNS} FROM direct_conversations d"
        " JOIN direct_participants p ON p.conversation_id = d.id AND p.user_id = ? WHERE d.id = ?",
        (user_id, conversation_id),
    )


async def list_for_user(conn: Conn, user_id: str, limit: int = 500) -> list[sqlite3.Row]:
    """The user's conversations, most recently active first (never-used ones by creation)."""
    return await conn.fetch_all(
        f"SELECT {CONVERSATION_COLUMNS} FROM direct_conversations d"
        " JOIN direct_participants p ON p.conversation_id = d.id AND p.user_id = ?"
        " ORDER BY COALESCE(d.last_message_at, d.created_at) DESC, d.id DESC LIMIT ?",
        (user_id, limit),
    )


async def participants(conn: Conn, conversation_ids: list[str]) -> list[sqlite3.Row]:
    """Participants (public user fields) of the given conversations, with their conversation id."""
    if not conversation_ids:
        return []
    marks = ", ".join("?" for _ in conversation_ids)
    return await conn.fetch_all(
        "SELECT p.conversation_id, u.id, u.name, u.avatar_url, u.preferred_language FROM direct_participants p"
        f" JOIN users u ON u.id = p.user_id WHERE p.conversation_id IN ({marks}) ORDER BY u.id",
        conversation_ids,
    )


async def readers(conn: Conn, conversation_id: str) -> list[sqlite3.Row]:
    """Who reads a conversation: its active participants, each in their own language (no workspace)."""
    return await conn.fetch_all(
        "SELECT p.user_id, u.preferred_language AS language FROM direct_participants p"
        " JOIN users u ON u.id = p.user_id WHERE p.conversation_id = ? AND u.is_active = 1",
        (conversation_id,),
    )
