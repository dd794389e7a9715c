"""Client file names: cleaned on the way in, encoded safely on the way out (RFC 6266 / RFC 5987).

Owns what a name may contain. A stored name is metadata only — never a path — so it is reduced to
its last path segment, stripped of control and bidirectional-override characters (which can make
``invoice‮txt.exe`` look like ``invoiceexe.txt``) and bounded in length. ``content_disposition``
re-applies the same cleaning, so even a row written by older code is served safely.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

MAX_NAME_CHARS = 255  # what common file systems allow; a 10,000-character name is cut, keeping its extension
DEFAULT_NAME = "file"
# Bidirectional embeddings, overrides and isolates: U+202A..U+202E and U+2066..U+2069.
_BIDI_CONTROLS = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)))
# RFC 5987 attr-char: ALPHA / DIGIT / "!#$&+-.^_`|~" stay as they are, everything else is %-encoded.
_ATTR_SAFE = "!#$&+-.^_`|~"
# What must never appear in the quoted ASCII fallback: quotes, escapes, separators, the percent sign
# (some clients decode it) and characters Windows refuses in names.
_FALLBACK_UNSAFE = frozenset('"\\/%:*?<>|;')


def clean_name(raw: str | None) -> str:
    """The name to store: last path segment, no control or bidi characters, at most 255 characters."""
    if not raw:
        return DEFAULT_NAME
    # Either separator counts: browsers on Windows have sent whole paths such as C:\\Users\\me\\a.txt.
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if _allowed(ch)).strip().strip(".")
    if not name:
        return DEFAULT_NAME
    if len(name) > MAX_NAME_CHARS:
        stem, dot, extension = name.rpartition(".")
        if dot and stem and 0 < len(extension) <= 16:
            name = stem[: MAX_NAME_CHARS - len(extension) - 1] + "." + extension
        else:
            name = name[:MAX_NAME_CHARS]
    return name


def _allowed(ch: str) -> bool:
    if ch in _BIDI_CONTROLS:
        return False
    category = unicodedata.category(ch)
    # Cc: C0/C1 controls (CR, LF, NUL, ...); Cs: lone surrogates SQLite cannot store; Zl/Zp: line breaks.
    return category not in ("Cc", "Cs", "Zl", "Zp")


def ascii_fallback(name: str) -> str:
    """A plain-ASCII stand-in for clients that ignore ``filename*``."""
    decomposed = unicodedata.normalize("NFKD", clean_name(name))
    out = []
    for ch in decomposed:
        if unicodedata.combining(ch):
            continue  # é → e
        if " " <= ch <= "~" and ch not in _FALLBACK_UNSAFE:
            out.append(ch)
        elif ch.isspace():
            out.append(" ")
        else:
            out.append("_")
    fallback = "".join(out).strip(" .")
    return fallback or DEFAULT_NAME


def content_disposition(name: str) -> str:
    """``attachment; filename="ascii"; filename*=UTF-8''percent-encoded`` — always an attachment."""
    cleaned = clean_name(name)
    return f"attachment; filename=\"{ascii_fallback(cleaned)}\"; filename*=UTF-8''{quote(cleaned, safe=_ATTR_SAFE)}"
