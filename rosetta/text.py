"""Text from outside that SQLite cannot store: refused in our own API's requests, made storable elsewhere.

JSON may carry what SQLite cannot store: a lone surrogate ("\\ud800" is valid JSON; UTF-8 cannot
encode it, so binding it raised mid-write) and NUL. Requests of our own API are refused with the
field named (``bad_text``, used by handlers/validate.py and the services that check lists of their
own). A tool's webhook payload, a translation engine's answer and an identity provider's claims are
shown as they come instead (a monitoring alert is better shown than refused): ``storable``.
"""

from __future__ import annotations

import re

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def bad_text(value: str) -> str | None:
    """Why a string cannot be stored, or None."""
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text"
    return None


def storable(text: str) -> str:
    """``text`` without NUL characters, each lone surrogate replaced by U+FFFD (the replacement character)."""
    return _LONE_SURROGATE.sub("\ufffd", text.replace("\x00", ""))
