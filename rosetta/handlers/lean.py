"""The lean path: the hottest authenticated read, message history, answered without a RequestHandler.

Owns deciding whether a request may take it, answering it with the route's own read function, and
handing everything else to the route's usual handler untouched. It must not answer anything but a
200: every refusal and error keeps its one implementation in ``BaseHandler``.

Why it exists: history is what every client loads when it opens a channel, and most of its cost was
Tornado's, not ours. On this 2-core machine a cached history read cost ~565 µs of server CPU. A
bare Tornado ``RequestHandler`` that only writes a 20 KB body cost ~410 µs per request, and the same
answer written by an ``HTTPMessageDelegate`` ~260 µs. The difference is the handler's life cycle:
its construction (default headers, a formatted Date), ``_execute`` and its futures, output
transforms, the ETag checks and ``flush``.

What takes it: a GET of a route with a ``lean_get`` read, carrying a bearer token, no body, no
conditional header, no guest token, and only query arguments the read understands, each once and
made of letters and digits (so reading them needs none of Tornado's decoding). The token is resolved,
the route admitted and the ``api`` rate limit counted exactly as ``BaseHandler.prepare`` does, with
the functions it uses. Anything that is not a plain 200 (unknown token, missing ability, 403, 404,
429, a bug) is handed to the normal handler, which does the work again and answers as it always
does. The rate limit is counted last, so a handed-on request is counted once.

Two callers answer with ``plain_answer`` and ``answer_headers``: ``LeanGet`` inside Tornado, and the
fast lane (rosetta/fastlane.py), which answers a connection's plain requests before Tornado reads
them. The lane also sends messages with ``plain_write``: a route's ``lean_post`` check (the same
function its handler's ``post`` calls) and then its write.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import tornado
import tornado.httputil
import tornado.web

from rosetta.errors import ApiError
from rosetta.handlers.base import (
    DEFAULT_HEADERS,
    BaseHandler,
    api_error_answer,
    bearer_token,
    cors_headers,
    encode_json,
    rate_headers,
    rate_key,
    refusal,
)
from rosetta.routing import SegmentRouter
from rosetta.services.auth import Principal

log = logging.getLogger("rosetta.http")

if TYPE_CHECKING:
    from rosetta.app import RosettaApp

# Headers that make a GET something other than the plain case: a body, a conditional request (the
# handler answers 304), a guest token (refused when mixed with a bearer token).
NOT_PLAIN = ("Content-Length", "Transfer-Encoding", "If-None-Match", "X-Rosetta-Guest-Token")
PLAIN_VALUE = re.compile(rb"[0-9A-Za-z]{1,64}\Z")
SERVER = f"TornadoServer/{tornado.version}"  # what RequestHandler answers with


class PlainQuery:
    """A plain request's query, read like ``RequestHandler.get_query_argument`` (values are ASCII here)."""

    def __init__(self, arguments: dict[str, list[bytes]]) -> None:
        self._values = {name: values[0].decode("ascii") for name, values in arguments.items()}

    def get_query_argument(self, name: str, default: str | None = None) -> str | None:
        return self._values.get(name, default)


# (app, principal, query, *path arguments) -> (encoded 200 body, its ETag). Raises ApiError as a
# handler's code does; the lean path then hands the request on.
ReadFunction = Callable[..., Awaitable[tuple[bytes, str]]]


@dataclass(frozen=True)
class LeanRead:
    """What a route offers the lean path: its read, and the query arguments that read understands."""

    read: ReadFunction
    query: frozenset[str]


def is_plain(request: tornado.httputil.HTTPServerRequest, lean: LeanRead) -> bool:
    if request.method != "GET" or bearer_token(request) is None:
        return False
    headers = request.headers
    if any(name in headers for name in NOT_PLAIN):
        return False
    return all(name in lean.query and len(values) == 1 and PLAIN_VALUE.match(values[0])
               for name, values in request.query_arguments.items())


# A send checked and ready: runs the write and returns what the answer's ``data`` is.
Write = Callable[[], Awaitable[Any]]
# (app, principal, body bytes, *path arguments) -> the Write. Raises ApiError, with nothing written.
WriteCheck = Callable[..., Awaitable[Write]]


@dataclass(frozen=True)
class LeanWrite:
    """What a route offers the fast lane for a POST: the check that returns its write (answered 201)."""

    check: WriteCheck


@dataclass(frozen=True)
class Answer:
    """An answer as a handler would write it: the body, the rate-limit headers (none when unlimited),
    and for a read its ETag; a write's answer may be an error (its status and the headers it adds)."""

    body: bytes
    etag: str | None
    rate: dict[str, str]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


async def admitted(app: RosettaApp, route: type[BaseHandler], token: str) -> Principal | None:
    """The token's principal when it may use ``route`` at all (as ``BaseHandler.prepare`` decides)."""
    principal: Principal | None = await app.tokens.resolve(token)
    if principal is None or refusal(principal, route.ability, route.allow_guest) is not None:
        return None
    return principal


