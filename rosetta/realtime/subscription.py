"""One live connection: its principal, a cursor (last ``seq`` sent) and a bounded outgoing buffer.

Owns the no-gap/no-duplicate rule and backpressure. A subscription starts *buffering*: live events
the hub hands it while the log is being replayed are kept in ``pending`` (bounded), then
``go_live()`` drains them, skipping any ``seq`` already sent. Writes go straight to the socket's
stream as pre-encoded bytes; when the bytes the kernel did not take yet exceed the bound, the
connection is closed (WebSocket 4008, SSE stream end) and the client resumes from its last ``seq``
- the same replay path, so overflow never loses an event and never waits for a slow client.

Sinks adapt the two transports; they know Tornado streams, nothing about events.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from tornado.iostream import IOStream, StreamClosedError

from rosetta.realtime.wire import Control, Frame

if TYPE_CHECKING:
    from rosetta.services.auth import Principal

log = logging.getLogger("rosetta.realtime")

CLOSE_GOING_AWAY = 1001  # server shutdown
CLOSE_OVERFLOW = 4008  # the client read too slowly: resume from your last seq
CLOSE_REVOKED = 4001  # the credential was revoked or the user deactivated


class Sink(Protocol):
    transport: str  # "ws" | "sse"

    def write(self, data: bytes) -> int: ...  # returns the bytes still unsent in user space
    def drained(self) -> Awaitable[Any]: ...
    def close(self, code: int, reason: str) -> None: ...


def tune_socket(stream: IOStream, send_buffer_bytes: int) -> None:
    """TCP_NODELAY (Nagle would add a 40 ms tail to small frames) and a kernel send buffer of the bound.

    Capping SO_SNDBUF makes "unsent output" mean what the config says: without it Linux autotunes the
    kernel buffer up to megabytes and a stalled reader would hide there, unnoticed.
    """
    stream.set_nodelay(True)
    sock = stream.socket
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)
        except OSError:  # pragma: no cover - some platforms refuse; the userspace bound still holds
            pass


def unsent_bytes(stream: IOStream) -> int:
    # Tornado has no public accessor for the bytes queued in user space; this is what
    # ``max_write_buffer_size`` itself compares against.
    buffer = getattr(stream, "_write_buffer", None)
    return len(buffer) if buffer is not None else 0


class Subscription:
    BUFFERING = "buffering"
    LIVE = "live"

    def __init__(self, connection_id: str, principal: Principal, sink: Sink, limit_bytes: int,
                 on_close: Callable[[Subscription], None]) -> None:
        self.connection_id = connection_id
        self.principal = principal
        self.user_id = principal.user_id
        self.sink = sink
        self.transport = sink.transport
        self.websocket = sink.transport == "ws"  # kept as a bool: tested once per delivery, on the hot path
        self.limit = limit_bytes
        self.on_close = on_close
        self.state = self.BUFFERING
        self.pending: list[Frame] = []
        self.pending_bytes = 0
        self.last_sent = 0  # the highest durable seq written to this connection
        self.sent_from = 0  # everything written is in (sent_from, last_sent]; both 0 until something is
        self.next_sent_from: int | None = None  # sent_from once the replay under way is done
        self.closed = False
        self.close_code: int | None = None
        self.replay_task: asyncio.Task[None] | None = None
        self.held: list[bytes] | None = None  # while corked: frames to write together (see cork)

    # Delivery --------------------------------------------------------------------------------------

    def offer(self, frame: Frame) -> None:
        """A live event from the hub (in seq order). Live-only frames (no seq) skip the buffer."""
        if self.closed:
            return
        if self.state is self.LIVE:
            seq = frame.seq
            if seq is not None:
                if seq <= self.last_sent:
                    return  # already sent by the replay
                self.last_sent = seq
            self._write(frame.ws if self.websocket else frame.sse)
            return
        if frame.seq is None:
            return  # typing/presence while catching up: stale by the time it would be sent
        self.pending.append(frame)
        self.pending_bytes += frame.size(self.transport)
        if self.pending_bytes > self.limit:
            self.close(CLOSE_OVERFLOW, "send buffer overflow")

    def replayed(self, frame: Frame) -> None:
        """An event read back from the log; skipped when this connection already sent it live."""
        seq = frame.seq
        assert seq is not None
        if self.closed or self.sent_from < seq <= self.last_sent:
            return
        self.last_sent = max(self.last_sent, seq)
        self._write(frame.ws if self.websocket else frame.sse)

    def control(self, frame: Control) -> None:
        if not self.closed:
            self._write(frame.ws if self.websocket else frame.sse)

    def start_live(self, seq: int) -> None:
        """No replay asked: live from ``seq`` (the hello's)."""
        self.last_sent = self.sent_from = seq
        self.go_live()

    def go_live(self) -> None:
        """Drain what arrived while replaying (skipping seq already sent), then write live."""
        if self.next_sent_from is not None:
            self.sent_from, self.next_sent_from = self.next_sent_from, None
        pending, self.pending, self.pending_bytes = self.pending, [], 0
        self.state = self.LIVE
        for frame in pending:
            self.offer(frame)

    def begin_replay(self) -> None:
        self.state = self.BUFFERING

    def replaying_from(self, after: int) -> None:
        """The log is read back from ``after``: ``replayed`` skips what this connection wrote, and once
        live again what it wrote starts at ``after`` if that is earlier (the replay filled the gap up
        to the old start), or if it had written nothing. So a later resume from further back replays
        exactly what was never written here (spec §9), however often the client resumes."""
        nothing_written = self.sent_from == self.last_sent == 0
        self.next_sent_from = after if nothing_written else min(self.sent_from, after)

    def cork(self) -> None:
        """Hold writes until ``uncork``: frames of one delivery batch leave in one send."""
        if self.held is None:
            self.held = []

    def uncork(self) -> None:
        held, self.held = self.held, None
        if held and not self.closed:
            self._write(b"".join(held))

    def _write(self, data: bytes) -> None:
        if self.held is not None:
            self.held.append(data)
            return
        try:
            unsent = self.sink.write(data)
        except StreamClosedError:
            self.close(None, "")
            return
        if unsent > self.limit:
            self.close(CLOSE_OVERFLOW, "send buffer overflow")

    async def drained(self) -> bool:
        """Wait until the kernel took everything written (replay flow control); False once closed."""
        if self.closed:
            return False
        try:
            await self.sink.drained()
        except StreamClosedError:
            self.close(None, "")
        return not self.closed

    # End -------------------------------------------------------------------------------------------

    def close(self, code: int | None, reason: str) -> None:
        """Close from the server side (overflow, revocation, shutdown) or note the peer went away."""
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        self.pending.clear()
        if code is not None:
            try:
                self.sink.close(code, reason)
            except Exception:  # the socket may already be gone; the subscription is over either way
                log.debug("closing connection %s failed", self.connection_id, exc_info=True)
        if self.replay_task is not None and not self.replay_task.done() and self.replay_task is not _current():
            self.replay_task.cancel()
        self.on_close(self)

    def peer_closed(self) -> None:
        self.close(None, "")


def _current() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


class WebSocketSink:
    """Writes pre-built frames to the WebSocket's stream (no per-call framing, no compression)."""

    transport = "ws"

    def __init__(self, handler: Any) -> None:
        self.handler = handler
        self.stream: IOStream = handler.ws_connection.stream

    def write(self, data: bytes) -> int:
        stream = self.stream
        # Fast path: nothing queued, so hand the bytes to the kernel directly. ``IOStream.write`` costs a
        # Future and a loop callback per call (profiled: ~2/3 of the Python time of a 1,000-way fan-out).
        # Only when the kernel refuses part of it does the stream queue the rest (and keep the order).
        # This runs once per connection per event: every attribute lookup saved shows in the profile.
        sock = stream.socket
        if sock is not None and not unsent_bytes(stream):
            try:
                sent = sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                stream.close()
                raise StreamClosedError() from None
            if sent == len(data):
                return 0
            data = data[sent:]
        stream.write(data)
        return unsent_bytes(stream)

    def drained(self) -> Awaitable[Any]:
        return self.stream.write(b"")

    def close(self, code: int, reason: str) -> None:
        self.handler.close(code, reason)


class SseSink:
    """Writes SSE blocks through the handler (chunked encoding); ``close`` ends the stream."""

    transport = "sse"

    def __init__(self, handler: Any, end: Callable[[int], None]) -> None:
        self.handler = handler
        self.stream: IOStream = handler.request.connection.stream
        self.end = end

    def write(self, data: bytes) -> int:
        if self.stream.closed():
            raise StreamClosedError()
        self.handler.write(data)
        self.handler.flush()
        return unsent_bytes(self.stream)

    def drained(self) -> Awaitable[Any]:
        return self.stream.write(b"")

    def close(self, code: int, reason: str) -> None:
        self.end(code)
