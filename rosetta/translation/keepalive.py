"""HTTP/1.1 to translation engines over connections kept open between calls.

Owns the provider's connections: a small pool of idle ones per origin (scheme, host, port), one
request at a time on each, and the rules for when a connection may be used again.

Why not Tornado's ``AsyncHTTPClient``: its default (simple) client asks for ``Connection: close``
and opens a new connection for every request. Against a hosted engine (DeepL, an OpenAI endpoint)
every call then paid a DNS lookup, a TCP handshake and a TLS handshake, two or three round trips
before the request left, on every batch the queue sends. The curl client keeps connections but
needs pycurl, a C library outside the stack. So this speaks HTTP/1.1 with Tornado's own
``HTTP1Connection`` (the parser the server uses) over streams it keeps.

A connection goes back to the pool only after a whole response framed by Content-Length or chunked
encoding, from an HTTP/1.1 server that did not say ``Connection: close``. A connection that sat idle
may have been closed by the server meanwhile; a request on such a connection that fails before any
answer arrived is sent once more on a fresh one. A translation is safe to ask for twice.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from tornado import httputil
from tornado.http1connection import HTTP1Connection, HTTP1ConnectionParameters
from tornado.iostream import IOStream, StreamBufferFullError, StreamClosedError
from tornado.tcpclient import TCPClient

MAX_ANSWER_BYTES = 16 * 1024 * 1024  # a batch of 128 long texts is ~3 MB even as \u-escaped JSON
MAX_HEAD_BYTES = 64 * 1024
# Servers drop idle connections after 5 s (Go's default for some proxies) to 75 s (nginx); a connection
# idle longer than this is closed rather than tried. One closed earlier costs a retry, not an error.
IDLE_S = 30.0
DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]


class BadAnswer(Exception):
    """The engine's answer was not HTTP we accept (malformed, too large, cut off)."""


@dataclass
class Answer:
    code: int
    body: bytes


