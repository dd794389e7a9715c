"""Text from outside that Rosetta shows rather than refuses, made storable.

A tool's webhook payload, a translation engine's answer and an identity provider's claims are shown
as they come (a monitoring alert is better shown than refused), but JSON may carry what SQLite
cannot store: a lone surrogate ("\\ud800" is valid JSON; UTF-8 cannot encode it, so binding it
raised mid-write) and NUL. Requests of our own API are refused instead (handlers/validate.py).
"""

from __future__ import annotations

import re

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` without NUL characters, each lone surrogate replaced by U+FFFD (the replacement character)."""
    return _LONE_SURROGATE.sub("\ufffd", text.replace("\x00", ""))
