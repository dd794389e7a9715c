"""A streaming ``multipart/form-data`` parser: feed it the body in any pieces, it emits parts as they arrive.

Owns the wire format only (RFC 7578 / RFC 2046 framing and the Content-Disposition parameters,
RFC 6266 / RFC 5987 ``filename*``). It never holds more than one piece plus a delimiter's length of
body in memory, so an upload of any size streams through; what to do with a part's bytes is the
caller's business. Malformed input raises ``MultipartError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

MAX_HEADER_BYTES = 16 * 1024  # one part's header block; real clients send a few hundred bytes
MAX_PARTS = 32
MAX_PREAMBLE_BYTES = 64 * 1024


class MultipartError(ValueError):
    """The body is not well-formed multipart/form-data."""


@dataclass(frozen=True)
class PartStart:
    name: str
    filename: str | None  # None for a plain field; the client's name (may be hostile) for a file
    content_type: str | None


@dataclass(frozen=True)
class PartData:
    data: bytes


@dataclass(frozen=True)
class PartEnd:
    pass


Event = PartStart | PartData | PartEnd

_PREAMBLE, _AFTER_DELIMITER, _HEADERS, _BODY, _DONE = range(5)


def boundary_of(content_type: str | None) -> bytes | None:
    """The boundary of a ``multipart/form-data`` Content-Type, or None when it is not one."""
    if not content_type:
        return None
    kind, params = parse_header_params(content_type)
    if kind.lower() != "multipart/form-data":
        return None
    boundary = params.get("boundary", "")
    # RFC 2046: 1..70 characters; anything else cannot be a real client's boundary.
    if not 1 <= len(boundary) <= 70:
        return None
    try:
        return boundary.encode("ascii")
    except UnicodeEncodeError:
        return None


def parse_header_params(value: str) -> tuple[str, dict[str, str]]:
    """``form-data; name="file"; filename*=UTF-8''n%C3%A4me`` → (``form-data``, params).

    Quoted values keep their content, with only ``\\"`` and ``\\\\`` unescaped (browsers send Windows paths
    unescaped). ``name*`` parameters (RFC 5987) are decoded and win over their plain form.
    """
    parts = _split_params(value)
    kind = parts[0].strip() if parts else ""
    plain: dict[str, str] = {}
    extended: dict[str, str] = {}
    for piece in parts[1:]:
        key, sep, raw = piece.partition("=")
        if not sep:
            continue
        key = key.strip().lower()
        raw = raw.strip()
        if key.endswith("*"):
            decoded = _decode_extended(raw)
            if decoded is not None:
                extended[key[:-1]] = decoded
            continue
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        plain[key] = raw
    plain.update(extended)
    return kind, plain


def _split_params(value: str) -> list[str]:
    """Split on ``;`` outside quoted strings."""
    out: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ";" and not quoted:
            out.append("".join(current))
            current = []
            continue
        current.append(char)
    out.append("".join(current))
    return out


def _decode_extended(raw: str) -> str | None:
    """RFC 5987 ``charset'language'percent-encoded``; only UTF-8 and ISO-8859-1 are understood."""
    charset, sep, rest = raw.partition("'")
    if not sep:
        return None
    _language, sep, encoded = rest.partition("'")
    if not sep:
        return None
    charset = charset.strip().lower()
    if charset not in ("utf-8", "iso-8859-1"):
        return None
    return unquote(encoded, encoding=charset, errors="replace")


class StreamingMultipartParser:
    """``events = parser.feed(piece)`` for each piece of the body, then ``parser.close()``.

    Events come in order: ``PartStart``, any number of ``PartData``, ``PartEnd``, for each part.
    """

    def __init__(self, boundary: bytes) -> None:
        self._delimiter = b"\r\n--" + boundary
        # The first boundary has no CRLF before it: pretend it had one so one delimiter fits all.
        self._buffer = b"\r\n"
        self._state = _PREAMBLE
        self._parts = 0
        self._preamble_seen = 0

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def feed(self, data: bytes) -> list[Event]:
        if self._state == _DONE:
            return []  # the epilogue after the closing delimiter is ignored (RFC 2046)
        self._buffer = self._buffer + data if self._buffer else data
        events: list[Event] = []
        while True:
            if self._state == _PREAMBLE:
                if not self._skip_preamble():
                    break
            elif self._state == _AFTER_DELIMITER:
                if not self._after_delimiter():
                    break
                if self._state == _DONE:
                    self._buffer = b""
                    break
            elif self._state == _HEADERS:
                start = self._headers()
                if start is None:
                    break
                events.append(start)
            elif self._state == _BODY:
                if not self._body(events):
                    break
            else:
                break
        return events

    def close(self) -> None:
        """The body ended: it must have ended with the closing delimiter."""
        if self._state != _DONE:
            raise MultipartError("The multipart body ended before its closing boundary.")

    # States ----------------------------------------------------------------------------------

    def _skip_preamble(self) -> bool:
        index = self._buffer.find(self._delimiter)
        if index < 0:
            keep = len(self._delimiter) - 1
            dropped = max(0, len(self._buffer) - keep)
            self._preamble_seen += dropped
            if self._preamble_seen > MAX_PREAMBLE_BYTES:
                raise MultipartError("No multipart boundary found.")
            self._buffer = self._buffer[dropped:]
            return False
        self._buffer = self._buffer[index + len(self._delimiter):]
        self._state = _AFTER_DELIMITER
        return True

    def _after_delimiter(self) -> bool:
        """After a delimiter: ``--`` closes the body; else optional whitespace and CRLF open a part."""
        if len(self._buffer) < 2:
            return False
        if self._buffer.startswith(b"--"):
            self._state = _DONE
            return True
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > 256:
                raise MultipartError("Malformed multipart boundary line.")
            return False
        if self._buffer[:end].strip(b" \t"):
            raise MultipartError("Malformed multipart boundary line.")
        self._buffer = self._buffer[end + 2:]
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise MultipartError("Too many multipart parts.")
        self._state = _HEADERS
        return True

    def _headers(self) -> PartStart | None:
        if self._buffer.startswith(b"\r\n"):
            block, rest = b"", self._buffer[2:]
        else:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEADER_BYTES:
                    raise MultipartError("A multipart header block is too large.")
                return None
            block, rest = self._buffer[:end], self._buffer[end + 4:]
        if len(block) > MAX_HEADER_BYTES:
            raise MultipartError("A multipart header block is too large.")
        self._buffer = rest
        self._state = _BODY
        return _part_start(block)

    def _body(self, events: list[Event]) -> bool:
        index = self._buffer.find(self._delimiter)
        if index >= 0:
            if index:
                events.append(PartData(self._buffer[:index]))
            events.append(PartEnd())
            self._buffer = self._buffer[index + len(self._delimiter):]
            self._state = _AFTER_DELIMITER
            return True
        # Keep what could be the start of a delimiter split across pieces; the rest is part data.
        safe = len(self._buffer) - (len(self._delimiter) - 1)
        if safe > 0:
            events.append(PartData(self._buffer[:safe]))
            self._buffer = self._buffer[safe:]
        return False


def _part_start(block: bytes) -> PartStart:
    headers: dict[str, str] = {}
    # Browsers send file names as raw UTF-8 inside the header; decode leniently, names are sanitized later.
    for line in block.decode("utf-8", errors="replace").split("\r\n"):
        name, sep, value = line.partition(":")
        if not sep:
            raise MultipartError("Malformed multipart header.")
        headers[name.strip().lower()] = value.strip()
    disposition = headers.get("content-disposition")
    if disposition is None:
        raise MultipartError("A multipart part has no Content-Disposition.")
    kind, params = parse_header_params(disposition)
    if kind.lower() != "form-data" or "name" not in params:
        raise MultipartError("A multipart part is not form-data with a name.")
    return PartStart(params["name"], params.get("filename"), headers.get("content-type"))
