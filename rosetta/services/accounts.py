"""Accounts: register, password login, logout, change password, profile, personal access tokens.

Owns the rules of the seed's app-auth operations. Rate limits are the handlers' (they know the
client address); everything that writes is here.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from rosetta.clock import parse_iso
from rosetta.errors import Forbidden, Invalid, NotFound
from rosetta.ids import new_id
from rosetta.services.auth import PERSONAL_ABILITIES, IssuedToken, Principal, TokenService
from rosetta.services.context import Context
from rosetta.services.passwords import hash_password, verify_password
from rosetta.store import auth as auth_store
from rosetta.store import tokens as token_store
from rosetta.store import users as user_store
from rosetta.store.connections import Tx

INACTIVE = "Account is inactive."
BAD_CREDENTIALS = "The provided credentials are incorrect."
TOKEN_LIMIT_CODE = "personal_token_limit"  # noqa: S105 - an error code, not a secret


@dataclass(frozen=True)
class SignedIn:
    user: sqlite3.Row
    token: IssuedToken | None  # None only when register(issue_token=False) (web sign-up opens a session)
    extra: Any = None  # what register(within=...) returned


# Runs inside the registration's write unit: (tx, user_id, email). Used to queue the verification mail.
RegistrationHook = Callable[[Tx, str, str], Awaitable[Any]]


class AccountService:
    def __init__(self, ctx: Context, tokens: TokenService) -> None:
        self.ctx = ctx
        self.tokens = tokens
        self.registration_hooks: list[RegistrationHook] = []

    async def register(self, *, name: str, email: str, password: str, preferred_language: str | None,
                       device_name: str | None, issue_token: bool = True,
                       within: Callable[[Tx, str], Awaitable[Any]] | None = None) -> SignedIn:
        if await user_store.by_email(self.ctx.db.reader, email) is not None:
            raise Invalid.one("email", "This email is already registered.")
        password_hash = await hash_password(self.ctx, password)
        user_id = new_id()
        language = preferred_language or self.ctx.config.translation.default_language

        async def unit(tx: Tx) -> SignedIn:
            if await user_store.by_email(tx, email) is not None:  # lost a race with a twin request
                raise Invalid.one("email", "This email is already registered.")
            now = self.ctx.now()
            await user_store.insert(tx, id=user_id, name=name, email=email, password_hash=password_hash,
                                    preferred_language=language, now=now)
            await user_store.update(tx, user_id, now, last_login_at=now)
            for hook in self.registration_hooks:
                await hook(tx, user_id, email)
            token = None
            if issue_token:
                token = await self.tokens.issue(tx, user_id, kind="login", name=device_name or "login",
                                                abilities=["*"])
            extra = await within(tx, user_id) if within is not None else None
            user = await user_store.by_id(tx, user_id)
            assert user is not None
            return SignedIn(user, token, extra)

        return await self.ctx.db.write(unit)

    async def check_password_login(self, email: str, password: str) -> sqlite3.Row:
        """The user whose password this is; 422 on any mismatch, 403 for inactive accounts."""
        user = await user_store.by_email(self.ctx.db.reader, email)
        ok = await verify_password(self.ctx, password, user["password_hash"] if user else None)
        if user is None or not ok:
            raise Invalid.one("email", BAD_CREDENTIALS)
        if not user["is_active"]:
            raise Forbidden(INACTIVE)
        return user

    async def login(self, email: str, password: str, device_name: str | None) -> SignedIn:
        user = await self.check_password_login(email, password)
        return await self.sign_in(user["id"], device_name)

    async def sign_in(self, user_id: str, device_name: str | None) -> SignedIn:
        """Issue a login token (abilities ``*``) and stamp ``last_login_at``."""
        return await self.ctx.db.write(lambda tx: self.sign_in_tx(tx, user_id, device_name))

    async def sign_in_tx(self, tx: Tx, user_id: str, device_name: str | None) -> SignedIn:
        """``sign_in`` inside the caller's unit: one-time codes and social login consume and sign in atomically."""
        now = self.ctx.now()
        await user_store.update(tx, user_id, now, last_login_at=now)
        token = await self.tokens.issue(tx, user_id, kind="login", name=device_name or "login", abilities=["*"])
        user = await user_store.by_id(tx, user_id)
        assert user is not None
        return SignedIn(user, token)

    def token_sign_in(self, device_name: str | None) -> Callable[[Tx, str], Awaitable[SignedIn]]:
        """A bearer sign-in to run inside another service's unit (one-time codes, social login)."""
        return functools.partial(self.sign_in_tx, device_name=device_name)

    async def logout(self, principal: Principal) -> None:
        """Revoke the credential of this request: its token, or its web session (app logout with a cookie)."""
        if principal.session_id is not None:
            session_id = principal.session_id

            async def close(tx: Tx) -> None:
                await auth_store.session_delete(tx, session_id)
                tx.on_commit(lambda: self.ctx.notify("tokens.revoked", [session_id]))

            await self.ctx.db.write(close)
            return
        if principal.token_id is None:
            return
        token_id = principal.token_id
        await self.ctx.db.write(lambda tx: self._revoke(tx, [token_id]))

    async def _revoke(self, tx: Tx, token_ids: list[str]) -> None:
        now = self.ctx.now()
        for token_id in token_ids:
            await token_store.revoke(tx, token_id, now)
        tx.on_commit(lambda: self.ctx.notify("tokens.revoked", token_ids))

    async def change_password(self, principal: Principal, current: str, new: str) -> None:
        user = await user_store.by_id(self.ctx.db.reader, principal.user_id)
        assert user is not None
        if user["password_hash"] is not None and not await verify_password(self.ctx, current, user["password_hash"]):
            raise Invalid.one("current_password", "The current password is incorrect.")
        new_hash = await hash_password(self.ctx, new)

        async def unit(tx: Tx) -> None:
            now = self.ctx.now()
            await user_store.update(tx, principal.user_id, now, password_hash=new_hash)
            revoked = await token_store.revoke_all_for_user(tx, principal.user_id, now, keep_id=principal.token_id)
            # Web sessions too: only the caller's own session (if it is one) stays signed in.
            revoked += await auth_store.sessions_delete_for_user(tx, principal.user_id, keep_id=principal.session_id)
            tx.on_commit(lambda: self.ctx.notify("tokens.revoked", revoked))
            tx.on_commit(lambda: self.ctx.notify("password.changed", principal.user_id, principal.session_id))

        await self.ctx.db.write(unit)

    async def me(self, principal: Principal) -> sqlite3.Row:
        user = await user_store.by_id(self.ctx.db.reader, principal.user_id)
        if user is None:
            raise NotFound()
        return user

    async def update_me(self, principal: Principal, changes: dict[str, Any]) -> sqlite3.Row:
        async def unit(tx: Tx) -> sqlite3.Row:
            await user_store.update(tx, principal.user_id, self.ctx.now(), **changes)
            user = await user_store.by_id(tx, principal.user_id)
            assert user is not None
            return user

        return await self.ctx.db.write(unit)

    # Personal access tokens -------------------------------------------------------------------

    async def list_tokens(self, principal: Principal) -> list[sqlite3.Row]:
        return await token_store.personal_for_user(self.ctx.db.reader, principal.user_id)

    async def create_token(self, principal: Principal, name: str, abilities: list[str],
                           expires_at: str | None) -> tuple[sqlite3.Row, str]:
        unknown = [a for a in abilities if a not in PERSONAL_ABILITIES]
        if unknown or not abilities:
            raise Invalid.one("abilities", f"The abilities must be chosen from: {', '.join(PERSONAL_ABILITIES)}.")
        if expires_at is not None and parse_iso(expires_at) <= self.ctx.clock.now():
            raise Invalid.one("expires_at", "The expires_at field must be a date in the future.")

        async def unit(tx: Tx) -> tuple[sqlite3.Row, str]:
            # Bounded, so that the list (GET /me/tokens) shows every token there is to revoke.
            if await token_store.count_personal(tx, principal.user_id) >= token_store.MAX_PERSONAL:
                raise Forbidden(f"You have {token_store.MAX_PERSONAL} personal access tokens: revoke one first.",
                                code=TOKEN_LIMIT_CODE)
            issued = await self.tokens.issue(tx, principal.user_id, kind="personal", name=name,
                                             abilities=sorted(set(abilities)), expires_at=expires_at)
            row = await token_store.by_id_for_user(tx, issued.id, principal.user_id)
            assert row is not None
            return row, issued.plain

        return await self.ctx.db.write(unit)

    async def revoke_token(self, principal: Principal, token_id: str) -> None:
        async def unit(tx: Tx) -> None:
            row = await token_store.by_id_for_user(tx, token_id, principal.user_id)
            if row is None or row["kind"] != "personal":
                raise NotFound()
            await self._revoke(tx, [token_id])

        await self.ctx.db.write(unit)
