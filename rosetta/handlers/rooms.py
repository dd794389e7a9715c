"""External temporary rooms over HTTP: the developer's routes (token abilities ``temporary-rooms:*``),
the public guest join, and the room's messages for guests (``X-Rosetta-Guest-Token``).

HTTP only: parse, authenticate, call the room and guest services, shape the seed's responses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from rosetta.errors import Unauthenticated
from rosetta.handlers.base import BaseHandler
from rosetta.handlers.messages import message_input
from rosetta.handlers.paging import cursor_params, encoded_cursor_page, page_body, page_params, sort_param
from rosetta.handlers.translation import target_language
from rosetta.handlers.validate import Validator
from rosetta.services.auth import Principal
from rosetta.services.guests import GUEST_HEADER, GUEST_QUERY, GuestService, guest_view
from rosetta.services.messages import Author, Place, channel_place
from rosetta.services.rooms import SORT_FIELDS, room_gone

MIN_HOURS = 0.01  # spec §9: ttl_hours and extension_hours may be fractional, at least 0.01
MAX_HOURS = 1_000_000.0  # only to keep timedelta in range; the plan's limit is the real bound


def hours_field(v: Validator, field: str) -> float | None:
    value = v.number(field, required=True)
    if value is not None and value < MIN_HOURS:
        v.fail(field, f"The {field} field must be at least {MIN_HOURS}.")
        return None
    if value is not None and value > MAX_HOURS:
        return MAX_HOURS + 1  # certainly over any plan's limit: reported as *_exceeds_limit
    return value


def guest_resolver(guests: GuestService) -> Callable[[BaseHandler], Awaitable[Principal | None]]:
    """The credential resolver for ``X-Rosetta-Guest-Token`` (or ``?guest_token=`` for WebSocket/SSE)."""

    async def resolve(handler: BaseHandler) -> Principal | None:
        presented = handler.request.headers.get(GUEST_HEADER) or (
            handler.get_query_argument(GUEST_QUERY, None) if handler.credentials_in_query else None)
        return await guests.resolve(presented) if presented else None

    return resolve


class RoomsHandler(BaseHandler):
    @property
    def ability(self) -> str:  # type: ignore[override]
        return "temporary-rooms:create" if self.request.method == "POST" else "temporary-rooms:read"

    async def get(self) -> None:
        assert self.principal
        page, per_page = page_params(self)
        sort, descending = sort_param(self, SORT_FIELDS, "-created_at")
        rows, total = await self.app.rooms.list_mine(self.principal, page, per_page, sort, descending)
        self.send_json(page_body(self, [self.app.rooms.view(row) for row in rows], total, page, per_page))

    async def post(self) -> None:
        assert self.principal
        v = Validator(self.json_body())
        name = v.string("name", required=True, max_len=255)
        reference = v.string("external_reference", max_len=255)
        ttl_hours = hours_field(v, "ttl_hours")
        v.done()
        assert name is not None and ttl_hours is not None
        room = await self.app.rooms.create(self.principal, name, reference, ttl_hours)
        self.send_json({"data": self.app.rooms.view(room)}, 201)


class RoomUsageHandler(BaseHandler):
    ability = "temporary-rooms:read"

    async def get(self) -> None:
        assert self.principal
        usage = await self.app.rooms.usage(self.principal)
        self.send_json({"data": usage.view()})


class RoomExtendHandler(BaseHandler):
    ability = "temporary-rooms:extend"

    async def post(self, room_id: str) -> None:
        assert self.principal
        v = Validator(self.json_body())
        hours = hours_field(v, "extension_hours")
        room = await self.app.rooms.extend(room_id, self.principal, hours, v.errors)
        self.send_json({"data": {
            "room_id": room["id"],
            "expires_at": room["expires_at"],
            "max_expires_at": room["max_expires_at"],
            "extension_count": room["extension_count"],
        }})


class RoomGuestsHandler(BaseHandler):
    public = True

    async def post(self, room_id: str) -> None:
        limits = self.app.config.limits
        self.rate_limit("guest_join", self.address_key(), limits.guest_join_per_minute, 60)
        v = Validator(self.json_body())
        nickname = v.string("nickname", required=True, max_len=64)
        language = v.language("preferred_language") or self.app.config.translation.default_language
        v.done()
        assert nickname is not None
        joined = await self.app.guests.join(room_id, nickname, language)
        room = joined.room
        self.send_json({"data": {
            "guest": guest_view(joined.guest),
            "session": {
                "token": joined.token,
                "token_type": "guest",
                "header": GUEST_HEADER,
                "expires_at": room["expires_at"],
            },
            "room": {
                "room_id": room["id"],
                "workspace_id": room["workspace_id"],
                "channel_id": room["channel_id"],
                "name": room["name"],
                "status": "active",
                "expires_at": room["expires_at"],
            },
        }}, 201)


class RoomRouteHandler(BaseHandler):
    """A route under ``/external/rooms/{room}/`` for the room's guests (and its developer); the room's
    own token gets 410 once the room ended, any other caller 401/404."""

    allow_guest = True

    async def prepare(self) -> None:
        try:
            await super().prepare()
        except Unauthenticated:
            presented = self.request.headers.get(GUEST_HEADER) or self.get_query_argument(GUEST_QUERY, None)
            if presented and not self.request.headers.get("Authorization"):
                room_id = await self.app.guests.expired_room_of(presented)
                if room_id is not None and room_id == self.path_args[0].lower():
                    raise room_gone() from None
            raise

    async def _room_channel(self, room_id: str) -> tuple[Any, Any]:
        assert self.principal
        room = await self.app.guests.require_room(room_id, self.principal)
        channel = await self.app.workspaces.require_readable_channel(room["workspace_id"], room["channel_id"],
                                                                     self.principal)
        return room, channel


class RoomMessagesHandler(RoomRouteHandler):
    """Guests of this room (and its developer) read and post."""

    async def get(self, room_id: str) -> None:
        _, channel = await self._room_channel(room_id)
        before, after, limit = cursor_params(self)
        page = await self.app.messages.page(channel_id=channel["id"], before=before, after=after, limit=limit,
                                            language=channel["reader_language"])
        self.send_encoded(*encoded_cursor_page(page))

    async def post(self, room_id: str) -> None:
        assert self.principal
        room, channel = await self._room_channel(room_id)
        content, attachment_ids, parent_id, skip = message_input(self.json_body())
        kind = "guest" if self.principal.kind == "guest" else "user"
        author = Author(kind, self.principal.user_id, channel["reader_language"],
                        files_owner_id=self.principal.user_id)
        # Audience "channel": its readers are the room's members, guests and the developer alike.
        place = Place(room["workspace_id"], room["channel_id"], None, "channel", room["channel_id"])
        message = await self.app.messages.post(author, place, content, attachment_ids=attachment_ids,
                                               parent_id=parent_id, skip_translation=skip)
        self.send_json({"data": message}, 201)


class RoomMessageTranslateHandler(RoomRouteHandler):
    """On-demand translation of one room message, the channel route's service call for guests."""

    async def post(self, room_id: str, message_id: str) -> None:
        # Room access first: a message of another place is 404 and the provider hears nothing.
        _, channel = await self._room_channel(room_id)
        target = target_language(self.json_body())
        view = await self.app.translation.translate_now(channel_place(channel), message_id, target)
        self.send_json({"data": view})


ROUTES = [
    ("/external/rooms", RoomsHandler),
    ("/external/rooms/usage", RoomUsageHandler),
    (r"/external/rooms/([^/]+)/extend", RoomExtendHandler),
    (r"/external/rooms/([^/]+)/guests", RoomGuestsHandler),
    (r"/external/rooms/([^/]+)/messages", RoomMessagesHandler),
    (r"/external/rooms/([^/]+)/messages/([^/]+)/translate", RoomMessageTranslateHandler),
]
