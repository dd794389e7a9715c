"""Content sniffing: a file's type decided from its first bytes (magic numbers), never from the client.

Owns the table of signatures and the text checks (SVG, XML, HTML, plain text). It sees only the head
of a file (``HEAD_BYTES``) and must stay a pure function: no I/O, no guessing from names.
"""

from __future__ import annotations

import codecs
import re

HEAD_BYTES = 4096  # enough for every signature below and for an SVG's prologue (XML declaration, DOCTYPE)
OCTET_STREAM = "application/octet-stream"
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})  # what Pillow thumbnails

# (offset, signature, mime type), first match wins.
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"PK\x03\x04", "application/zip"),
    (0, b"PK\x05\x06", "application/zip"),  # an empty archive
    (0, b"\x1f\x8b", "application/gzip"),
    (0, b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
    (0, b"OggS", "audio/ogg"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"fLaC", "audio/flac"),
    (0, b"\x1a\x45\xdf\xa3", "video/webm"),
)
_HEIC_BRANDS = (b"heic", b"heix", b"mif1", b"msf1")
_SVG_RE = re.compile(rb"<svg[\s>/]", re.IGNORECASE)
_HTML_RE = re.compile(rb"^<(!doctype\s+html|html[\s>]|head[\s>]|body[\s>]|script[\s>])", re.IGNORECASE)
_BOMS = (codecs.BOM_UTF8,)


def sniff(head: bytes) -> str:
    """The MIME type of a file that starts with ``head`` (at most ``HEAD_BYTES`` are looked at)."""
    head = head[:HEAD_BYTES]
    if not head:
        return OCTET_STREAM
    for offset, signature, mime in _SIGNATURES:
        if head.startswith(signature, offset):
            return mime
    if head[:4] == b"RIFF" and len(head) >= 12:
        kind = head[8:12]
        if kind == b"WEBP":
            return "image/webp"
        if kind == b"WAVE":
            return "audio/wav"
        if kind == b"AVI ":
            return "video/x-msvideo"
    if head[4:8] == b"ftyp":
        return "image/heic" if head[8:12] in _HEIC_BRANDS else "video/mp4"
    if head[:2] == b"\xff\xfb" or head[:2] == b"\xff\xf3":
        return "audio/mpeg"
    if not _is_text(head):
        return OCTET_STREAM
    return _text_kind(head)


def _is_text(head: bytes) -> bool:
    """UTF-8 without NUL; a multibyte character cut at the end of the head is fine."""
    if b"\x00" in head:
        return False
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _text_kind(head: bytes) -> str:
    body = head
    for bom in _BOMS:
        if body.startswith(bom):
            body = body[len(bom):]
    body = body.lstrip()
    if body.startswith(b"<"):
        # An SVG may open with an XML declaration, comments or a DOCTYPE: look for the svg element itself.
        if _SVG_RE.search(body):
            return "image/svg+xml"
        if _HTML_RE.match(body):
            return "text/html"
        if body.startswith(b"<?xml"):
            return "application/xml"
    return "text/plain"
