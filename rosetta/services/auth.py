"""Who is calling: bearer tokens resolved to a Principal, and the token life cycle.

Owns token issue, lookup (sha256 of the secret, compared in constant time), revocation and the
abilities check. Other credentials (web sessions, guest tokens) resolve to the same Principal.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rosetta.clock import parse_iso
from rosetta.ids import new_id, new_secret, same_digest, sha256_hex
from rosetta.services.context import Context
from rosetta.services.fresh import uncached
from rosetta.store import tokens as token_store

PERSONAL_ABILITIES = ("automation", "temporary-rooms:create", "temporary-rooms:read", "temporary-rooms:extend")
FULL_ACCESS = "*"
# last_used_at is bookkeeping, not security: write it at most once a minute per token.
TOUCH_EVERY_S = 60
# Resolved tokens are remembered so a request costs no database read for its credential. Every
# revocation goes through a service that announces "tokens.revoked" after COMMIT, which evicts at
# once; the TTL only bounds how long a change made outside this process (a hand-edited database)
# can go unseen.
CACHE_TTL_S = 30.0
CACHE_MAX = 10_000


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``kind`` is ``user`` or ``guest``."""

    kind: str
    user_id: str
    token_id: str | None = None
    session_id: str | None = None
    abilities: frozenset[str] = field(default_factory=frozenset)
    room_id: str | None = None  # guests only: the one room their token opens

    def can(self, ability: str) -> bool:
        return FULL_ACCESS in self.abilities or ability in self.abilities

    @property
    def is_session(self) -> bool:
        return self.session_id is not None


@dataclass(frozen=True)
class IssuedToken:
    id: str
    plain: str  # "<id>|<secret>", shown once


@dataclass
class _Known:
    """A token as last read from the database: enough to check a presented secret without a read."""

    user_id: str
    secret_hash: str
    abilities: frozenset[str]
    expires_at: datetime | None
    last_used_at: datetime | None
    read_at: float  # time.monotonic(): the cache ages in real time, whatever the injected clock says


class TokenService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._known: OrderedDict[str, _Known] = OrderedDict()
        ctx.listeners.setdefault("tokens.revoked", []).append(self.forget)

    def forget(self, token_ids: list[str]) -> None:
        """Evict revoked tokens (called after the revoking COMMIT)."""
        for token_id in token_ids:
            self._known.pop(token_id, None)

    async def _lookup(self, token_id: str) -> _Known | None:
        known = self._known.get(token_id)
        if known is not None and time.monotonic() - known.read_at < CACHE_TTL_S:
            return known
        row = await token_store.with_user(self.ctx.db.reader, token_id)
        if row is None or row["revoked_at"] is not None or not row["is_active"] or row["user_kind"] != "user":
            self._known.pop(token_id, None)
            return None
        known = _Known(
            user_id=row["user_id"], secret_hash=row["secret_hash"], abilities=frozenset(json.loads(row["abilities"])),
            expires_at=parse_iso(row["expires_at"]) if row["expires_at"] else None,
            last_used_at=parse_iso(row["last_used_at"]) if row["last_used_at"] else None,
            read_at=time.monotonic(),
        )
        self._known[token_id] = known
        if len(self._known) > CACHE_MAX:
            self._known.popitem(last=False)
        return known

    async def issue(self, tx: object, user_id: str, *, kind: str, name: str, abilities: list[str],
                    expires_at: str | None = None) -> IssuedToken:
        """Create a token inside the caller's transaction; the secret is returned once, never stored."""
        token_id = new_id()
        secret = new_secret(20)
        await token_store.insert(
            tx, id=token_id, user_id=user_id, kind=kind, name=name, secret_hash=sha256_hex(secret),  # type: ignore[arg-type]
            abilities=abilities, expires_at=expires_at, now=self.ctx.now(),
        )
        return IssuedToken(token_id, f"{token_id}|{secret}")

    async def resolve(self, presented: str) -> Principal | None:
        """The principal behind ``<id>|<secret>``, or None when unknown, revoked, expired or inactive."""
        token_id, sep, secret = presented.partition("|")
        if not sep or not secret or len(token_id) != 26 or len(secret) > 200:
            return None
        token_id = token_id.lower()
        known = await self._lookup(token_id)
        if known is None or not same_digest(sha256_hex(secret), known.secret_hash):
            return None
        now = self.ctx.clock.now()
        if known.expires_at is not None and known.expires_at <= now:
            return None
        if known.last_used_at is None or known.last_used_at < now - timedelta(seconds=TOUCH_EVERY_S):
            known.last_used_at = now
            now_iso = self.ctx.now()

            # No cached read shows when a token was last used: this commit keeps every cached read.
            await self.ctx.db.write(uncached(lambda tx: token_store.touch(tx, token_id, now_iso)))
        return Principal("user", known.user_id, token_id=token_id, abilities=known.abilities)