class _Collect(httputil.HTTPMessageDelegate):
    """Keeps one response: its start line, headers and body."""

    def __init__(self) -> None:
        self.start: httputil.ResponseStartLine | None = None
        self.headers = httputil.HTTPHeaders()
        self.chunks: list[bytes] = []
        self.finished = False

    def headers_received(self, start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
                         headers: httputil.HTTPHeaders) -> None:
        assert isinstance(start_line, httputil.ResponseStartLine)
        self.start = start_line
        self.headers = headers

    def data_received(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    def finish(self) -> None:
        self.finished = True

    def on_connection_close(self) -> None:
        pass

    def reusable(self) -> bool:
        """May the connection carry another request after this response?"""
        assert self.start is not None
        # Tornado read the body by these headers and refused any other framing, so either one means
        # the answer ended where it said; without both it ran to the connection's close.
        chunked = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
        framed = "Content-Length" in self.headers or chunked
        closing = self.headers.get("Connection", "").lower() == "close"
        return self.start.version == "HTTP/1.1" and framed and not closing


class KeepAliveClient:
    """Requests to a few engine origins, each over a pooled connection when one is idle.

    ``max_idle`` bounds the idle connections kept per origin; the provider's semaphore bounds those
    in use. ``ssl_context`` verifies HTTPS engines (the system's trust store when not given).
    """

    def __init__(self, max_idle: int, ssl_context: ssl.SSLContext | None = None,
                 max_answer_bytes: int = MAX_ANSWER_BYTES) -> None:
        self.max_idle = max_idle
        self.ssl_context = ssl_context
        self.max_answer_bytes = max_answer_bytes
        self._idle: dict[Origin, list[tuple[IOStream, float]]] = {}
        self._tcp = TCPClient()
        self._params = HTTP1ConnectionParameters(no_keep_alive=False, max_header_size=MAX_HEAD_BYTES,
                                                 max_body_size=max_answer_bytes, decompress=False)
        self.connections_opened = 0  # how often a call could not reuse a connection (the tests read it)

    async def fetch(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
                    timeout_s: float) -> Answer:
        """One request with a deadline of ``timeout_s`` for everything (connecting included).

        Raises TimeoutError, OSError (StreamClosedError among them) or BadAnswer.
        """
        try:
            parts = urlsplit(url)
            port = parts.port  # both raise ValueError: urlsplit for "http://[::1", .port for "h:99999" or "h:x"
        except ValueError as exc:
            # load_config refuses such a translation.url; a provider built some other way still gets a
            # BadAnswer (so a ProviderError for the queue), never an exception the worker did not expect.
            raise BadAnswer(f"not a valid URL: {url} ({exc})") from None
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise BadAnswer(f"not an http(s) URL: {url}")
        origin: Origin = (parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme])
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        deadline = asyncio.get_running_loop().time() + timeout_s  # the loop's clock, which asyncio.timeout_at takes
        stream = self._take(origin)
        if stream is not None:
            try:
                return await self._exchange(origin, stream, method, target, headers, body, deadline)
            except _NoAnswer:
                pass  # the server closed it while it was idle: once more, on a fresh connection
        stream = await self._connect(origin, deadline)
        try:
            return await self._exchange(origin, stream, method, target, headers, body, deadline)
        except _NoAnswer as failed:
            if isinstance(failed.__cause__, OSError):
                raise failed.__cause__ from None  # e.g. the connection was reset: say so
            raise BadAnswer("no answer: the connection closed, or the answer's head was malformed") from None

    def close(self) -> None:
        for streams in self._idle.values():
            for stream, _ in streams:
                stream.close()
        self._idle.clear()

    def idle_count(self) -> int:
        return sum(len(streams) for streams in self._idle.values())

    # Connections ----------------------------------------------------------------------------------------

    def _take(self, origin: Origin) -> IOStream | None:
        """The most recently used idle connection still worth trying, if any (older ones are closed)."""
        streams = self._idle.get(origin)
        now = time.monotonic()
        while streams:
            stream, since = streams.pop()
            if not stream.closed() and now - since < IDLE_S:
                return stream
            stream.close()
        return None

    def _give_back(self, origin: Origin, stream: IOStream) -> None:
        streams = self._idle.setdefault(origin, [])
        if len(streams) >= self.max_idle or stream.closed():
            stream.close()
            return
        streams.append((stream, time.monotonic()))

    async def _connect(self, origin: Origin, deadline: float) -> IOStream:
        scheme, host, port = origin
        remaining = max(deadline - asyncio.get_running_loop().time(), 0.0)
        context = None
        if scheme == "https":
            if self.ssl_context is None:  # made once: loading the system's trust store takes milliseconds
                self.ssl_context = ssl.create_default_context()
            context = self.ssl_context
        stream = await self._tcp.connect(host, port, ssl_options=context,
                                         max_buffer_size=self.max_answer_bytes + MAX_HEAD_BYTES,
                                         timeout=datetime.timedelta(seconds=remaining))
        self.connections_opened += 1
        return stream

    async def _exchange(self, origin: Origin, stream: IOStream, method: str, target: str, headers: dict[str, str],
                        body: bytes | None, deadline: float) -> Answer:
        """One request and its response on ``stream``; the stream is pooled again or closed."""
        scheme, host, port = origin
        head = httputil.HTTPHeaders(headers)
        head["Host"] = host if port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
        # Without Accept-Encoding any coding is acceptable (RFC 9110 §12.5.3); answers are small, and
        # an uncompressed one can be bounded by its size on the wire.
        head["Accept-Encoding"] = "identity"
        if body is not None:
            head["Content-Length"] = str(len(body))
        stream.set_nodelay(True)  # Tornado turns Nagle back on after each request; a request is one write
        connection = HTTP1Connection(stream, True, self._params)
        collect = _Collect()
        try:
            async with asyncio.timeout_at(deadline):
                await connection.write_headers(httputil.RequestStartLine(method, target, "HTTP/1.1"), head, body)
                connection.finish()
                await connection.read_response(collect)
        except (StreamClosedError, ConnectionError) as exc:
            stream.close()
            if collect.start is None:
                raise _NoAnswer() from exc
            raise
        except StreamBufferFullError:  # an answer without a length, longer than the limit
            stream.close()
            raise BadAnswer("the answer is over the size limit") from None
        except BaseException:  # a timeout, a cancellation: what is left on this connection is unknown
            stream.close()
            raise
        if collect.start is None or not collect.finished:
            stream.close()
            if collect.start is None:
                raise _NoAnswer()
            raise BadAnswer("the answer was malformed, cut off or over the size limit")
        if collect.reusable():
            self._give_back(origin, stream)
        else:
            stream.close()
        return Answer(collect.start.code, b"".join(collect.chunks))


class _NoAnswer(Exception):
    """The connection failed before any of an answer arrived (the request may be sent again)."""

