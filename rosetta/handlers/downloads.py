"""Sending stored files over HTTP: safe headers, ETag / If-None-Match, single byte ranges, chunked streaming.

Owns the download response. Every file goes out as an attachment with ``nosniff`` and a sandboxing
CSP, so an uploaded SVG or HTML page can never run in the server's origin. Bytes are read from disk
in ``CHUNK_BYTES`` pieces off the event loop and written with flow control (``flush()`` waits for
the socket), so a download of any size holds one chunk in memory. No ROUTES here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from tornado.iostream import StreamClosedError

from rosetta.errors import ApiError, NotFound
from rosetta.files.names import content_disposition

if TYPE_CHECKING:
    from rosetta.handlers.base import BaseHandler

CHUNK_BYTES = 256 * 1024  # one executor hop (~60 µs) per 256 KiB keeps the hop cost under 1% at disk speed
# At most 18 digits a side (more than any file's size): int() refuses strings of over 4,300 digits,
# and a longer header is malformed, so ignored (the whole file is sent).
_RANGE_RE = re.compile(r"^bytes=(\d{0,18})-(\d{0,18})$")


class RangeNotSatisfiable(ApiError):
    status = 416
    message = "Requested range not satisfiable."

    def __init__(self, size: int) -> None:
        super().__init__(headers={"Content-Range": f"bytes */{size}"})


UNSATISFIABLE = (-1, -1)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` inclusive for one satisfiable range; None to send everything; UNSATISFIABLE.

    Several ranges or a malformed header are answered with the whole file, as RFC 9110 allows.
    """
    if not header:
        return None
    match = _RANGE_RE.match(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # a suffix: the last N bytes
        length = int(last)
        if length == 0:
            return UNSATISFIABLE
        return max(0, size - length), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # invalid, so ignored
    if start >= size:
        return UNSATISFIABLE
    return start, min(end, size - 1)


def etag_matches(header: str | None, etag: str) -> bool:
    """If-None-Match uses the weak comparison: ``W/"x"`` matches ``"x"``; ``*`` matches anything."""
    if not header:
        return False
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


async def send_file(handler: BaseHandler, path: Path, *, size: int, etag_hex: str, mime_type: str, name: str,
                    inline: bool = False) -> None:
    """Answer with the file at ``path`` (200, 206, 304 or 416)."""
    etag = f'"{etag_hex}"'
    handler.set_header("ETag", etag)
    handler.set_header("Accept-Ranges", "bytes")
    handler.set_header("X-Content-Type-Options", "nosniff")
    handler.set_header("Content-Security-Policy", "sandbox")
    handler.set_header("Cache-Control", "private, no-cache")  # revalidate with the ETag; never in a shared cache
    handler.set_header("Content-Disposition", "inline" if inline else content_disposition(name))
    if etag_matches(handler.request.headers.get("If-None-Match"), etag):
        handler.set_status(304)
        handler.clear_header("Content-Type")
        handler.finish()
        return
    wanted = parse_range(handler.request.headers.get("Range"), size)
    if_range = handler.request.headers.get("If-Range")
    if wanted is not None and if_range is not None and if_range.strip() != etag:
        wanted = None  # the client's copy is stale: send the whole new file
    if wanted == UNSATISFIABLE:
        raise RangeNotSatisfiable(size)
    first, last = wanted if wanted is not None else (0, size - 1)
    try:
        stream = await handler.app.ctx.off_loop(open, path, "rb")
    except FileNotFoundError:
        raise NotFound() from None  # deleted between the row check and now
    try:
        if wanted is not None:
            handler.set_status(206)
            handler.set_header("Content-Range", f"bytes {first}-{last}/{size}")
        handler.set_header("Content-Type", mime_type)
        handler.set_header("Content-Length", str(last - first + 1))
        if first:
            await handler.app.ctx.off_loop(stream.seek, first)
        remaining = last - first + 1
        while remaining > 0:
            chunk = await handler.app.ctx.off_loop(stream.read, min(CHUNK_BYTES, remaining))
            if not chunk:
                break  # the file shrank under us: the client sees a short body, never a wrong one
            remaining -= len(chunk)
            handler.write(chunk)
            try:
                await handler.flush()
            except StreamClosedError:
                return  # the client went away (a cancelled download): nothing to answer
    finally:
        stream.close()
    handler.finish()
