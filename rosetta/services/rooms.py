"""Temporary rooms: a developer's short-lived room (its own workspace with one channel), its plan
limits, quotas, extension, and the sweep that expires and later purges it.

Owns the room life cycle and the rules of spec §9 (plans, quotas, ttl/extension bounds). Guests and
their tokens live in ``guests.py``. Quota check and insert happen in one write unit: the single
writer runs units one after another, so two concurrent creates can never both pass the last slot.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from rosetta.clock import iso, parse_iso
from rosetta.errors import Forbidden, Gone, Invalid, NotFound
from rosetta.ids import looks_like_id, new_id
from rosetta.services.auth import Principal
from rosetta.services.context import Context
from rosetta.services.events import emit
from rosetta.store import channels as channel_store
from rosetta.store import rooms as room_store
from rosetta.store import users as user_store
from rosetta.store import workspaces as workspace_store
from rosetta.store.connections import Tx

SORT_FIELDS = tuple(room_store.ROOM_ORDER)  # what GET /external/rooms may sort by

KIND = "temporary_room"
EXPIRED_CODE = "temporary_room_expired"
EXPIRED_MESSAGE = "Temporary Room is not available."
QUOTA_CODE = "temporary_room_quota_exceeded"
ACTIVE_LIMIT_MESSAGE = "Temporary Room active room limit exceeded."
MONTHLY_LIMIT_MESSAGE = "Temporary Room monthly creation limit exceeded."
FULL_CODE = "temporary_room_full"
FULL_MESSAGE = "Temporary Room guest limit reached."
EXTENSION_CODE = "temporary_room_extension_not_allowed"
EXTENSION_MESSAGE = "Temporary Room extension is not allowed."
# The sweep handles this many rooms per transaction, so one run never holds the writer for long.
SWEEP_BATCH = 100


def room_gone() -> Gone:
    return Gone(EXPIRED_MESSAGE, code=EXPIRED_CODE)


def month_start(moment: datetime) -> datetime:
    """The first instant of the calendar month (UTC) that ``moment`` falls in."""
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def is_live(room: sqlite3.Row, now: datetime) -> bool:
    """Open for guests: not swept yet and not past its end (a join after expires_at is 410 before the sweep)."""
    return room["status"] == "active" and parse_iso(room["expires_at"]) > now


@dataclass(frozen=True)
class Usage:
    active_limit: int
    monthly_creation_limit: int
    active_room_count: int
    monthly_creation_count: int

    def view(self) -> dict[str, Any]:
        return {
            "limits": {"active_limit": self.active_limit, "monthly_creation_limit": self.monthly_creation_limit},
            "usage": {"active_room_count": self.active_room_count,
                      "monthly_creation_count": self.monthly_creation_count},
            "abuse_signals": {
                "active_limit_reached": reached(self.active_room_count, self.active_limit),
                "monthly_creation_limit_reached": reached(self.monthly_creation_count, self.monthly_creation_limit),
            },
        }


def reached(count: int, limit: int) -> bool:
    return limit > 0 and count >= limit  # 0 = no limit, as in [limits]


class RoomService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # Removes the bytes of soft-deleted files after COMMIT (the files feature wires its blob store).
        self.remove_bytes: Callable[[list[str]], Awaitable[None]] | None = None

    # Views ------------------------------------------------------------------------------------

    def view(self, room: sqlite3.Row) -> dict[str, Any]:
        """The TemporaryRoom resource of the seed; ``status`` is ``expired`` as soon as expires_at passed."""
        return {
            "room_id": room["id"],
            "workspace_id": room["workspace_id"],
            "channel_id": room["channel_id"],
            "name": room["name"],
            "kind": KIND,
            "status": "active" if is_live(room, self.ctx.clock.now()) else "expired",
            "external_reference": room["external_reference"],
            "expires_at": room["expires_at"],
            "max_expires_at": room["max_expires_at"],
            "extension_count": room["extension_count"],
            "join": {"method": "POST", "endpoint": self.join_endpoint(room["id"])},
        }

    def join_endpoint(self, room_id: str) -> str:
        return f"{self.ctx.config.server.base_url()}/api/v1/external/rooms/{room_id}/guests"

    async def readers(self, conn: Any, room_id: str) -> dict[str, str]:
        """The realtime audience "room": ``{user_id: reading language}`` of the room's members."""
        return {row[0]: row[1] for row in await room_store.readers(conn, room_id)}

    # Plans ------------------------------------------------------------------------------------

    async def plan_of(self, user_id: str) -> str:
        user = await user_store.by_id(self.ctx.db.reader, user_id)
        return (user["room_plan"] if user is not None else None) or self.ctx.config.temporary_rooms.default_plan

    def max_ttl_hours(self, plan: str) -> float:
        cfg = self.ctx.config.temporary_rooms
        return cfg.developer_max_ttl_hours if plan == "developer" else cfg.free_max_ttl_hours

    # Reading ----------------------------------------------------------------------------------

    async def require_owned(self, room_id: str, principal: Principal) -> sqlite3.Row:
        """The developer's own room; 404 for anyone else's (no existence leak)."""
        if not looks_like_id(room_id):
            raise NotFound()
        room = await room_store.for_owner(self.ctx.db.reader, room_id.lower(), principal.user_id)
        if room is None:
            raise NotFound()
        return room

    async def by_id(self, room_id: str) -> sqlite3.Row | None:
        if not looks_like_id(room_id):
            return None
        return await room_store.by_id(self.ctx.db.reader, room_id.lower())

    async def list_mine(self, principal: Principal, page: int, per_page: int, sort: str = "created_at",
                        descending: bool = True) -> tuple[list[sqlite3.Row], int]:
        return await room_store.page_for_owner(self.ctx.db.reader, principal.user_id, (page - 1) * per_page,
                                               per_page, sort, descending)

    async def usage(self, principal: Principal, conn: Any = None) -> Usage:
        cfg = self.ctx.config.temporary_rooms
        now = self.ctx.clock.now()
        active, monthly = await room_store.usage(conn or self.ctx.db.reader, principal.user_id, iso(now),
                                                 iso(month_start(now)))
        return Usage(cfg.active_limit, cfg.monthly_creation_limit, active, monthly)

    # Creating ---------------------------------------------------------------------------------

    async def create(self, principal: Principal, name: str, external_reference: str | None,
                     ttl_hours: float) -> sqlite3.Row:
        plan = await self.plan_of(principal.user_id)
        max_ttl = self.max_ttl_hours(plan)
        if ttl_hours > max_ttl:
            raise Invalid.one("ttl_hours", "ttl_hours_exceeds_limit")
        room_id, workspace_id, channel_id = new_id(), new_id(), new_id()

        async def unit(tx: Tx) -> sqlite3.Row:
            # Counted inside the write unit: the one writer serializes creates, so the quota holds.
            usage = await self.usage(principal, tx)
            if reached(usage.active_room_count, usage.active_limit):
                raise Forbidden(ACTIVE_LIMIT_MESSAGE, code=QUOTA_CODE)
            if reached(usage.monthly_creation_count, usage.monthly_creation_limit):
                raise Forbidden(MONTHLY_LIMIT_MESSAGE, code=QUOTA_CODE)
            moment = self.ctx.clock.now()
            now = iso(moment)
            await workspace_store.insert(tx, id=workspace_id, name=name, slug=f"room-{room_id}",
                                         owner_id=principal.user_id, password_hash=None, now=now, kind=KIND)
            await workspace_store.add_member(tx, id=new_id(), workspace_id=workspace_id, user_id=principal.user_id,
                                             role="owner", now=now)
            await channel_store.insert(tx, id=channel_id, workspace_id=workspace_id, name=name, slug="room",
                                       password_hash=None, now=now, kind=KIND)
            await room_store.insert(
                tx, id=room_id, workspace_id=workspace_id, channel_id=channel_id, owner_id=principal.user_id,
                name=name, external_reference=external_reference,
                expires_at=iso(moment + timedelta(hours=ttl_hours)),
                max_expires_at=iso(moment + timedelta(hours=max_ttl)), plan=plan, now=now,
            )
            room = await room_store.by_id(tx, room_id)
            assert room is not None
            await emit(self.ctx, tx, "room.created", "user", principal.user_id, self.view(room))
            return room

        return await self.ctx.db.write(unit)

    # Extending --------------------------------------------------------------------------------

    async def extend(self, room_id: str, principal: Principal, extension_hours: float | None,
                     invalid: dict[str, list[str]]) -> sqlite3.Row:
        """Move the room's end by ``extension_hours``. ``invalid`` holds the body's shape errors, reported
        only once the caller is known to own the room and to have a plan that extends."""
        room = await self.require_owned(room_id, principal)
        if room["plan"] != "developer":
            raise Forbidden(EXTENSION_MESSAGE, code=EXTENSION_CODE)
        if invalid:
            raise Invalid(invalid)
        assert extension_hours is not None
        if extension_hours > self.ctx.config.temporary_rooms.max_extension_hours:
            raise Invalid.one("extension_hours", "extension_hours_exceeds_limit")

        async def unit(tx: Tx) -> sqlite3.Row:
            current = await room_store.by_id(tx, room["id"])
            assert current is not None
            if not is_live(current, self.ctx.clock.now()):
                raise room_gone()
            new_end = parse_iso(current["expires_at"]) + timedelta(hours=extension_hours)
            if new_end > parse_iso(current["max_expires_at"]):
                raise Invalid.one("extension_hours", "extension_hours_exceeds_limit")
            await room_store.extend(tx, current["id"], iso(new_end))
            updated = await room_store.by_id(tx, current["id"])
            assert updated is not None
            await emit(self.ctx, tx, "room.extended", "room", current["id"], self.view(updated))
            return updated

        return await self.ctx.db.write(unit)

    # The sweep --------------------------------------------------------------------------------

    async def sweep(self) -> dict[str, int]:
        """Expire rooms past their end, then purge those past the grace period. Idempotent: each room
        changes state in one transaction guarded by its current status, so a rerun after a crash
        picks up exactly what is left."""
        expired = purged = 0
        while True:
            now = self.ctx.clock.now()
            due = await room_store.due_for_expiry(self.ctx.db.reader, iso(now), SWEEP_BATCH)
            if not due:
                break
            expired += await self.ctx.db.write(lambda tx, due=due: self._expire(tx, due))
            if len(due) < SWEEP_BATCH:
                break
        grace = timedelta(hours=self.ctx.config.temporary_rooms.purge_after_hours)
        while True:
            now = self.ctx.clock.now()
            due = await room_store.due_for_purge(self.ctx.db.reader, iso(now - grace), SWEEP_BATCH)
            if not due:
                break
            count, names = await self.ctx.db.write(lambda tx, due=due: self._purge(tx, due))
            purged += count
            if names and self.remove_bytes is not None:
                # Rows first, bytes after: a crash in between leaves orphan bytes the files reconcile removes.
                await self.remove_bytes(names)
            if len(due) < SWEEP_BATCH:
                break
        return {"expired": expired, "purged": purged}

    async def _expire(self, tx: Tx, rooms: list[sqlite3.Row]) -> int:
        now = self.ctx.now()
        count = 0
        for room in rooms:
            if not await room_store.mark_expired(tx, room["id"], now):
                continue
            count += 1
            revoked = await room_store.revoke_guest_tokens(tx, room["id"], now)
            payload = {"room_id": room["id"], "workspace_id": room["workspace_id"],
                       "channel_id": room["channel_id"], "status": "expired", "expired_at": now}
            await emit(self.ctx, tx, "room.expired", "room", room["id"], payload)
            # Open guest connections close: their token ids are dead now (the gateway listens).
            tx.on_commit(lambda revoked=revoked: self.ctx.notify("tokens.revoked", revoked))
            tx.on_commit(lambda room_id=room["id"]: self.ctx.notify("room.expired", room_id))
        return count

    async def _purge(self, tx: Tx, rooms: list[sqlite3.Row]) -> tuple[int, list[str]]:
        """Messages (their attachments and translations cascade), files, guest tokens and the guests
        themselves go; the room row stays, so usage and the developer's list still know it. The tokens
        were revoked when the room expired and can never authenticate again; kept, they and the guests
        (a nickname each) were rows for good."""
        now = self.ctx.now()
        count = 0
        names: list[str] = []
        for room in rooms:
            names += await room_store.soft_delete_files(tx, room, now)
            await room_store.delete_messages(tx, room["channel_id"])
            await room_store.delete_guest_tokens(tx, room["id"])
            await room_store.delete_guests(tx, room["workspace_id"])
            if await room_store.mark_purged(tx, room["id"], now):
                count += 1
        return count, names
