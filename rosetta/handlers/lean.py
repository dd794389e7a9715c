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
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import tornado
import tornado.httputil
import tornado.web

from rosetta.handlers.base import (
    DEFAULT_HEADERS,
    BaseHandler,
    bearer_token,
    cors_headers,
    rate_headers,
    rate_key,
    refusal,
)
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


class LeanStats:
    """How many requests the lean path answered and handed on; tests read it, nothing else does."""

    def __init__(self) -> None:
        self.answered = 0
        self.handed_on = 0


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
                self.write(*answer)
        except Exception:  # not expected: the client gets a closed connection, never a trace
            log.exception("answering %s failed", self.request.path)
            self.request.connection.close()  # type: ignore[union-attr]

    async def read(self) -> tuple[bytes, str, dict[str, str]] | None:
        """The 200 answer (body, ETag, rate-limit headers), or None when the normal handler must answer."""
        token = bearer_token(self.request)
        assert token is not None  # is_plain checked it
        principal: Principal | None = await self.app.tokens.resolve(token)
        if principal is None or refusal(principal, self.route.ability, self.route.allow_guest) is not None:
            return None
        path_args = [arg.decode("utf-8") for arg in self.path_args]  # not UTF-8: handed on, the handler says 400
        body, etag = await self.lean.read(self.app, principal, PlainQuery(self.request.query_arguments), *path_args)
        verdict = self.app.limiter.hit("api", rate_key(principal), self.app.config.limits.api_per_minute, 60)
        if not verdict.allowed:
            return None
        return body, etag, rate_headers(verdict) if verdict.limit else {}

    def hand_on(self) -> None:
        assert self.headers is not None
        self.normal.headers_received(self.start_line, self.headers)
        self.normal.finish()

    def write(self, body: bytes, etag: str, extra: dict[str, str]) -> None:
        headers = tornado.httputil.HTTPHeaders()
        headers["Server"] = SERVER
        headers["Date"] = self.owner.date_header()
        for name, value in DEFAULT_HEADERS:
            headers[name] = value
        for name, value in cors_headers(self.app.config.server.cors_origins, self.request):
            headers[name] = value
        for name, value in extra.items():
            headers[name] = value
        headers["Etag"] = etag
        headers["Content-Length"] = str(len(body))
        connection = self.request.connection
        assert connection is not None
        connection.write_headers(tornado.httputil.ResponseStartLine("", 200, "OK"), headers, body)
        connection.finish()
        summary = f"{self.request.method} {self.request.uri} ({self.request.remote_ip})"
        self.app.log_access(200, summary, 1000.0 * self.request.request_time())


class Application(tornado.web.Application):
    """Tornado's Application, with plain GETs of routes that offer a ``lean_get`` taken by ``LeanGet``."""

    def __init__(self, app: RosettaApp, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rosetta = app
        self.lean_stats = LeanStats()
        self.running: set[asyncio.Task[None]] = set()
        self._date: tuple[int, str] = (0, "")

    def date_header(self) -> str:
        """The Date header for now, formatted once per second (formatting cost ~16 µs a request)."""
        second = int(time.time())
        if self._date[0] != second:
            self._date = (second, tornado.httputil.format_timestamp(second))
        return self._date[1]

    def get_handler_delegate(self, request: tornado.httputil.HTTPServerRequest,
                             target_class: type[tornado.web.RequestHandler],
                             target_kwargs: dict[str, Any] | None = None, path_args: list[bytes] | None = None,
                             path_kwargs: dict[str, bytes] | None = None) -> tornado.httputil.HTTPMessageDelegate:
        normal = super().get_handler_delegate(request, target_class, target_kwargs, path_args, path_kwargs)
        lean: LeanRead | None = getattr(target_class, "lean_get", None)
        if (lean is None or path_kwargs or not issubclass(target_class, BaseHandler)
                or not isinstance(target_class.ability, str) or not is_plain(request, lean)):
            return normal  # (an ability that depends on the request is a property: only a handler knows it)
        return LeanGet(self, request, target_class, lean, path_args or [], normal)
