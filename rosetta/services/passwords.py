"""Password hashing with bcrypt, always off the event loop (~250 ms at cost 12)."""

from __future__ import annotations

import bcrypt

from rosetta.services.context import Context


async def hash_password(ctx: Context, password: str) -> str:
    rounds = ctx.config.auth.bcrypt_rounds
    digest = await ctx.off_loop(bcrypt.hashpw, password.encode("utf-8"), bcrypt.gensalt(rounds))
    return digest.decode("ascii")


async def verify_password(ctx: Context, password: str, stored_hash: str | None) -> bool:
    candidate = password.encode("utf-8")
    if len(candidate) > 72:
        return False
    if stored_hash is None:
        # No account (or no password): spend what a real check at the configured cost spends, so
        # the answer's timing does not tell whether the account exists.
        await hash_password(ctx, password)
        return False
    matched = await ctx.off_loop(bcrypt.checkpw, candidate, stored_hash.encode("ascii"))
    return bool(matched)
