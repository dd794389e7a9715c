"""WebSocket ``GET /realtime`` and SSE ``GET /events``: authenticate, register with the hub, resume, stream.

Owns the HTTP side of realtime (spec §5): credentials (bearer header, ``?access_token=``, cookie
session with an allowed Origin, guest token), the resume point (``?after=``, a ``resume`` frame, or
``Last-Event-ID``), the connection cap, heartbeats and client frames (ping, resume, typing, read).
What a connection receives is decided by the hub and the subscription.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import tornado.websocket

from rosetta.errors import JSON_ERRORS, ApiError, BadRequest, Forbidden, Invalid, TooManyAttempts
from rosetta.handlers.base import BaseHandler
from rosetta.ids import looks_like_id
from rosetta.realtime.subscription import (
    CLOSE_OVERFLOW,
    CLOSE_REVOKED,
    SseSink,
    Subscription,
    WebSocketSink,
    tune_socket,
)
from rosetta.realtime.throttle import Throttle
from rosetta.realtime.wire import Control
from rosetta.services.auth import Principal

log = logging.getLogger("rosetta.realtime")

MAX_CLIENT_FRAME = 64 * 1024  # client frames are tiny JSON commands
# Client frames that cost database reads, bounded per connection (audit s17 #1). Neither counts
# against the HTTP rate limit (only the handshake does), and one principal may hold 20 connections
# (realtime.max_connections_per_principal).
TYPING_EVERY_S = 3.0  # at most one typing relay per connection and place in this window
# A person types in one place at a time; 16 places inside one 3 s window is past any real client.
# Made-up ids cost one lookup each, so a connection gets at most 16 per 3 s (~5/s) from them.
TYPING_PLACES = 16
# Reading the same message again inside 3 s tells the other connections nothing new. Clients mark
# the newest message of the place on screen; 16 distinct ones in 3 s covers fast channel switching
# and again caps lookups (message place, then audience) at ~5/s per connection.
READ_EVERY_S = 3.0
READ_MESSAGES = 16
WEBSOCKET_VERSION = "13"  # RFC 6455; Tornado speaks no other
SSE_RETRY_MS = 3000
PONG = Control({"type": "pong"})
MAX_SEQ = 2**63 - 1  # SQLite's INTEGER: a larger resume point would crash the replay query (OverflowError)


def parse_after(raw: str | None, field: str) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise Invalid.one(field, f"The {field} must be an integer.") from None
    if value < 0:
        raise Invalid.one(field, f"The {field} must be at least 0.")
    if value > MAX_SEQ:
        raise Invalid.one(field, f"The {field} must not be greater than {MAX_SEQ}.")
    return value


class UpgradeRequired(ApiError):
    """426: the handshake asks for a WebSocket version the server does not speak (RFC 6455 §4.4)."""

    status = 426
    message = "Only WebSocket version 13 is supported."

    def __init__(self) -> None:
        super().__init__(headers={"Sec-WebSocket-Version": WEBSOCKET_VERSION})


class RealtimeMixin:
    """What both transports share: query-string tokens, the Origin rule for cookies, the cap, hello."""

    app: Any
    principal: Principal | None
    request: Any
    sub: Subscription | None
    allow_guest = True
    credentials_in_query = True  # WebSocket and EventSource cannot set headers

    async def authenticate(self) -> Principal | None:
        # The guest-token rule first: ``?access_token=`` must not slip a guest token past it (401).
        self.refuse_mixed_credentials()  # type: ignore[attr-defined]
        # Browsers cannot set headers on a WebSocket or an EventSource: the token may ride in the URL.
        token = self.get_query_argument("access_token", None)  # type: ignore[attr-defined]
        if token:
            return await self.app.tokens.resolve(token)
        return await super().authenticate()  # type: ignore[misc]

    def origin_allowed(self, origin: str | None) -> bool:
        """A cookie session is ambient authority: only same-origin or configured origins may use it."""
        assert self.principal is not None
        if not self.principal.is_session or origin is None:
            return True
        if origin in self.app.config.server.cors_origins:
            return True
        host = self.request.headers.get("Host", "")
        return origin.split("://", 1)[-1] == host

    def check_cap(self) -> None:
        assert self.principal is not None
        cap = self.app.config.realtime.max_connections_per_principal
        if self.app.hub.connection_count(self.principal.user_id) >= cap:
            raise TooManyAttempts(5, cap)

    def make_subscription(self, sink: Any) -> Subscription:
        assert self.principal is not None
        hub = self.app.hub
        limit = self.app.config.realtime.send_buffer_kb * 1024
        return Subscription(hub.new_connection_id(), self.principal, sink, limit, hub.remove)

    async def start(self, sub: Subscription, after: int | None) -> None:
        """Register, say hello, then replay from ``after`` or go live from the hello's seq."""
        hub = self.app.hub
        hub.add(sub)  # first: every event committed from here on reaches the subscription
        head = await hub.head()
        sub.control(Control({"type": "hello", "connection_id": sub.connection_id, "seq": head,
                             "heartbeat_s": self.app.config.realtime.heartbeat_s}))
        if after is None:
            sub.start_live(head)
        else:
            self.resume(sub, after)

    def resume(self, sub: Subscription, after: int) -> None:
        sub.begin_replay()
        sub.replay_task = asyncio.get_running_loop().create_task(self._replay(sub, after))

    async def _replay(self, sub: Subscription, after: int) -> None:
        try:
            await self.app.hub.replay(sub, after)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("replay for connection %s failed", sub.connection_id)
            sub.close(CLOSE_OVERFLOW, "replay failed: resume again")


