"""The fast lane: keep-alive connections served without Tornado's HTTP/1 code while they read history and send.

Owns a new connection from accept until its first request the lane does not answer; then hands the
connection, that request still unread in the kernel, to Tornado's ``HTTPServer``. Tornado reads the
request as if the lane had never looked, so every other request and every refusal keep their one
implementation (``BaseHandler``, WebSocket upgrades, uploads). Tornado keeps the connection until
its lean path (``LeanGet``) answers a read on it; the lane then takes it back (``reclaim``) before
its next request, so a client mixing requests on one connection is mostly served in the lane.

Why: history reads and message sends are what clients do most, and most of their cost was Tornado's
connection and handler code, not ours: futures and a timeout per read of a request head,
``HTTPServerRequest``, ``HTTPHeaders``, the router, the handler's life cycle, ``write_headers``.
Measured on this 2-core machine with 2 pinned workers: an asyncio protocol writing a 20 KB answer
cost 50-90 µs of server CPU per request, a Tornado ``HTTPMessageDelegate`` 240 µs (``/tmp/s10/raw.py``).

How a request is taken:

1. The request is read with ``MSG_PEEK``: nothing leaves the kernel until the lane answers.
2. It must be whole in that read (head and body), and plain, parsed strictly: ``GET|POST <path>
   HTTP/1.1``, a path of unreserved characters only (so no decoding can disagree with Tornado's),
   for a GET only the query arguments its read understands (``lean.LeanRead.query``), each once,
   letters and digits, for a POST no query and a Content-Length body; headers that are well-formed
   (RFC 9110, as Tornado checks them), each name once, with a bearer token, no conditional, no
   guest token, no upgrade, no ``Expect``, no ``Transfer-Encoding``. ``Connection: close`` is
   honoured (the answer says so and the connection ends); any other ``Connection`` value is not plain.
3. The route is the one Tornado's router would choose (``SegmentRouter.target_of``) and must offer
   the lane a ``lean_get`` (history) or a ``lean_post`` (a send).
4. ``lean.plain_answer`` or ``lean.plain_write`` runs: the same functions ``LeanGet`` and the
   handlers use. What they answer is consumed from the socket and written with one ``send``; None
   (401, 403, 404, 422, 429: nothing written) hands the connection over with the request unread, and
   marks it so Tornado's lean path does not try the same read again.

Anything unexpected hands over too: a request split over two reads, an unknown header form, a
request longer than ``PEEK_BYTES``. A connection being answered is not read, so answers leave in order.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import socket
import time
import weakref
from typing import TYPE_CHECKING, Any

import tornado.httputil
import tornado.iostream

from rosetta.handlers import lean
from rosetta.handlers.base import bearer_of

if TYPE_CHECKING:
    from rosetta.httpserver import HTTPServer

log = logging.getLogger("rosetta.http")

PEEK_BYTES = 8192  # a longer request (head and body) is Tornado's (its own bound on a head is 64 KiB)
SHUTDOWN_WAIT_S = 10.0  # how long shutdown waits for the answers being made
IDLE_SWEEP_S = 10.0  # how often idle connections are looked for; they live idle_timeout_s to this much more
# The method (group 1) and the target (2): a path of unreserved characters (3) and, for a GET, an
# optional query (4).
REQUEST_LINE = re.compile(rb"(GET|POST) ((/[A-Za-z0-9/_.~-]*)(?:\?([A-Za-z0-9=&]*))?) HTTP/1\.1\Z")
# A field name (a token) and a value of visible characters, inner spaces and tabs (RFC 9110 5.5, as
# Tornado checks it): a control character anywhere, a bare CR or LF included, fails the match.
HEADER = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*"
                    rb"((?:[\x21-\x7e\x80-\xff](?:[\x21-\x7e\x80-\xff \t]*[\x21-\x7e\x80-\xff])?)?)[ \t]*\Z")
# name=value, both what the lean path calls a plain value (lean.PLAIN_VALUE: letters and digits).
PLAIN = lean.PLAIN_VALUE.pattern.removesuffix(rb"\Z")
QUERY_PART = re.compile(rb"(" + PLAIN + rb")=(" + PLAIN + rb")\Z")
DIGITS = re.compile(r"[0-9]{1,9}\Z")
# Headers that make a request something the lane leaves to Tornado, lower-cased: those that make a
# GET not plain for the lean path (lean.NOT_PLAIN) except Content-Length, which a POST must carry and
# parse_plain checks itself, and those that change the connection itself.
NOT_PLAIN = (frozenset(name.lower() for name in lean.NOT_PLAIN) - {"content-length"}
             | {"upgrade", "expect", "te", "trailer"})


@functools.lru_cache(maxsize=64)
def canonical(name: str) -> str:
    """A header name spelled as Tornado writes it (``X-RateLimit-Limit`` → ``X-Ratelimit-Limit``)."""
    return "-".join(word.capitalize() for word in name.split("-"))


class PlainRequest:
    """A request the lane takes: what ``plain_answer``/``plain_write`` and the access log need of it."""

    __slots__ = ("body_length", "close", "head_length", "method", "origin", "query", "route", "target", "token")

    def __init__(self, method: str, target: str, head_length: int, body_length: int, token: str,
                 origin: str | None, close: bool, query: dict[str, list[bytes]],
                 route: tuple[Any, lean.LeanRead | lean.LeanWrite, list[bytes]]) -> None:
        self.method = method
        self.target = target
        self.head_length = head_length  # bytes of the head, its blank line included
        self.body_length = body_length  # a POST's Content-Length; 0 for a GET
        self.token = token
        self.origin = origin
        self.close = close
        self.query = query
        self.route = route

    @property
    def length(self) -> int:
        return self.head_length + self.body_length


def parse_plain(head: bytes, http: lean.Application) -> PlainRequest | None:
    """``head`` (without its blank line) as a request the lane takes, or None: Tornado's then.

    A GET of a route with a ``lean_get``, with only the query arguments its read understands; or a
    POST of a route with a ``lean_post``, without a query, with a Content-Length body.
    """
    lines = head.split(b"\r\n")
    request_line = REQUEST_LINE.match(lines[0])
    if request_line is None:
        return None
    method, target, path, raw_query = (part.decode("ascii") if part is not None else None
                                       for part in request_line.groups())
    assert method is not None and target is not None and path is not None
    route = http.lean_route(method, path)
    if route is None or (method == "POST" and raw_query is not None):
        return None
    query: dict[str, list[bytes]] = {}
    if raw_query:
        offered = route[1]
        assert isinstance(offered, lean.LeanRead)
        for part in raw_query.encode("ascii").split(b"&"):
            argument = QUERY_PART.match(part)
            if argument is None:
                return None
            name = argument.group(1).decode("ascii")
            if name in query or name not in offered.query:
                return None
            query[name] = [argument.group(2)]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        header = HEADER.match(line)
        if header is None:
            return None
        name = header.group(1).decode("ascii").lower()
        if name in headers or name in NOT_PLAIN:
            return None
        headers[name] = header.group(2).decode("latin-1")
    token = bearer_of(headers.get("authorization", ""))
    connection = headers.get("connection", "keep-alive").lower()
    if not token or connection not in ("keep-alive", "close"):
        return None
    declared = headers.get("content-length")
    if method == "GET":
        if declared is not None:
            return None
        body_length = 0
    elif declared is None or not DIGITS.match(declared):
        return None
    else:
        body_length = int(declared)
    return PlainRequest(method, target, len(head) + 4, body_length, token, headers.get("origin"),
                        connection == "close", query, route)


class FastLane:
    """One worker's lane: its connections, and where they go when the lane is done with them."""

    def __init__(self, http: lean.Application, server: HTTPServer, idle_timeout_s: float) -> None:
        self.http = http
        self.app = http.rosetta
        self.server = server  # Tornado's, which the lane hands connections to and takes them back from
        self.idle_timeout_s = idle_timeout_s
        # A longer body is Tornado's, which refuses it (413) as every route does: the lane itself only
        # ever reads PEEK_BYTES, but server.max_body_mb may be set lower than that.
        self.body_limit = int(self.app.config.server.max_body_mb * 1024 * 1024)
        http.back_to_lane = weakref.WeakSet()  # streams whose last request Tornado's lean path answered
        self.connections: set[FastConnection] = set()
        self._sweeper: asyncio.TimerHandle | None = None

    def take(self, stream: tornado.iostream.IOStream, address: Any) -> None:
        sock = stream.socket
        if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
            self.server.serve_http(stream, address)
            return
        connection = FastConnection(self, stream, sock, address)
        self.connections.add(connection)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(IDLE_SWEEP_S, self._sweep)
        connection.wait_for_request()

    def reclaim(self, stream: tornado.iostream.IOStream, address: Any) -> bool:
        """Take back a connection between two requests if Tornado's lean path answered the last one.

        Called by the server before Tornado reads a connection's next request. A client that mixes
        requests on one connection (a browser, a proxy) comes back to history after other requests:
        its first read after them costs Tornado's lean path, the rest the lane's. The socket is
        duplicated and Tornado's stream closed, which ends Tornado's request loop as a client leaving
        would (the server counts it closed, then open again here). Not when Tornado has already read
        bytes of the next request: they are in its buffer, not in the kernel.
        """
        marked = self.http.back_to_lane
        if marked is None or stream not in marked:
            return False
        marked.discard(stream)
        # Tornado has no public accessor for its read buffer; without this attribute, never reclaim.
        if getattr(stream, "_read_buffer_size", None) != 0 or stream.closed() or stream.socket is None:
            return False
        try:
            copy = socket.socket(fileno=os.dup(stream.socket.fileno()))
        except OSError:
            return False
        stream.close()
        self.server.serve_socket(copy, address)
        return True

    def close_idle(self, now: float) -> int:
        """Close the connections waiting for a request since before ``now - idle_timeout_s``; how many."""
        idle = [c for c in self.connections if c.task is None and c.last_active < now - self.idle_timeout_s]
        for connection in idle:
            connection.close()
        return len(idle)

    async def close_all(self) -> None:
        """Shutdown: answers being made are finished first (a send may be writing), then all close."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for connection in [c for c in self.connections if c.task is None]:
            connection.close()
        answering = [c.task for c in self.connections if c.task is not None]
        if answering:
            await asyncio.wait(answering, timeout=SHUTDOWN_WAIT_S)
        for connection in list(self.connections):
            connection.close()

    def _sweep(self) -> None:
        self._sweeper = None
        self.close_idle(time.monotonic())
        if self.connections:
            self._sweeper = asyncio.get_running_loop().call_later(IDLE_SWEEP_S, self._sweep)


class FastConnection:
    """One connection in the lane: waiting for a request, answering one, or writing an answer out."""

    __slots__ = ("address", "fd", "handed", "lane", "last_active", "loop", "pending", "remote_ip", "sock",
                 "stream", "task", "waiting")

    def __init__(self, lane: FastLane, stream: tornado.iostream.IOStream, sock: socket.socket,
                 address: Any) -> None:
        self.lane = lane
        self.stream = stream
        self.sock = sock
        self.fd = sock.fileno()
        self.address = address
        self.remote_ip = address[0] if isinstance(address, tuple) and address else "0.0.0.0"  # noqa: S104
        self.loop = asyncio.get_running_loop()
        self.last_active = time.monotonic()
        self.waiting = False  # the reader is registered
        self.pending: memoryview | None = None  # the part of an answer the kernel has not taken yet
        self.handed = False  # Tornado's from now on
        self.task: asyncio.Task[None] | None = None
        try:  # one send carries a whole answer: Nagle would only hold its last segment back
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # already reset by the peer: the first read will say so
            pass

    def wait_for_request(self) -> None:
        self.waiting = True
        self.loop.add_reader(self.fd, self._readable)

    def _stop_waiting(self) -> None:
        if self.waiting:
            self.waiting = False
            self.loop.remove_reader(self.fd)

    def _readable(self) -> None:
        try:
            data = self.sock.recv(PEEK_BYTES, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if not data:
            self.close()  # the client closed between requests
            return
        began = time.time()
        end = data.find(b"\r\n\r\n")
        try:
            request = parse_plain(data[:end], self.lane.http) if end >= 0 else None
        except Exception:  # not expected: Tornado reads the request instead, and answers it as usual
            log.exception("reading a request head in the fast lane failed")
            request = None
        self._stop_waiting()
        # (A body still on its way: Tornado waits for it.)
        if request is None or len(data) < request.length or request.body_length > self.lane.body_limit:
            self._hand_over(refused=False)
            return
        body = data[request.head_length:request.length]
        self.task = self.loop.create_task(self._answer(request, body, began))

    async def _answer(self, request: PlainRequest, body: bytes, began: float) -> None:
        route, offered, path_args = request.route
        app = self.lane.app
        try:
            if isinstance(offered, lean.LeanRead):
                answer = await lean.plain_answer(app, route, offered, request.token, request.query, path_args)
            else:
                answer = await lean.plain_write(app, route, offered, request.token, body, path_args)
        except Exception:  # handed over: the handler does the work again (nothing was written), and answers
            answer = None
        self.task = None
        if self.sock.fileno() < 0:
            return  # closed while answering (shutdown); a write done is done, as when a client leaves
        stats = self.lane.http.lean_stats
        try:
            if answer is None:
                stats.handed_on += 1
                self._hand_over(refused=True)
                return
            if request.method == "GET":
                stats.answered += 1
                stats.in_fast_lane += 1
            else:
                stats.written_in_fast_lane += 1
            self._write(request, answer)
        except Exception:  # not expected: the client gets a closed connection, never a trace
            log.exception("answering %s failed", request.target)
            self.close()
            return
        app.log_access(answer.status, lambda: f"{request.method} {request.target} ({self.remote_ip})",
                       1000.0 * (time.time() - began))

    def _write(self, request: PlainRequest, answer: lean.Answer) -> None:
        taken = self.sock.recv(request.length)  # the request peeked at: it is in the kernel, whole
        if len(taken) != request.length:
            raise ConnectionError("the request changed under the peek")
        headers = lean.answer_headers(self.lane.http, request.origin, answer)
        if request.close:
            headers.append(("Connection", "close"))
        status = f"HTTP/1.1 {answer.status} {tornado.httputil.responses.get(answer.status, 'Unknown')}\r\n"
        head = status + "".join(f"{canonical(name)}: {value}\r\n" for name, value in headers) + "\r\n"
        data = head.encode("latin-1") + answer.body
        self.last_active = time.monotonic()
        self._send(data, request.close)

    def _send(self, data: bytes | memoryview, then_close: bool) -> None:
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.close()
            return
        if sent < len(data):
            self.pending = memoryview(data)[sent:]  # a view: a slow reader must not cost a copy per send
            self.loop.add_writer(self.fd, self._writable, then_close)
        elif then_close:
            self.close()
        else:
            self.wait_for_request()

    def _writable(self, then_close: bool) -> None:
        self.loop.remove_writer(self.fd)
        data, self.pending = self.pending, None
        self._send(data, then_close)

    def _hand_over(self, refused: bool) -> None:
        self.handed = True
        self.lane.connections.discard(self)
        if refused:
            self.lane.http.refused.add(self.stream)
        self.lane.server.serve_http(self.stream, self.address)

    def close(self) -> None:
        """End the connection (the client left, an idle timeout, shutdown, a failure); the lane forgets it."""
        if self.handed or self.stream.closed():
            return  # Tornado closes what it was handed, and counts it
        self.lane.connections.discard(self)
        self._stop_waiting()
        if self.pending is not None:
            self.loop.remove_writer(self.fd)
            self.pending = None
        if self.task is not None:
            self.task.cancel()
            self.task = None
        self.stream.close()
        self.lane.server.lane_closed()
