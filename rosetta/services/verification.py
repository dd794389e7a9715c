"""Email verification: signed, expiring links (mailed at registration and on request) and their check.

The link is ``<base>/api/v1/auth/email/verify/{id}/{sha1(email)}?expires=<unix>&signature=<hmac>``;
the signature is HMAC-SHA256 (app key) over the path and ``expires``, so neither the user, the
address nor the expiry can be changed, and the address hash makes a link die when the email changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from rosetta.errors import NotFound
from rosetta.services.auth import Principal
from rosetta.services.context import Context
from rosetta.services.keys import AppKey
from rosetta.services.mailer import Mailer
from rosetta.store import users as user_store
from rosetta.store.connections import Tx

INVALID_LINK = "Verification link is invalid."
VERIFY_PURPOSE = "email-verify"


def email_hash(email: str) -> str:
    return hashlib.sha1(email.lower().encode("utf-8"), usedforsecurity=False).hexdigest()


class VerificationService:
    def __init__(self, ctx: Context, key: AppKey, mailer: Mailer, base_url: Callable[[], str]) -> None:
        self.ctx = ctx
        self.key = key
        self.mailer = mailer
        self.base_url = base_url

    def _signed(self, user_id: str, hashed: str, expires: str) -> str:
        return self.key.sign(VERIFY_PURPOSE, f"{user_id}/{hashed}?expires={expires}")

    def link(self, user_id: str, email: str) -> str:
        expires = str(int(self.ctx.clock.now().timestamp()) + self.ctx.config.auth.verify_ttl_minutes * 60)
        hashed = email_hash(email)
        return (f"{self.base_url().rstrip('/')}/api/v1/auth/email/verify/{user_id}/{hashed}"
                f"?expires={expires}&signature={self._signed(user_id, hashed, expires)}")

    async def enqueue(self, tx: Tx, user_id: str, email: str) -> None:
        """Queue the verification mail inside the caller's unit (a registration hook)."""
        body = (f"Welcome to Rosetta. Confirm your email address by opening this link:\n{self.link(user_id, email)}\n\n"
                f"It expires in {self.ctx.config.auth.verify_ttl_minutes} minutes.\n")
        await self.mailer.enqueue(tx, email, "Verify your Rosetta email address", body)

    async def resend(self, principal: Principal) -> None:
        """Send a new link unless already verified (the caller answers the same either way)."""
        user = await user_store.by_id(self.ctx.db.reader, principal.user_id)
        if user is None or user["email_verified_at"] is not None or not user["email"]:
            return
        await self.ctx.db.write(lambda tx: self.enqueue(tx, user["id"], user["email"]))

    async def verify(self, user_id: str, hashed: str, expires: str, signature: str) -> None:
        """Mark the address verified; 404 "Verification link is invalid." for any bad, stale or tampered link."""
        if not (expires.isdigit() and len(expires) < 16 and len(signature) == 64 and len(hashed) <= 64):
            raise NotFound(INVALID_LINK)
        if not self.key.verify(VERIFY_PURPOSE, f"{user_id}/{hashed}?expires={expires}", signature):
            raise NotFound(INVALID_LINK)
        if int(expires) < self.ctx.clock.now().timestamp():
            raise NotFound(INVALID_LINK)

        async def unit(tx: Tx) -> bool:
            user = await user_store.by_id(tx, user_id)
            if user is None or not user["email"] or email_hash(user["email"]) != hashed:
                return False
            if user["email_verified_at"] is None:
                await user_store.update(tx, user_id, self.ctx.now(), email_verified_at=self.ctx.now())
            return True

        if not await self.ctx.db.write(unit):
            raise NotFound(INVALID_LINK)
