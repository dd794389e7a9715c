"""Who is calling: bearer tokens resolved to a Principal, and the token life cycle.

Owns token issue, lookup (sha256 of the secret, compared in constant time), revocation and the
abilities check. Other credentials (web sessions, guest tokens) resolve to the same Principal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta

from rosetta.clock import parse_iso
from rosetta.ids import new_id, new_secret, same_digest, sha256_hex
from rosetta.services.context import Context
from rosetta.store import tokens as token_store

PERSONAL_ABILITIES = ("automation", "temporary-rooms:create", "temporary-rooms:read", "temporary-rooms:extend")
FULL_ACCESS = "*"
# last_used_at is bookkeeping, not security: write it at most once a minute per token.
TOUCH_EVERY_S = 60


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


class TokenService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

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
        row = await token_store.with_user(self.ctx.db.reader, token_id.lower())
        if row is None:
            return None
        if not same_digest(sha256_hex(secret), row["secret_hash"]):
            return None
        now = self.ctx.clock.now()
        if row["revoked_at"] is not None or not row["is_active"] or row["user_kind"] != "user":
            return None
        if row["expires_at"] is not None and parse_iso(row["expires_at"]) <= now:
            return None
        last = row["last_used_at"]
        if last is None or parse_iso(last) < now - timedelta(seconds=TOUCH_EVERY_S):
            now_iso = self.ctx.now()
            await self.ctx.db.write(lambda tx: token_store.touch(tx, row["id"], now_iso))
        return Principal("user", row["user_id"], token_id=row["id"],
                         abilities=frozenset(json.loads(row["abilities"])))
