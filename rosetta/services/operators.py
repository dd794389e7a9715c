"""Operator actions run from the command line: create a user, set a user's plan, issue a token.

Owns only what the HTTP API has no route for (an operator creating accounts without signing in as
them). Token rules are AccountService's and TokenService's; passwords are hashed off the loop by
services.passwords, exactly as registration does.
"""

from __future__ import annotations

import sqlite3

from rosetta.errors import Invalid, NotFound
from rosetta.ids import new_id
from rosetta.services.accounts import AccountService
from rosetta.services.auth import Principal
from rosetta.services.context import Context
from rosetta.services.passwords import hash_password
from rosetta.store import users as user_store
from rosetta.store.connections import Tx

ROOM_PLANS = ("free", "developer")


class OperatorService:
    def __init__(self, ctx: Context, accounts: AccountService) -> None:
        self.ctx = ctx
        self.accounts = accounts

    async def create_user(self, *, name: str, email: str, password: str, language: str | None,
                          active: bool = True) -> sqlite3.Row:
        """A new account; the operator vouches for the address, so it starts verified."""
        if await user_store.by_email(self.ctx.db.reader, email) is not None:
            raise Invalid.one("email", "This email is already registered.")
        password_hash = await hash_password(self.ctx, password)
        user_id = new_id()

        async def unit(tx: Tx) -> sqlite3.Row:
            if await user_store.by_email(tx, email) is not None:
                raise Invalid.one("email", "This email is already registered.")
            now = self.ctx.now()
            await user_store.insert(tx, id=user_id, name=name, email=email, password_hash=password_hash,
                                    preferred_language=language or self.ctx.config.translation.default_language,
                                    now=now, email_verified_at=now)
            if not active:
                await user_store.update(tx, user_id, now, is_active=0)
            user = await user_store.by_id(tx, user_id)
            assert user is not None
            return user

        return await self.ctx.db.write(unit)

    async def user_by_email(self, email: str) -> sqlite3.Row:
        user = await user_store.by_email(self.ctx.db.reader, email)
        if user is None:
            raise NotFound(f"No user has the email {email}.")
        return user

    async def set_room_plan(self, email: str, plan: str) -> sqlite3.Row:
        if plan not in ROOM_PLANS:
            raise Invalid.one("plan", f"The plan must be one of: {', '.join(ROOM_PLANS)}.")
        user = await self.user_by_email(email)

        async def unit(tx: Tx) -> sqlite3.Row:
            await user_store.update(tx, user["id"], self.ctx.now(), room_plan=plan)
            row = await user_store.by_id(tx, user["id"])
            assert row is not None
            return row

        return await self.ctx.db.write(unit)

    async def create_token(self, email: str, name: str, abilities: list[str],
                           expires_at: str | None) -> tuple[sqlite3.Row, str]:
        """A personal access token for the user, under the same rules as ``POST /me/tokens``."""
        user = await self.user_by_email(email)
        principal = Principal("user", user["id"], abilities=frozenset({"*"}))
        return await self.accounts.create_token(principal, name, abilities, expires_at)
