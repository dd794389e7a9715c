"""Outgoing webhooks: admins subscribe a URL to a workspace's event types; a durable outbox delivers.

Owns the subscription life cycle, the enqueueing hook and the ``webhooks.deliver`` job. The hook runs
inside the transaction that emits the event (``services.events`` ``event.emitted`` hooks), so a
delivery row exists exactly when the event committed. Each call is signed:
``X-Rosetta-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`` with
``X-Rosetta-Timestamp: <unix seconds>``; receivers recompute it and reject stale timestamps.
Failures retry with exponential backoff up to ``webhooks.max_attempts``; the SSRF guard refuses
private targets (a refusal is final: retrying cannot make the address public).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import sqlite3
from datetime import timedelta
from functools import partial
from typing import Any

from rosetta.backoff import doubling_s
from rosetta.clock import iso
from rosetta.errors import Invalid, NotFound
from rosetta.ids import looks_like_id, new_id, new_secret
from rosetta.services.auth import Principal
from rosetta.services.context import Context
from rosetta.services.events import EMITTED, RENDERED, Event, emit_to_admins
from rosetta.services.fresh import ANY_WRITE, uncached
from rosetta.services.ssrf import Refused, guarded_fetch, literal_refusal
from rosetta.services.trimming import delete_in_chunks
from rosetta.services.workspaces import WorkspaceService
from rosetta.store import webhooks as store
from rosetta.store.connections import Tx

log = logging.getLogger("rosetta.webhooks")

# Event types a subscription may name: those a workspace's or channel's members see; "*" means all of them.
EVENT_TYPES = (
    "*", "message.created", "message.updated", "message.deleted", "message.translated",
    "channel.created", "channel.updated", "channel.deleted", "member.joined", "member.updated", "member.removed",
    "invite.created", "invite.revoked", "workspace.glossary_updated",
)
BATCH = 50  # deliveries per job run
CONCURRENCY = 4  # calls in flight per run: a slow receiver cannot hold up the rest for long
BACKOFF_BASE_S = 30
BACKOFF_CAP_S = 6 * 3600
KEEP_FINISHED_DAYS = 7


def backoff_s(attempts: int) -> float:
    """Seconds before try number ``attempts + 1``: 30 s, 60 s, 120 s, … capped at 6 h."""
    return doubling_s(attempts, BACKOFF_BASE_S, BACKOFF_CAP_S)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def view(row: sqlite3.Row, secret: str | None = None) -> dict[str, Any]:
    data = {
        "id": row["id"],
        "workspace_id": row["workspace_id"],
        "name": row["name"],
        "url": row["url"],
        "event_types": json.loads(row["event_types"]),
        "is_active": bool(row["is_active"]),
        "created_by": row["created_by"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }
    if secret is not None:
        data["secret"] = secret
    return data


def delivery_view(row: sqlite3.Row) -> dict[str, Any]:
    return {key: row[key] for key in ("id", "event_name", "event_seq", "status", "attempts", "next_attempt_at",
                                      "last_error", "response_status", "created_at", "finished_at")}


class OutgoingService:
    def __init__(self, ctx: Context, workspaces: WorkspaceService) -> None:
        self.ctx = ctx
        self.workspaces = workspaces
        # Workspaces with an active subscription, with the write generation they were read at: most
        # events skip the hook's SQL entirely (a query under the writer lock would tax every message).
        # A subscription's change moves the generation, in whichever worker process it committed.
        self._active: tuple[tuple[int, int], set[str]] | None = None
        ctx.listeners.setdefault(EMITTED, []).append(self.on_event)

    # Management ------------------------------------------------------------------------------

    def check_url(self, url: str) -> None:
        problem = literal_refusal(url, self.ctx.config.webhooks.allowed_hosts)
        if problem:
            raise Invalid.one("url", f"The url is not allowed: {problem}.")

    def _forget_active(self) -> None:
        """A subscription changes in this unit: later units of its batch must read the set again."""
        self._active = None

    @staticmethod
    def check_event_types(event_types: list[str]) -> None:
        unknown = [name for name in event_types if name not in EVENT_TYPES]
        if unknown or not event_types:
            raise Invalid.one("event_types", f"The event_types must be chosen from: {', '.join(EVENT_TYPES)}.")

    async def list(self, workspace_id: str, principal: Principal) -> list[sqlite3.Row]:
        workspace = await self.workspaces.require_admin(workspace_id, principal)
        return await store.outgoing_for_workspace(self.ctx.db.reader, workspace["id"])

    async def create(self, workspace_id: str, principal: Principal, *, name: str, url: str,
                     event_types: list[str]) -> tuple[sqlite3.Row, str]:
        workspace = await self.workspaces.require_admin(workspace_id, principal)
        self.check_url(url)
        self.check_event_types(event_types)
        hook_id, secret = new_id(), new_secret(32)

        async def unit(tx: Tx) -> sqlite3.Row:
            await store.insert_outgoing(tx, id=hook_id, workspace_id=workspace["id"], name=name, url=url,
                                        event_types=sorted(set(event_types)), secret=secret,
                                        created_by=principal.user_id, now=self.ctx.now())
            self._forget_active()
            row = await store.outgoing_in_workspace(tx, workspace["id"], hook_id)
            assert row is not None
            await emit_to_admins(self.ctx, tx, "outgoing_webhook.created", row["workspace_id"], view(row))
            return row

        return await self.ctx.db.write(unit), secret

    async def require(self, workspace_id: str, hook_id: str, principal: Principal) -> sqlite3.Row:
        workspace = await self.workspaces.require_admin(workspace_id, principal)
        row = await store.outgoing_in_workspace(self.ctx.db.reader, workspace["id"], hook_id.lower()) \
            if looks_like_id(hook_id) else None
        if row is None:
            raise NotFound()
        return row

    async def update(self, workspace_id: str, hook_id: str, principal: Principal, *, name: str | None,
                     url: str | None, event_types: list[str] | None, is_active: bool | None,
                     regenerate_secret: bool) -> tuple[sqlite3.Row, str | None]:
        row = await self.require(workspace_id, hook_id, principal)
        changes: dict[str, Any] = {}
        if name is not None:
            changes["name"] = name
        if url is not None:
            self.check_url(url)
            changes["url"] = url
        if event_types is not None:
            self.check_event_types(event_types)
            changes["event_types"] = sorted(set(event_types))
        if is_active is not None:
            changes["is_active"] = int(is_active)
        secret = new_secret(32) if regenerate_secret else None
        if secret is not None:
            changes["secret"] = secret

        async def unit(tx: Tx) -> sqlite3.Row:
            fresh = row
            if changes:
                await store.update_outgoing(tx, row["id"], self.ctx.now(), **changes)
                self._forget_active()
                fresh = await store.outgoing_in_workspace(tx, row["workspace_id"], row["id"])
                assert fresh is not None
                await emit_to_admins(self.ctx, tx, "outgoing_webhook.updated", fresh["workspace_id"], view(fresh))
            return fresh

        return await self.ctx.db.write(unit), secret

    async def delete(self, workspace_id: str, hook_id: str, principal: Principal) -> None:
        row = await self.require(workspace_id, hook_id, principal)

        async def unit(tx: Tx) -> None:
            await store.delete_outgoing(tx, row["id"])
            self._forget_active()
            await emit_to_admins(self.ctx, tx, "outgoing_webhook.deleted", row["workspace_id"],
                                 {"id": row["id"], "workspace_id": row["workspace_id"]})

        await self.ctx.db.write(unit)

    async def deliveries(self, workspace_id: str, hook_id: str, principal: Principal,
                         limit: int) -> list[sqlite3.Row]:
        row = await self.require(workspace_id, hook_id, principal)
        return await store.deliveries_for(self.ctx.db.reader, row["id"], limit)

    # Enqueueing (inside the emitting transaction) --------------------------------------------

    async def on_event(self, tx: Tx, event: Event) -> None:
        if event.audience_kind not in ("workspace", "channel"):
            return  # direct conversations, single users and guest rooms never leave the server
        # A deleted message's text does not leave the server afterwards. Before the active check: a hook
        # disabled since may still hold pending deliveries.
        if event.name == "message.deleted" and isinstance(event.payload, dict):
            await store.cancel_for_deleted_message(tx, str(event.payload.get("id")), self.ctx.now())
        elif event.name == "channel.deleted":  # its messages went with it
            await store.cancel_for_gone_messages(tx, self.ctx.now())
        stamp = self.ctx.db.freshness(ANY_WRITE)
        if self._active is None or self._active[0] != stamp:
            self._active = (stamp, await store.workspaces_with_outgoing(tx))
        active = self._active[1]
        if not active:
            return
        workspace_id = event.payload.get("workspace_id") if isinstance(event.payload, dict) else None
        if event.audience_kind == "workspace":
            workspace_id = event.audience_id
        elif not isinstance(workspace_id, str):
            workspace_id = await store.channel_workspace(tx, event.audience_id)
        if workspace_id not in active:
            return
        now = self.ctx.now()
        # Deliveries carrying a message's text are found by it when the message is deleted.
        message_id = event.payload.get("id") if event.name in RENDERED else None
        rows = []
        for hook in await store.active_outgoing(tx, workspace_id):
            subscribed = json.loads(hook["event_types"])
            if "*" not in subscribed and event.name not in subscribed:
                continue
            delivery_id = new_id()
            body = json.dumps({"id": delivery_id, "event": event.name, "seq": event.seq, "workspace_id": workspace_id,
                               "created_at": event.created_at, "data": event.payload},
                              ensure_ascii=False, separators=(",", ":"))
            rows.append((delivery_id, hook["id"], event.name, event.seq, message_id, body, now, now))
        if rows:
            await store.enqueue_deliveries(tx, rows)

    # Delivering (job webhooks.deliver) -------------------------------------------------------

    async def deliver_due(self) -> int:
        """Send every due delivery once; returns how many were tried."""
        due = await store.due_deliveries(self.ctx.db.reader, self.ctx.now(), BATCH)
        if not due:
            return 0
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(row: sqlite3.Row) -> None:
            async with gate:
                await self._deliver(row)

        await asyncio.gather(*(one(row) for row in due))
        return len(due)

    async def trim(self) -> int:
        """The ``webhooks.trim`` job: forget deliveries finished more than KEEP_FINISHED_DAYS ago; how many went."""
        cutoff = iso(self.ctx.clock.now() - timedelta(days=KEEP_FINISHED_DAYS))
        return await delete_in_chunks(self.ctx.db, partial(store.trim_deliveries, cutoff=cutoff))

    async def _deliver(self, row: sqlite3.Row) -> None:
        config = self.ctx.config.webhooks
        attempts = row["attempts"] + 1
        status_code: int | None = None
        error: str | None = None
        final = False
        if not row["is_active"]:
            error, final = "the outgoing webhook is disabled", True
        else:
            body = row["body"].encode("utf-8")
            timestamp = str(int(self.ctx.clock.now().timestamp()))
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "Rosetta-Webhooks/1",
                "X-Rosetta-Event": row["event_name"],
                "X-Rosetta-Delivery": row["id"],
                "X-Rosetta-Timestamp": timestamp,
                "X-Rosetta-Signature": sign(row["secret"], timestamp, body),
            }
            try:
                fetched = await guarded_fetch(row["url"], method="POST", headers=headers, body=body,
                                              allowed_hosts=config.allowed_hosts, timeout_s=config.timeout_s)
                status_code = fetched.status
                if not 200 <= fetched.status < 300:
                    error = f"HTTP {fetched.status}"
            except Refused as exc:
                error, final = f"refused by the SSRF guard: {exc}", True
            except (TimeoutError, OSError) as exc:
                error = f"network error: {exc}"[:500]
        now = self.ctx.clock.now()
        if error is None:
            status, next_at, finished = "delivered", iso(now), iso(now)
        elif final or attempts >= config.max_attempts:
            status, next_at, finished = "failed", iso(now), iso(now)
            log.warning("outgoing webhook delivery %s failed for good: %s", row["id"], error)
        else:
            status, finished = "pending", None
            next_at = iso(now + timedelta(seconds=backoff_s(attempts)))

        async def unit(tx: Tx) -> None:
            await store.finish_delivery(tx, row["id"], status=status, attempts=attempts, next_attempt_at=next_at,
                                        last_error=error, response_status=status_code, finished_at=finished)

        await self.ctx.db.write(uncached(unit))  # the outbox is read by no cache: the cached reads stay
