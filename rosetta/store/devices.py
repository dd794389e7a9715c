"""SQL for push devices. The push token is the identity (unique by sha256); it is never listed."""

from __future__ import annotations

import sqlite3

from rosetta.store.connections import Conn, Tx

# Columns a listing may show: the token and its hash stay inside the store and the push sender.
PUBLIC_COLUMNS = "id, user_id, platform, provider, device_name, app_version, device_id, last_used_at, created_at"
SORTABLE = ("last_used_at", "created_at")


async def by_token_hash(conn: Conn, token_hash: str) -> sqlite3.Row | None:
    return await conn.fetch_one("SELECT * FROM devices WHERE push_token_hash = ?", (token_hash,))


async def insert(tx: Tx, *, id: str, user_id: str, platform: str, provider: str, token_hash: str, token: str,
                 device_name: str | None, app_version: str | None, device_id: str | None, now: str) -> None:
    await tx.execute(
        "INSERT INTO devices (id, user_id, platform, provider, push_token_hash, push_token, device_name,"
        " app_version, device_id, last_used_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (id, user_id, platform, provider, token_hash, token, device_name, app_version, device_id, now, now, now),
    )


async def reassign(tx: Tx, device_id: str, *, user_id: str, platform: str, provider: str, device_name: str | None,
                   app_version: str | None, hardware_id: str | None, now: str) -> None:
    """A known token registered again (maybe by another account): it now belongs to ``user_id``."""
    await tx.execute(
        "UPDATE devices SET user_id = ?, platform = ?, provider = ?, device_name = ?, app_version = ?,"
        " device_id = ?, last_used_at = ?, updated_at = ? WHERE id = ?",
        (user_id, platform, provider, device_name, app_version, hardware_id, now, now, device_id),
    )


async def keep_most_recent(tx: Tx, user_id: str, keep: int) -> int:
    """Delete a user's devices beyond the ``keep`` most recently used (their queued pushes go too)."""
    return await tx.execute(
        "DELETE FROM devices WHERE user_id = ? AND id NOT IN ("
        " SELECT id FROM devices WHERE user_id = ? ORDER BY last_used_at DESC, id DESC LIMIT ?)",
        (user_id, user_id, keep),
    )


async def public_by_id(conn: Conn, device_id: str) -> sqlite3.Row | None:
    return await conn.fetch_one(f"SELECT {PUBLIC_COLUMNS} FROM devices WHERE id = ?", (device_id,))


async def owned(conn: Conn, device_id: str, user_id: str) -> sqlite3.Row | None:
    return await conn.fetch_one(f"SELECT {PUBLIC_COLUMNS} FROM devices WHERE id = ? AND user_id = ?",
                                (device_id, user_id))


async def delete(tx: Tx, device_id: str) -> int:
    return await tx.execute("DELETE FROM devices WHERE id = ?", (device_id,))


async def page_for_user(conn: Conn, user_id: str, *, provider: str | None, sort: str, descending: bool,
                        offset: int, limit: int) -> tuple[list[sqlite3.Row], int]:
    assert sort in SORTABLE  # the column name is interpolated: only the listed ones
    where, params = "user_id = ?", [user_id]
    if provider is not None:
        where += " AND provider = ?"
        params.append(provider)
    order = "DESC" if descending else "ASC"
    total = int(await conn.fetch_value(f"SELECT COUNT(*) FROM devices WHERE {where}", params))
    rows = await conn.fetch_all(
        f"SELECT {PUBLIC_COLUMNS} FROM devices WHERE {where} ORDER BY {sort} {order}, id {order} LIMIT ? OFFSET ?",
        (*params, limit, offset),
    )
    return rows, total
