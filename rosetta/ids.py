"""Identifiers: lowercase ULIDs for every entity, and random secrets for tokens.

ULIDs sort by creation time, so ``ORDER BY id`` is creation order and keyset pagination needs no
second column.
"""

import hashlib
import hmac
import secrets

from ulid import ULID

ID_LENGTH = 26
_CROCKFORD = set("0123456789abcdefghjkmnpqrstvwxyz")


def new_id() -> str:
    return str(ULID()).lower()


def looks_like_id(value: object) -> bool:
    """Cheap shape check so garbage never reaches a query (and a bad id is simply not found)."""
    return isinstance(value, str) and len(value) == ID_LENGTH and set(value.lower()) <= _CROCKFORD


def new_secret(nbytes: int = 30) -> str:
    """A URL-safe alphanumeric secret (hex keeps it safe inside URLs such as /hooks/{secret})."""
    return secrets.token_hex(nbytes)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def same_digest(a: str, b: str) -> bool:
    """Constant-time comparison of two hex digests."""
    return hmac.compare_digest(a.encode("ascii", "replace"), b.encode("ascii", "replace"))
