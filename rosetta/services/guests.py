"""Guests of temporary rooms: joining (a restricted user plus one room-scoped token), resolving the
``grst_`` token to a Principal, and the room a caller may use on the guest routes.

Owns the guest credential. A guest token is ``grst_<id>_<secret>``; only sha256(secret) is stored and
compared in constant time. It opens exactly one room and dies with it: the resolver checks the
room's state on every request, so a room past ``expires_at`` refuses its guests before the sweep ran.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from rosetta.errors import Forbidden, NotFound
from rosetta.ids import looks_like_id, new_id, new_secret, same_digest, sha256_hex
from rosetta.services.auth import Principal
from rosetta.services.context import Context
from rosetta.services.events import emit
from rosetta.services.rooms import FULL_CODE, FULL_MESSAGE, RoomService, is_live, reached, room_gone
from rosetta.store import rooms as room_store
from rosetta.store import users as user_store
from rosetta.store import workspaces as workspace_store
from rosetta.store.connections import Tx

TOKEN_PREFIX = "grst_"  # noqa: S105 - the public prefix of a guest token, not a secret
GUEST_HEADER = "X-Rosetta-Guest-Token"
GUEST_QUERY = "guest_token"  # WebSocket and EventSource cannot set headers


@dataclass(frozen=True)
class Joined:
    guest: sqlite3.Row
    token: str
    room: sqlite3.Row


def parse_token(presented: str) -> tuple[str, str] | None:
    """``(token id, secret)`` from ``grst_<id>_<secret>``, or None when it is not shaped like one."""
    if not presented.startswith(TOKEN_PREFIX) or len(presented) > 200:
        return None
    token_id, sep, secret = presented[len(TOKEN_PREFIX):].partition("_")
    if not sep or not secret or not looks_like_id(token_id):
        return None
    return token_id.lower(), secret


class GuestService:
    def __init__(self, ctx: Context, rooms: RoomService) -> None:
        self.ctx = ctx
        self.rooms = rooms

    async def join(self, room_id: str, nickname: str, language: str) -> Joined:
        """A new guest user (member role ``guest``) and its token; 404 unknown room, 410 expired room."""
        room = await self.rooms.by_id(room_id)
        if room is None:
            raise NotFound()
        if not is_live(room, self.ctx.clock.now()):
            raise room_gone()
        user_id, token_id, secret = new_id(), new_id(), new_secret(24)

        async def unit(tx: Tx) -> Joined:
            current = await room_store.by_id(tx, room["id"])
            assert current is not None
            if not is_live(current, self.ctx.clock.now()):  # the sweep may have run since the read above
                raise room_gone()
            # Counted inside the unit (the one writer serializes joins): each guest is a user, a member
            # and a session, and a room open to anyone must not be a way to fill the database.
            if reached(await room_store.count_guests(tx, current["workspace_id"]),
                       self.ctx.config.temporary_rooms.max_guests):
                raise Forbidden(FULL_MESSAGE, code=FULL_CODE)
            now = self.ctx.now()
            await user_store.insert(tx, id=user_id, name=nickname, email=None, password_hash=None,
                                    preferred_language=language, now=now, kind="guest")
            await workspace_store.add_member(tx, id=new_id(), workspace_id=current["workspace_id"], user_id=user_id,
                                             role="guest", now=now)
            await room_store.insert_guest_token(tx, id=token_id, room_id=current["id"], user_id=user_id,
                                                secret_hash=sha256_hex(secret), expires_at=current["expires_at"],
                                                now=now)
            guest = await user_store.by_id(tx, user_id)
            assert guest is not None
            # Channel readers are the room's members, guests included: the developer and the other
            # guests hear of the newcomer.
            await emit(self.ctx, tx, "room.guest_joined", "channel", current["channel_id"],
                       {"room_id": current["id"], "guest": guest_view(guest)})
            return Joined(guest, f"{TOKEN_PREFIX}{token_id}_{secret}", current)

        return await self.ctx.db.write(unit)

    async def token_row(self, presented: str) -> sqlite3.Row | None:
        """The stored token behind ``presented`` when its secret matches, whatever its room's state."""
        parsed = parse_token(presented)
        if parsed is None:
            return None
        token_id, secret = parsed
        row = await room_store.guest_token(self.ctx.db.reader, token_id)
        if row is None or not same_digest(sha256_hex(secret), row["secret_hash"]):
            return None
        return row

    async def resolve(self, presented: str) -> Principal | None:
        """The guest behind a live token; None when unknown, revoked, inactive, or its room ended."""
        row = await self.token_row(presented)
        if row is None or row["revoked_at"] is not None or not row["is_active"]:
            return None
        if row["room_status"] != "active" or row["room_expires_at"] <= self.ctx.now():
            return None
        return Principal("guest", row["user_id"], token_id=row["id"], room_id=row["room_id"])

    async def expired_room_of(self, presented: str) -> str | None:
        """The room id of a genuine token whose room has ended (its routes answer 410, not 401)."""
        row = await self.token_row(presented)
        if row is None:
            return None
        if row["room_status"] != "active" or row["room_expires_at"] <= self.ctx.now():
            return row["room_id"]
        return None

    async def require_room(self, room_id: str, principal: Principal) -> sqlite3.Row:
        """The live room a caller may use on the guest routes: a guest only its own room, a user only
        a room whose workspace they belong to (the developer); 404 otherwise, 410 once it ended."""
        room = await self.rooms.by_id(room_id)
        if room is None:
            raise NotFound()
        if principal.kind == "guest":
            if principal.room_id != room["id"]:
                raise NotFound()
        elif await workspace_store.member(self.ctx.db.reader, room["workspace_id"], principal.user_id) is None:
            raise NotFound()
        if not is_live(room, self.ctx.clock.now()):
            raise room_gone()
        return room


def guest_view(row: sqlite3.Row) -> dict[str, Any]:
    return {"id": row["id"], "nickname": row["name"], "preferred_language": row["preferred_language"]}
