"""Email one-time codes: issue (mailed), and verify-and-sign-in as one atomic write.

Owns the code rules: 6 digits from ``secrets``, stored as HMAC-SHA256(app key, email:code), a
lifetime of ``auth.otp_ttl_minutes``, at most ``MAX_WRONG`` wrong tries per code, a new code kills
the old one, and single use even under concurrency: the consume is a conditional UPDATE inside the
same write unit that signs in, so of 20 simultaneous correct verifies exactly one wins.
Send and verify rate limits are the handlers' (they know the client address).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from rosetta.clock import iso
from rosetta.errors import Forbidden, Invalid
from rosetta.ids import new_id
from rosetta.services.accounts import INACTIVE
from rosetta.services.context import Context
from rosetta.services.keys import AppKey
from rosetta.services.mailer import Mailer
from rosetta.store import auth as auth_store
from rosetta.store import users as user_store
from rosetta.store.connections import Tx

T = TypeVar("T")
MAX_WRONG = 5
INVALID_OTP = "Invalid or expired OTP."
OTP_PURPOSE = "otp"


@dataclass(frozen=True)
class _Outcome:
    verdict: str  # "ok" | "invalid" | "inactive" | "closed"
    result: Any = None


class OtpService:
    def __init__(self, ctx: Context, key: AppKey, mailer: Mailer) -> None:
        self.ctx = ctx
        self.key = key
        self.mailer = mailer

    def _hash(self, email: str, code: str) -> str:
        return self.key.sign(OTP_PURPOSE, f"{email}:{code}")

    async def request(self, email: str) -> None:
        """Mail a fresh code to ``email`` (known or not: verify creates the account, as the reference says)."""
        code = f"{secrets.randbelow(1_000_000):06d}"
        minutes = self.ctx.config.auth.otp_ttl_minutes
        expires_at = iso(self.ctx.clock.now() + timedelta(minutes=minutes))
        body = (f"Your Rosetta sign-in code is:\n\n{code}\n\n"
                f"It expires in {minutes} minutes and works once. If you did not ask for it, ignore this mail.\n")

        async def unit(tx: Tx) -> None:
            await auth_store.otp_replace(tx, id=new_id(), email=email, code_hash=self._hash(email, code),
                                         expires_at=expires_at, now=self.ctx.now())
            await self.mailer.enqueue(tx, email, "Your Rosetta sign-in code", body)

        await self.ctx.db.write(unit)

    async def verify(self, email: str, code: str, sign_in: Callable[[Tx, str], Awaitable[T]]) -> T:
        """Consume the code and run ``sign_in(tx, user_id)`` in the same unit; 422/403 otherwise."""

        async def unit(tx: Tx) -> _Outcome:
            now = self.ctx.now()
            live = await auth_store.otp_live(tx, email, now, MAX_WRONG)
            if live is None:
                return _Outcome("invalid")
            if not hmac.compare_digest(live["code_hash"], self._hash(email, code)):
                await auth_store.otp_count_failure(tx, live["id"])  # commits: the 422 must not undo the count
                return _Outcome("invalid")
            if not await auth_store.otp_consume(tx, live["id"], now):
                return _Outcome("invalid")
            user = await user_store.by_email(tx, email)
            if user is None:
                if not self.ctx.config.auth.registration_open:
                    return _Outcome("closed")
                user_id = new_id()
                await user_store.insert(tx, id=user_id, name=email.partition("@")[0][:255], email=email,
                                        password_hash=None,
                                        preferred_language=self.ctx.config.translation.default_language,
                                        now=now, email_verified_at=now)  # the code proved the address
            elif not user["is_active"]:
                return _Outcome("inactive")
            else:
                user_id = user["id"]
                if user["email_verified_at"] is None:
                    await user_store.update(tx, user_id, now, email_verified_at=now)
            return _Outcome("ok", await sign_in(tx, user_id))

        outcome = await self.ctx.db.write(unit)
        if outcome.verdict == "inactive":
            raise Forbidden(INACTIVE)
        if outcome.verdict == "closed":
            raise Forbidden("Registration is closed.", code="registration_closed")
        if outcome.verdict != "ok":
            raise Invalid.one("token", INVALID_OTP)
        return outcome.result
