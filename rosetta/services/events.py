"""Emitting events: append to the durable log inside the caller's transaction, publish after COMMIT.

Only services call ``emit``; the hub hears of an event only from the on-commit callback, so a
rolled-back change never reaches a client (ARCHITECTURE rule 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rosetta.services.context import Context
from rosetta.store import events as event_store
from rosetta.store import workspaces as workspace_store
from rosetta.store.connections import Tx

EMITTED = "event.emitted"  # ctx.listeners key for in-transaction event hooks
# Events whose data is the message as each reader sees it over REST: the hub renders them from the
# message's row (and translation) per reader language, live, on other workers and in replays alike.
RENDERED = frozenset({"message.created", "message.updated", "message.translated"})
# What the log keeps of a RENDERED event: the message it is about, and the language a translation is in.
# Not the message itself: the hub never reads it back, a deleted message's text would stay in the log
# for the log's retention, and at ~0.6-1 KB an event it was most of what a send or a finished
# translation chunk wrote. The in-transaction hooks (outgoing webhooks, push) get the whole payload.
LOGGED_KEYS = ("id", "language")


@dataclass(frozen=True)
class Event:
    seq: int
    name: str
    audience_kind: str
    audience_id: str
    payload: dict[str, Any]
    created_at: str


async def emit(ctx: Context, tx: Tx, name: str, audience_kind: str, audience_id: str,
               payload: dict[str, Any]) -> Event:
    now = ctx.now()
    seq = await event_store.append(tx, name, audience_kind, audience_id, logged(name, payload), now)
    event = Event(seq, name, audience_kind, audience_id, payload, now)
    await _after_append(ctx, tx, [event])
    return event


async def emit_to_admins(ctx: Context, tx: Tx, name: str, workspace_id: str, payload: dict[str, Any]) -> None:
    """``name`` to each active owner and admin of the workspace, as their own events: what only they may
    see and manage (its webhooks). Whoever is an admin when the change commits hears of it."""
    for user_id in await workspace_store.admin_ids(tx, workspace_id):
        await emit(ctx, tx, name, "user", user_id, payload)


@dataclass(frozen=True)
class Announcement:
    """An event to emit later, its payload already encoded: made before a write unit, emitted in it."""

    name: str
    audience_kind: str
    audience_id: str
    payload: dict[str, Any]
    encoded: str

    @classmethod
    def of(cls, name: str, audience_kind: str, audience_id: str, payload: dict[str, Any]) -> Announcement:
        return cls(name, audience_kind, audience_id, payload, event_store.encode(logged(name, payload)))


def logged(name: str, payload: dict[str, Any]) -> dict[str, Any]:
    """What the log keeps of an event's payload (see LOGGED_KEYS)."""
    if name not in RENDERED:
        return payload
    return {key: payload[key] for key in LOGGED_KEYS if key in payload}


async def emit_many(ctx: Context, tx: Tx, announcements: list[Announcement]) -> list[Event]:
    """``emit`` for many events at once: one log statement, no encoding while the unit holds the writer."""
    now = ctx.now()
    seqs = await event_store.append_many(
        tx, [(a.name, a.audience_kind, a.audience_id, a.encoded) for a in announcements], now)
    events = [Event(seq, a.name, a.audience_kind, a.audience_id, a.payload, now)
              for seq, a in zip(seqs, announcements, strict=True)]
    await _after_append(ctx, tx, events)
    return events


async def _after_append(ctx: Context, tx: Tx, events: list[Event]) -> None:
    # Durable side effects of an event (outgoing webhook deliveries, push) are queued in the SAME
    # transaction by hooks registered under "event.emitted": ``async hook(tx, event)``, SQL only.
    for event in events:
        for hook in ctx.listeners.get(EMITTED, ()):
            await hook(tx, event)
    tx.on_commit(lambda: [ctx.hub.publish(event) for event in events])
