"""Web sessions: the cookie secret and its bound XSRF token, both stored as sha256 only.

Owns opening (always a fresh id: no session fixation), looking up, rotating the XSRF token of, and
closing sessions. Cookies themselves are HTTP and belong to handlers/auth_web.py.

XSRF tokens are ``<random>.<hmac>``: the HMAC (app key) lets the public sign-in routes check a
token that no session owns yet (double submit); a session's own token is also bound by its hash on
the session row, so another session's token never passes.
"""

from __future__ import annotations

import functools
import secrets
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from rosetta.clock import iso, parse_iso
from rosetta.ids import new_id, new_secret, same_digest, sha256_hex
from rosetta.services.context import Context
from rosetta.services.keys import AppKey
from rosetta.store import auth as auth_store
from rosetta.store import users as user_store
from rosetta.store.connections import Tx

XSRF_PURPOSE = "xsrf"


@dataclass(frozen=True)
class OpenedSession:
    id: str
    secret: str  # the cookie value, shown once
    xsrf: str  # the XSRF-TOKEN cookie value bound to this session
    expires_at: str


@dataclass(frozen=True)
class LiveSession:
    id: str
    user_id: str
    xsrf_hash: str


class SessionService:
    def __init__(self, ctx: Context, key: AppKey) -> None:
        self.ctx = ctx
        self.key = key

    # XSRF tokens --------------------------------------------------------------------------------

    def new_xsrf(self) -> str:
        nonce = secrets.token_hex(20)
        return f"{nonce}.{self.key.sign(XSRF_PURPOSE, nonce)}"

    def xsrf_is_ours(self, token: str) -> bool:
        nonce, dot, signature = token.partition(".")
        return bool(dot and nonce and len(token) < 200) and self.key.verify(XSRF_PURPOSE, nonce, signature)

    @staticmethod
    def xsrf_matches(presented: str, live: LiveSession) -> bool:
        return bool(presented) and same_digest(sha256_hex(presented), live.xsrf_hash)

    # Life cycle -----------------------------------------------------------------------------------

    async def open(self, tx: Tx, user_id: str, replacing: str | None = None) -> OpenedSession:
        """A new session inside the caller's unit; ``replacing`` (the cookie's old session) is closed."""
        if replacing is not None:
            await auth_store.session_delete(tx, replacing)
        secret = new_secret(24)
        xsrf = self.new_xsrf()
        session_id = new_id()
        ttl = timedelta(hours=self.ctx.config.auth.session_ttl_hours)
        expires_at = iso(self.ctx.clock.now() + ttl)
        await auth_store.session_insert(tx, id=session_id, user_id=user_id, secret_hash=sha256_hex(secret),
                                        xsrf_hash=sha256_hex(xsrf), expires_at=expires_at, now=self.ctx.now())
        return OpenedSession(session_id, secret, xsrf, expires_at)

    async def sign_in_tx(self, tx: Tx, user_id: str, replacing: str | None = None
                         ) -> tuple[sqlite3.Row, OpenedSession]:
        """Stamp ``last_login_at`` and open a session, inside the caller's unit."""
        now = self.ctx.now()
        await user_store.update(tx, user_id, now, last_login_at=now)
        opened = await self.open(tx, user_id, replacing)
        user = await user_store.by_id(tx, user_id)
        assert user is not None
        return user, opened

    def opener(self, replacing: str | None) -> Callable[[Tx, str], Awaitable[OpenedSession]]:
        """Opening a session inside another service's unit (web registration)."""
        return functools.partial(self.open, replacing=replacing)

    def session_sign_in(self, replacing: str | None
                        ) -> Callable[[Tx, str], Awaitable[tuple[sqlite3.Row, OpenedSession]]]:
        """A web sign-in to run inside another service's unit (one-time codes, social login)."""
        return functools.partial(self.sign_in_tx, replacing=replacing)

    async def sign_in(self, user_id: str, replacing: str | None = None) -> tuple[sqlite3.Row, OpenedSession]:
        return await self.ctx.db.write(lambda tx: self.sign_in_tx(tx, user_id, replacing))

    async def lookup(self, secret: str) -> LiveSession | None:
        """The live session behind a cookie value, or None (unknown, expired, inactive account)."""
        if not secret or len(secret) > 200:
            return None
        row = await auth_store.session_with_user(self.ctx.db.reader, sha256_hex(secret))
        if row is None or not row["is_active"] or row["user_kind"] != "user":
            return None
        if parse_iso(row["expires_at"]) <= self.ctx.clock.now():
            return None
        return LiveSession(row["id"], row["user_id"], row["xsrf_hash"])

    async def rotate_xsrf(self, session_id: str) -> str:
        """A fresh XSRF token for a session (the plain one is never stored, so it cannot be re-sent)."""
        xsrf = self.new_xsrf()
        await self.ctx.db.write(lambda tx: auth_store.session_set_xsrf(tx, session_id, sha256_hex(xsrf)))
        return xsrf

    async def close(self, session_id: str) -> None:
        async def unit(tx: Tx) -> None:
            await auth_store.session_delete(tx, session_id)
            tx.on_commit(lambda: self.ctx.notify("tokens.revoked", [session_id]))

        await self.ctx.db.write(unit)
