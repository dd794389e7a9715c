"""SQL for the durable event log (seq, name, audience, payload)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from rosetta.store.connections import Conn, Tx


async def append(tx: Tx, name: str, audience_kind: str, audience_id: str, payload: dict[str, Any],
                 now: str) -> int:
    row = await tx.fetch_one(
        "INSERT INTO events (name, audience_kind, audience_id, payload, created_at) VALUES (?, ?, ?, ?, ?)"
        " RETURNING seq",
        (name, audience_kind, audience_id, encode(payload), now),
    )
    assert row is not None
    return int(row[0])


def encode(payload: dict[str, Any]) -> str:
    """An event payload as the log stores it."""
    return json.dumps(payload, separators=(",", ":"))


async def append_many(tx: Tx, rows: list[tuple[str, str, str, str]], now: str) -> list[int]:
    """Append ``(name, audience_kind, audience_id, encoded payload)`` rows in ONE statement; their seqs in order.

    One statement however many events (the unit holds the writer), and the payloads come encoded: the
    caller encodes them before its unit. Rows of one INSERT take increasing AUTOINCREMENT seqs in
    VALUES order; RETURNING lists them in no promised order, so they are sorted.
    """
    if not rows:
        return []
    values = ", ".join("(?, ?, ?, ?, ?)" for _ in rows)
    params: list[Any] = []
    for row in rows:
        params += [*row, now]
    found = await tx.fetch_all(
        f"INSERT INTO events (name, audience_kind, audience_id, payload, created_at) VALUES {values} RETURNING seq",
        params,
    )
    return sorted(int(row[0]) for row in found)


async def after(conn: Conn, seq: int, limit: int) -> list[sqlite3.Row]:
    return await conn.fetch_all("SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit))


async def trim_chunk(tx: Tx, chunk: int, *, cutoff: str) -> int:
    """Delete up to ``chunk`` events created before ``cutoff`` (found through events_created)."""
    return await tx.execute(
        "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE created_at < ? LIMIT ?)", (cutoff, chunk))
