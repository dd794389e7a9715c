"""Password reset: a random token mailed as a link, stored as sha256, single use, ``auth.reset_ttl_minutes``.

A reset revokes every bearer token and web session of the account in the same write unit, and
tells the realtime gateway after COMMIT so open sockets close. The link is built from the
configured public URL (``auth.frontend_url`` or ``server.public_url``), never from a Host header.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from urllib.parse import urlencode

from rosetta.clock import iso
from rosetta.errors import Invalid
from rosetta.ids import new_id, new_secret, sha256_hex
from rosetta.services.context import Context
from rosetta.services.mailer import Mailer
from rosetta.services.passwords import hash_password
from rosetta.store import auth as auth_store
from rosetta.store import tokens as token_store
from rosetta.store import users as user_store
from rosetta.store.connections import Tx

UNKNOWN_EMAIL = "We could not find an account with that email."
INVALID_TOKEN = "This password reset token is invalid."  # noqa: S105 - a message, not a secret


class PasswordResetService:
    def __init__(self, ctx: Context, mailer: Mailer, base_url: Callable[[], str]) -> None:
        self.ctx = ctx
        self.mailer = mailer
        self.base_url = base_url

    def link(self, token: str, email: str) -> str:
        root = (self.ctx.config.auth.frontend_url or self.base_url()).rstrip("/")
        return f"{root}/reset-password?{urlencode({'token': token, 'email': email})}"

    async def forgot(self, email: str) -> None:
        user = await user_store.by_email(self.ctx.db.reader, email)
        if user is None:
            raise Invalid.one("email", UNKNOWN_EMAIL)  # the reference answers so; rate limits bound probing
        token = new_secret(32)
        minutes = self.ctx.config.auth.reset_ttl_minutes
        expires_at = iso(self.ctx.clock.now() + timedelta(minutes=minutes))
        body = (f"Someone asked to reset the password of your Rosetta account.\n\n"
                f"Choose a new password here:\n{self.link(token, email)}\n\n"
                f"The link works once and expires in {minutes} minutes. If it was not you, ignore this mail.\n")

        async def unit(tx: Tx) -> None:
            await auth_store.reset_replace(tx, id=new_id(), user_id=user["id"], token_hash=sha256_hex(token),
                                           expires_at=expires_at, now=self.ctx.now())
            await self.mailer.enqueue(tx, email, "Reset your Rosetta password", body)

        await self.ctx.db.write(unit)

    async def reset(self, email: str, token: str, password: str) -> None:
        user = await user_store.by_email(self.ctx.db.reader, email)
        if user is None or not token or len(token) > 200:
            raise Invalid.one("email", INVALID_TOKEN)
        new_hash = await hash_password(self.ctx, password)  # before the unit: bcrypt is slow

        async def unit(tx: Tx) -> bool:
            now = self.ctx.now()
            if not await auth_store.reset_consume(tx, user["id"], sha256_hex(token), now):
                return False
            await user_store.update(tx, user["id"], now, password_hash=new_hash)
            revoked = await token_store.revoke_all_for_user(tx, user["id"], now)
            revoked += await auth_store.sessions_delete_for_user(tx, user["id"])
            tx.on_commit(lambda: self.ctx.notify("tokens.revoked", revoked))
            return True

        if not await self.ctx.db.write(unit):
            raise Invalid.one("email", INVALID_TOKEN)
