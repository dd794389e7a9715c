"""Slugs from names: ASCII, lowercase, dashes; a numeric suffix when taken."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Awaitable, Callable

MAX_SLUG = 64


def slugify(name: str, fallback: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:MAX_SLUG].strip("-")
    return slug or fallback


async def free_slug(base: str, taken: Callable[[str], Awaitable[bool]]) -> str:
    """``base``, or ``base-2``, ``base-3``… the first one not taken."""
    candidate, n = base, 1
    while await taken(candidate):
        n += 1
        suffix = f"-{n}"
        candidate = base[: MAX_SLUG - len(suffix)] + suffix
    return candidate
