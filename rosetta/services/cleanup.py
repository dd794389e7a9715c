"""Credential cleanup (spec §7): delete what can never authenticate again.

Owns the ``credentials.cleanup`` job. Every row it deletes is already refused on lookup (expired,
revoked, consumed), so the job only keeps tables small; it is idempotent and safe after a crash.
Rate limits live in memory, not in these rows, so deleting them never resets a limit.
"""

from __future__ import annotations

from datetime import timedelta

from rosetta.clock import iso
from rosetta.services.context import Context
from rosetta.services.fresh import uncached
from rosetta.store import auth as auth_store
from rosetta.store import invites as invite_store
from rosetta.store import tokens as token_store
from rosetta.store.connections import Tx

CLEANUP_EVERY_S = 3600.0  # hourly: the rows are harmless meanwhile
# An expired invite stays in its admin's list this long (to see what lapsed, and re-issue it), then goes.
EXPIRED_INVITES_KEPT_DAYS = 30


class CredentialCleanup:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def run(self) -> dict[str, int]:
        """How many rows of each kind went: web sessions, access tokens, codes, reset links, OAuth states,
        revoked invites and those expired over EXPIRED_INVITES_KEPT_DAYS ago."""
        now = self.ctx.now()
        invites_expired_before = iso(self.ctx.clock.now() - timedelta(days=EXPIRED_INVITES_KEPT_DAYS))

        async def unit(tx: Tx) -> dict[str, int]:
            return {
                "sessions": await auth_store.sessions_delete_expired(tx, now),
                "tokens": await token_store.delete_dead(tx, now),
                **await auth_store.delete_spent(tx, now),
                "invites": await invite_store.delete_dead(tx, invites_expired_before),
            }

        # No stamped cached read shows credentials (the token cache follows revocations, and every row
        # deleted here is refused already): this commit keeps every cached page and audience.
        return await self.ctx.db.write(uncached(unit))
