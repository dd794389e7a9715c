"""SQL the realtime gateway asks when it delivers: who reads an audience, in which language.

Every query answers "exactly who may see this right now" from committed rows, so a removed
member, a deactivated user or a left channel stops receiving with the next event. Each returns
(user_id, language) rows; ``language`` is the reader's language (member override, else user's).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from rosetta.store.connections import Conn


async def user_reader(conn: Conn, user_id: str) -> list[sqlite3.Row]:
    return await conn.fetch_all(
        "SELECT id AS user_id, preferred_language AS language FROM users WHERE id = ? AND is_active = 1",
        (user_id,),
    )


async def log_bounds(conn: Conn) -> tuple[int, int]:
    """(oldest retained seq or 0, highest seq ever issued): AUTOINCREMENT remembers it after a trim."""
    row = await conn.fetch_one(
        "SELECT (SELECT COALESCE(MIN(seq), 0) FROM events),"
        " (SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0))"
    )
    assert row is not None
    return int(row[0]), int(row[1])


async def shared_memberships(conn: Conn, user_ids: Sequence[str]) -> list[sqlite3.Row]:
    """(workspace_id, user_id) for every active member of every workspace one of ``user_ids`` is in.

    Presence asks once per flush: each workspace's membership comes back once, however many of its
    members changed. A temporary room is its own workspace, so a guest's peers are their room's.
    """
    if not user_ids:
        return []
    marks = ",".join("?" * len(user_ids))
    return await conn.fetch_all(
        "SELECT m.workspace_id, m.user_id FROM members m JOIN users u ON u.id = m.user_id"
        f" WHERE u.is_active = 1 AND m.workspace_id IN (SELECT workspace_id FROM members WHERE user_id IN ({marks}))"
        " ORDER BY m.workspace_id",
        tuple(user_ids),
    )


async def credential_expiries(conn: Conn, token_ids: Sequence[str], session_ids: Sequence[str]
                              ) -> tuple[dict[str, str | None], dict[str, str]]:
    """Live bearer tokens' and web sessions' ``expires_at`` among those asked.

    Revoked or deleted ones, and those of deactivated users, are absent: they no longer resolve either.
    """
    tokens: dict[str, str | None] = {}
    if token_ids:
        marks = ",".join("?" * len(token_ids))
        rows = await conn.fetch_all(
            "SELECT t.id, t.expires_at FROM access_tokens t JOIN users u ON u.id = t.user_id"
            f" WHERE t.id IN ({marks}) AND t.revoked_at IS NULL AND u.is_active = 1",
            tuple(token_ids),
        )
        tokens = {row[0]: row[1] for row in rows}
    sessions: dict[str, str] = {}
    if session_ids:
        marks = ",".join("?" * len(session_ids))
        rows = await conn.fetch_all(
            "SELECT s.id, s.expires_at FROM web_sessions s JOIN users u ON u.id = s.user_id"
            f" WHERE s.id IN ({marks}) AND u.is_active = 1",
            tuple(session_ids),
        )
        sessions = {row[0]: row[1] for row in rows}
    return tokens, sessions


async def message_place(conn: Conn, message_id: str) -> sqlite3.Row | None:
    return await conn.fetch_one(
        "SELECT id, channel_id, conversation_id, deleted_at FROM messages WHERE id = ?", (message_id,)
    )