def counted(app: RosettaApp, principal: Principal) -> dict[str, str] | None:
    """Count the request in the principal's ``api`` window: its rate-limit headers, or None past the limit."""
    verdict = app.limiter.hit("api", rate_key(principal), app.config.limits.api_per_minute, 60)
    if not verdict.allowed:
        return None
    return rate_headers(verdict) if verdict.limit else {}


async def plain_answer(app: RosettaApp, route: type[BaseHandler], lean: LeanRead, token: str,
                       query_arguments: dict[str, list[bytes]], path_args: list[bytes]) -> Answer | None:
    """What ``BaseHandler.prepare`` and the route's ``get`` would answer, when that is a 200; else None.

    The token is resolved and the route admitted with the handler's own functions; the rate limit is
    counted last, so a request answered None (and handed to the handler) is counted once. Raises what
    the read raises (ApiError for a 404, a path argument that is not UTF-8): the caller hands on.
    """
    principal = await admitted(app, route, token)
    if principal is None:
        return None
    args = [arg.decode("utf-8") for arg in path_args]  # not UTF-8: handed on, the handler says 400
    body, etag = await lean.read(app, principal, PlainQuery(query_arguments), *args)
    rate = counted(app, principal)
    return Answer(body, etag, rate) if rate is not None else None


async def plain_write(app: RosettaApp, route: type[BaseHandler], lean: LeanWrite, token: str, body: bytes,
                      path_args: list[bytes]) -> Answer | None:
    """What the route's handler answers to a POST, once it writes; None while nothing is written.

    Everything that may refuse the request runs before the write, with the handler's functions: the
    token, the route's admission, the route's check (ApiError: the caller hands on), then the rate
    limit, which counts only what it admits. So a request handed to the handler is counted once, by
    the handler. Once the write runs, its outcome is the answer, a 201 or the error it raised: it is
    never handed on, or the handler would write again.
    """
    principal = await admitted(app, route, token)
    if principal is None:
        return None
    args = [arg.decode("utf-8") for arg in path_args]
    write = await lean.check(app, principal, body, *args)
    rate = counted(app, principal)
    if rate is None:
        return None
    try:
        data = await write()
        # Encoded inside the try: once the write ran, even a failure to encode is this send's answer
        # (a 500), never a hand-over, after which the handler would post the message again.
        return Answer(encode_json({"data": data}), None, rate, 201)
    except Exception as exc:
        if not isinstance(exc, ApiError) or exc.status >= 500:
            log.exception("a send in the fast lane failed")
        status, headers, encoded = api_error_answer(exc if isinstance(exc, ApiError) else ApiError())
        return Answer(encoded, None, rate, status, headers)


def answer_headers(owner: Application, origin: str | None, answer: Answer) -> list[tuple[str, str]]:
    """The answer's headers, in the order and spelling a ``BaseHandler`` writes them."""
    headers = [("Server", SERVER), ("Date", owner.date_header()), *DEFAULT_HEADERS,
               *cors_headers(owner.rosetta.config.server.cors_origins, origin), *answer.rate.items(),
               *answer.headers.items()]
    if answer.etag is not None:
        headers.append(("Etag", answer.etag))
    headers.append(("Content-Length", str(len(answer.body))))
    return headers


class LeanStats:
    """How many requests the lean path answered and handed on; tests read it, nothing else does."""

    def __init__(self) -> None:
        self.answered = 0
        self.handed_on = 0
        self.in_fast_lane = 0  # of the answered, those the fast lane wrote (rosetta.fastlane)
        self.written_in_fast_lane = 0  # sends the fast lane took (an answered POST, whatever its status)


