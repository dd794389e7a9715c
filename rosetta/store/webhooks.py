"""SQL for incoming webhooks, outgoing webhooks and the outgoing delivery outbox."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from rosetta.store.connections import Conn, Tx

# Incoming webhooks -------------------------------------------------------------------------------


async def insert(tx: Tx, *, id: str, workspace_id: str, name: str, default_channel_id: str | None,
                 secret_hash: str, now: str) -> None:
    await tx.execute(
        "INSERT INTO webhooks (id, workspace_id, name, default_channel_id, secret_hash, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (id, workspace_id, name, default_channel_id, secret_hash, now, now),
    )


async def by_id(conn: Conn, webhook_id: str) -> sqlite3.Row | None:
    """The webhook, deleted or not (callers decide: a deleted one is 404)."""
    return await conn.fetch_one("SELECT * FROM webhooks WHERE id = ?", (webhook_id,))


async def by_secret_hash(conn: Conn, secret_hash: str) -> sqlite3.Row | None:
    return await conn.fetch_one(
        "SELECT * FROM webhooks WHERE secret_hash = ? AND deleted_at IS NULL", (secret_hash,)
    )


async def in_workspace(conn: Conn, workspace_id: str, webhook_id: str) -> sqlite3.Row | None:
    return await conn.fetch_one(
        "SELECT * FROM webhooks WHERE id = ? AND workspace_id = ? AND deleted_at IS NULL", (webhook_id, workspace_id)
    )


async def list_for_workspace(conn: Conn, workspace_id: str, limit: int = 500) -> list[sqlite3.Row]:
    return await conn.fetch_all(
        "SELECT * FROM webhooks WHERE workspace_id = ? AND deleted_at IS NULL ORDER BY id LIMIT ?",
        (workspace_id, limit),
    )


async def update(tx: Tx, webhook_id: str, now: str, **changes: Any) -> None:
    """Set the given columns (names come from the service, never from input)."""
    columns = ", ".join(f"{name} = ?" for name in changes)
    await tx.execute(f"UPDATE webhooks SET {columns}, updated_at = ? WHERE id = ?",
                     (*changes.values(), now, webhook_id))


async def soft_delete(tx: Tx, webhook_id: str, now: str) -> None:
    await tx.execute("UPDATE webhooks SET deleted_at = ?, is_active = 0, updated_at = ? WHERE id = ?",
                     (now, now, webhook_id))


async def touch(tx: Tx, webhook_id: str, now: str) -> None:
    await tx.execute("UPDATE webhooks SET last_used_at = ? WHERE id = ?", (now, webhook_id))


async def channel_in_workspace(conn: Conn, workspace_id: str, channel_id: str) -> sqlite3.Row | None:
    return await conn.fetch_one("SELECT * FROM channels WHERE id = ? AND workspace_id = ?",
                                (channel_id, workspace_id))


async def channel_by_reference(conn: Conn, workspace_id: str, reference: str) -> sqlite3.Row | None:
    """A channel of the workspace named by slug, else by name (case-insensitive), as Slack payloads do."""
    return await conn.fetch_one(
        "SELECT * FROM channels WHERE workspace_id = ? AND (slug = ? OR lower(name) = lower(?))"
        " ORDER BY slug = ? DESC, id LIMIT 1",
        (workspace_id, reference.lower(), reference, reference.lower()),
    )


# Outgoing webhooks -------------------------------------------------------------------------------


async def insert_outgoing(tx: Tx, *, id: str, workspace_id: str, name: str, url: str, event_types: list[str],
                          secret: str, created_by: str, now: str) -> None:
    await tx.execute(
        "INSERT INTO outgoing_webhooks (id, workspace_id, name, url, event_types, secret, created_by,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (id, workspace_id, name, url, json.dumps(event_types), secret, created_by, now, now),
    )


async def outgoing_in_workspace(conn: Conn, workspace_id: str, hook_id: str) -> sqlite3.Row | None:
    return await conn.fetch_one("SELECT * FROM outgoing_webhooks WHERE id = ? AND workspace_id = ?",
                                (hook_id, workspace_id))


async def outgoing_for_workspace(conn: Conn, workspace_id: str, limit: int = 500) -> list[sqlite3.Row]:
    return await conn.fetch_all(
        "SELECT * FROM outgoing_webhooks WHERE workspace_id = ? ORDER BY id LIMIT ?", (workspace_id, limit)
    )


async def active_outgoing(conn: Conn, workspace_id: str) -> list[sqlite3.Row]:
    return await conn.fetch_all(
        "SELECT id, event_types FROM outgoing_webhooks WHERE workspace_id = ? AND is_active = 1", (workspace_id,)
    )


async def workspaces_with_outgoing(conn: Conn) -> set[str]:
    rows = await conn.fetch_all("SELECT DISTINCT workspace_id FROM outgoing_webhooks WHERE is_active = 1")
    return {row[0] for row in rows}


async def update_outgoing(tx: Tx, hook_id: str, now: str, **changes: Any) -> None:
    if "event_types" in changes:
        changes["event_types"] = json.dumps(changes["event_types"])
    columns = ", ".join(f"{name} = ?" for name in changes)
    await tx.execute(f"UPDATE outgoing_webhooks SET {columns}, updated_at = ? WHERE id = ?",
                     (*changes.values(), now, hook_id))


async def delete_outgoing(tx: Tx, hook_id: str) -> None:
    await tx.execute("DELETE FROM outgoing_webhooks WHERE id = ?", (hook_id,))


async def channel_workspace(conn: Conn, channel_id: str) -> str | None:
    return await conn.fetch_value("SELECT workspace_id FROM channels WHERE id = ?", (channel_id,))


# Deliveries --------------------------------------------------------------------------------------


async def enqueue_deliveries(tx: Tx, rows: Sequence[tuple[str, str, str, int, str | None, str, str, str]]) -> None:
    """Rows of (id, outgoing_webhook_id, event_name, event_seq, message_id, body, next_attempt_at, created_at);
    message_id for the events that carry a message's text, else None."""
    await tx.executemany(
        "INSERT INTO webhook_deliveries (id, outgoing_webhook_id, event_name, event_seq, message_id, body,"
        " next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


async def due_deliveries(conn: Conn, now: str, limit: int) -> list[sqlite3.Row]:
    return await conn.fetch_all(
        "SELECT d.*, o.url, o.secret, o.is_active FROM webhook_deliveries d"
        " JOIN outgoing_webhooks o ON o.id = d.outgoing_webhook_id"
        " WHERE d.status = 'pending' AND d.next_attempt_at <= ? ORDER BY d.next_attempt_at, d.id LIMIT ?",
        (now, limit),
    )


async def finish_delivery(tx: Tx, delivery_id: str, *, status: str, attempts: int, next_attempt_at: str,
                          last_error: str | None, response_status: int | None, finished_at: str | None) -> None:
    """Record a try; a delivery that ended (delivered or failed) drops its body: nothing sends or shows it
    again, and a message's text should not outlive the message in an outbox kept for a week."""
    await tx.execute(
        "UPDATE webhook_deliveries SET status = ?, attempts = ?, next_attempt_at = ?, last_error = ?,"
        " response_status = ?, finished_at = ?, body = CASE WHEN ? = 'pending' THEN body ELSE '' END WHERE id = ?",
        (status, attempts, next_attempt_at, last_error, response_status, finished_at, status, delivery_id),
    )


# A pending delivery carrying the text of a message that was deleted ends failed, body dropped: the text
# does not leave the server after its author (or a moderator, or the channel's deletion) removed it.
_CANCEL_PENDING = (
    "UPDATE webhook_deliveries SET status = 'failed', body = '', finished_at = ?,"
    " last_error = 'the message was deleted before it was delivered' WHERE status = 'pending' AND "
)


async def cancel_for_deleted_message(tx: Tx, message_id: str, now: str) -> int:
    return await tx.execute(_CANCEL_PENDING + "message_id = ?", (now, message_id))


async def cancel_for_gone_messages(tx: Tx, now: str) -> int:
    """Those whose message no longer exists at all (its channel was deleted, and the messages with it)."""
    return await tx.execute(
        _CANCEL_PENDING
        + "message_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = webhook_deliveries.message_id)",
        (now,),
    )


async def deliveries_for(conn: Conn, hook_id: str, limit: int) -> list[sqlite3.Row]:
    return await conn.fetch_all(
        "SELECT * FROM webhook_deliveries WHERE outgoing_webhook_id = ? ORDER BY id DESC LIMIT ?", (hook_id, limit)
    )


async def trim_deliveries(tx: Tx, chunk: int, *, cutoff: str) -> int:
    """Forget up to ``chunk`` finished deliveries older than ``cutoff`` (the outbox is not an archive)."""
    return await tx.execute(
        "DELETE FROM webhook_deliveries WHERE id IN"
        " (SELECT id FROM webhook_deliveries WHERE status != 'pending' AND finished_at < ? LIMIT ?)",
        (cutoff, chunk),
    )