class RealtimeSocketHandler(RealtimeMixin, BaseHandler, tornado.websocket.WebSocketHandler):
    """``GET /api/v1/realtime``: JSON text frames both ways."""

    def initialize(self, app: Any) -> None:  # type: ignore[override]
        super().initialize(app)
        self.sub = None
        self.after: int | None = None
        self.typing_throttle = Throttle(TYPING_EVERY_S, TYPING_PLACES)
        self.read_throttle = Throttle(READ_EVERY_S, READ_MESSAGES)

    @property
    def ping_interval(self) -> float:  # type: ignore[override]
        return float(self.app.config.realtime.heartbeat_s)

    @property
    def ping_timeout(self) -> float:  # type: ignore[override]
        return float(self.app.config.realtime.heartbeat_s)

    @property
    def max_message_size(self) -> int:  # type: ignore[override]
        return MAX_CLIENT_FRAME

    def check_origin(self, origin: str) -> bool:
        return self.origin_allowed(origin)

    async def get(self, *args: Any, **kwargs: Any) -> None:
        # Tornado's handshake answers these refusals in plain text or with an empty body: checked
        # first, they get the contract's JSON envelope like every other refusal (an HTTP client shows
        # them as such). The same tests as Tornado's, so nothing it would accept is refused here.
        headers = self.request.headers
        if headers.get("Upgrade", "").lower() != "websocket":
            raise BadRequest('This route speaks WebSocket only: send "Upgrade: websocket".')
        if "upgrade" not in (part.strip().lower() for part in headers.get("Connection", "").split(",")):
            raise BadRequest('A WebSocket handshake needs "Connection: Upgrade".')
        if not headers.get("Sec-WebSocket-Key"):
            raise BadRequest('A WebSocket handshake needs a "Sec-WebSocket-Key" header.')
        if headers.get("Sec-WebSocket-Version") != WEBSOCKET_VERSION:
            raise UpgradeRequired()
        origin = headers.get("Origin") or headers.get("Sec-Websocket-Origin")
        if origin is not None and not self.origin_allowed(origin):
            raise Forbidden()
        self.after = parse_after(self.get_query_argument("after", None), "after")
        self.check_cap()
        await tornado.websocket.WebSocketHandler.get(self, *args, **kwargs)

    async def open(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        assert self.ws_connection is not None
        tune_socket(self.ws_connection.stream, self.app.config.realtime.send_buffer_kb * 1024)
        self.sub = self.make_subscription(WebSocketSink(self))
        await self.start(self.sub, self.after)

    def on_close(self) -> None:
        if self.sub is not None:
            self.sub.peer_closed()

    async def on_message(self, message: str | bytes) -> None:
        sub = self.sub
        if sub is None or sub.closed:
            return
        try:
            frame = json.loads(message)
        except JSON_ERRORS:
            frame = None
        if not isinstance(frame, dict):
            sub.control(Control({"type": "error", "message": "Frames must be JSON objects."}))
            return
        kind = frame.get("type")
        if kind == "ping":
            sub.control(PONG)
        elif kind == "resume":
            after = frame.get("after")
            if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after <= MAX_SEQ:
                sub.control(Control({"type": "error", "message": "The after field must be a seq (an integer >= 0)."}))
            elif sub.state is not sub.LIVE:  # one replay at a time: two would interleave their events
                sub.control(Control({"type": "error", "message": "A replay is under way: resume once it is done."}))
            else:  # as often as the client likes: each replays only what this connection never sent
                self.resume(sub, after)
        elif kind == "typing":
            await self.typing(sub, frame)
        elif kind == "read":
            await self.read(sub, frame)
        else:
            sub.control(Control({"type": "error", "message": "Unknown frame type."}))

    async def typing(self, sub: Subscription, frame: dict[str, Any]) -> None:
        """Live-only: relayed to the others who can see that channel or conversation, never logged."""
        if isinstance(frame.get("channel_id"), str):
            kind, place = "channel", frame["channel_id"].lower()
        elif isinstance(frame.get("conversation_id"), str):
            kind, place = "conversation", frame["conversation_id"].lower()
        else:
            return
        # Counted before the check: an unknown or hidden place costs one lookup per window, like a real one.
        if not looks_like_id(place) or not self.typing_throttle.allow(place, self.clock_s()):
            return
        hub = self.app.hub
        if not await hub.can_see(sub.user_id, kind, place):
            return  # no existence leak: an unknown place and a hidden one look the same
        await hub.relay("typing", kind, place, {f"{kind}_id": place, "user_id": sub.user_id}, skip=sub)

    async def read(self, sub: Subscription, frame: dict[str, Any]) -> None:
        """Live-only: the reader's other connections learn the message was read (unread badges in sync)."""
        message_id = frame.get("message_id")
        if not isinstance(message_id, str) or not looks_like_id(message_id):
            return
        message_id = message_id.lower()
        if not self.read_throttle.allow(message_id, self.clock_s()):
            return  # dropped silently, as an unknown or hidden message is
        await self.app.hub.relay_read(sub, message_id)

    def clock_s(self) -> float:
        """Seconds on the app's clock (tests move it to reopen a throttle window)."""
        return float(self.app.clock.now().timestamp())


class EventStreamHandler(RealtimeMixin, BaseHandler):
    """``GET /api/v1/events``: Server-Sent Events; ``Last-Event-ID`` or ``?after=`` resumes."""

    def initialize(self, app: Any) -> None:  # type: ignore[override]
        super().initialize(app)
        self.sub = None
        self.ended: asyncio.Future[int | None] | None = None

    async def get(self) -> None:
        assert self.principal is not None
        if not self.origin_allowed(self.request.headers.get("Origin")):
            raise Forbidden()
        after = parse_after(self.request.headers.get("Last-Event-ID"), "Last-Event-ID")
        query_after = parse_after(self.get_query_argument("after", None), "after")
        after = query_after if after is None else after
        self.check_cap()
        self.ended = asyncio.get_running_loop().create_future()
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")  # nginx: do not buffer the stream
        tune_socket(self.request.connection.stream, self.app.config.realtime.send_buffer_kb * 1024)
        self.write(b"retry: %d\n\n" % SSE_RETRY_MS)
        self.sub = self.make_subscription(SseSink(self, self._end))
        await self.start(self.sub, after)
        code = await self.ended
        if code is None:
            return  # the client went away
        stream = self.request.connection.stream
        if not stream.closed():
            self.finish()
        if code in (CLOSE_OVERFLOW, CLOSE_REVOKED):
            stream.close()  # a stalled or unauthorised reader: drop the socket, not just the response

    def _end(self, code: int | None) -> None:
        if self.ended is not None and not self.ended.done():
            self.ended.set_result(code)

    def on_connection_close(self) -> None:
        if self.sub is not None:
            self.sub.peer_closed()
        self._end(None)


ROUTES = [
    ("/realtime", RealtimeSocketHandler),
    ("/events", EventStreamHandler),
]