class LeanGet(tornado.httputil.HTTPMessageDelegate):
    """One plain GET: answered from the route's read, or handed to the route's normal handler."""

    def __init__(self, owner: Application, request: tornado.httputil.HTTPServerRequest, route: type[BaseHandler],
                 lean: LeanRead, path_args: list[bytes], normal: tornado.httputil.HTTPMessageDelegate) -> None:
        self.owner = owner
        self.app = owner.rosetta
        self.request = request
        self.route = route
        self.lean = lean
        self.path_args = path_args
        self.normal = normal
        self.closed = False
        self.start_line: Any = None
        self.headers: tornado.httputil.HTTPHeaders | None = None

    def headers_received(self, start_line: Any, headers: tornado.httputil.HTTPHeaders) -> None:
        self.start_line, self.headers = start_line, headers

    def data_received(self, chunk: bytes) -> None:
        return None  # never called: a request with a body is not plain

    def finish(self) -> None:
        self.request.connection.set_close_callback(self.on_connection_close)  # type: ignore[attr-defined]
        task = asyncio.ensure_future(self.answer())
        self.owner.running.add(task)  # the loop holds tasks weakly
        task.add_done_callback(self.owner.running.discard)

    def on_connection_close(self) -> None:
        self.closed = True

    async def answer(self) -> None:
        try:
            answer = await self.read()
        except Exception:  # handed on: the normal handler does the work again, then answers and logs
            answer = None
        if self.closed:
            return
        try:
            if answer is None:
                self.owner.lean_stats.handed_on += 1
                self.hand_on()
            else:
                self.owner.lean_stats.answered += 1
                self.write(answer)
        except Exception:  # not expected: the client gets a closed connection, never a trace
            log.exception("answering %s failed", self.request.path)
            self.request.connection.close()  # type: ignore[union-attr]

    async def read(self) -> Answer | None:
        """The 200 answer, or None when the normal handler must answer."""
        token = bearer_token(self.request)
        assert token is not None  # is_plain checked it
        return await plain_answer(self.app, self.route, self.lean, token, self.request.query_arguments,
                                  self.path_args)

    def hand_on(self) -> None:
        assert self.headers is not None
        self.normal.headers_received(self.start_line, self.headers)
        self.normal.finish()

    def write(self, answer: Answer) -> None:
        headers = tornado.httputil.HTTPHeaders(
            answer_headers(self.owner, self.request.headers.get("Origin"), answer))
        connection = self.request.connection
        assert connection is not None
        connection.write_headers(tornado.httputil.ResponseStartLine("", 200, "OK"), headers, answer.body)
        connection.finish()
        if self.owner.back_to_lane is not None:
            stream = getattr(connection, "stream", None)
            if stream is not None:
                self.owner.back_to_lane.add(stream)
        request = self.request
        self.app.log_access(200, lambda: f"{request.method} {request.uri} ({request.remote_ip})",
                            1000.0 * request.request_time())


class Application(tornado.web.Application):
    """Tornado's Application, with plain GETs of routes that offer a ``lean_get`` taken by ``LeanGet``."""

    def __init__(self, app: RosettaApp, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rosetta = app
        self.lean_stats = LeanStats()
        self.running: set[asyncio.Task[None]] = set()
        self._date: tuple[int, str] = (0, "")
        self.segments: SegmentRouter | None = None  # the API's router, set by RosettaApp: lean_route asks it
        # Streams the fast lane handed over because its lean read or send was refused: their next request
        # (the same one, read again by Tornado) goes straight to the handler instead of being tried again.
        self.refused: weakref.WeakSet[Any] = weakref.WeakSet()
        # With the fast lane on: streams whose last request LeanGet answered (FastLane.reclaim).
        self.back_to_lane: weakref.WeakSet[Any] | None = None

    def date_header(self) -> str:
        """The Date header for now, formatted once per second (formatting cost ~16 µs a request)."""
        second = int(time.time())
        if self._date[0] != second:
            self._date = (second, tornado.httputil.format_timestamp(second))
        return self._date[1]

    def lean_route(self, method: str, path: str) -> tuple[type[BaseHandler], LeanRead | LeanWrite, list[bytes]] | None:
        """The route ``path`` is dispatched to, what it offers the lean path for ``method`` (a
        ``lean_get`` for GET, a ``lean_post`` for POST), and the path arguments; None if nothing."""
        target = self.segments.target_of(path) if self.segments is not None else None
        if target is None:
            return None
        route, path_args = target
        lean = takes_lean(route, "lean_get" if method == "GET" else "lean_post")
        return (route, lean, path_args) if lean is not None else None

    def get_handler_delegate(self, request: tornado.httputil.HTTPServerRequest,
                             target_class: type[tornado.web.RequestHandler],
                             target_kwargs: dict[str, Any] | None = None, path_args: list[bytes] | None = None,
                             path_kwargs: dict[str, bytes] | None = None) -> tornado.httputil.HTTPMessageDelegate:
        normal = super().get_handler_delegate(request, target_class, target_kwargs, path_args, path_kwargs)
        if self.refused:
            stream = getattr(request.connection, "stream", None)
            if stream in self.refused:
                self.refused.discard(stream)  # the fast lane already tried this request: the handler answers
                return normal
        lean = takes_lean(target_class, "lean_get")
        if not isinstance(lean, LeanRead) or path_kwargs or not is_plain(request, lean):
            return normal
        assert issubclass(target_class, BaseHandler)
        return LeanGet(self, request, target_class, lean, path_args or [], normal)


def takes_lean(route: type[Any], offer: str) -> Any:
    """The route's ``offer`` (``lean_get`` or ``lean_post``), when it has one the lean path can admit
    without a handler."""
    lean = getattr(route, offer, None)
    if lean is None or not issubclass(route, BaseHandler) or not isinstance(route.ability, str):
        return None  # (an ability that depends on the request is a property: only a handler knows it)
    return lean
