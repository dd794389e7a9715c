"""Password hashing with bcrypt, always off the event loop (~250 ms at cost 12)."""

from __future__ import annotations

import bcrypt

from rosetta.services.context import Context

# Checked against when an account does not exist, so a miss costs the same time as a hit.
_DUMMY_HASH = bcrypt.hashpw(b"rosetta-timing-equalizer", bcrypt.gensalt(4)).decode()


async def hash_password(ctx: Context, password: str) -> str:
    rounds = ctx.config.auth.bcrypt_rounds
    digest = await ctx.off_loop(bcrypt.hashpw, password.encode("utf-8"), bcrypt.gensalt(rounds))
    return digest.decode("ascii")


async def verify_password(ctx: Context, password: str, stored_hash: str | None) -> bool:
    candidate = password.encode("utf-8")
    if len(candidate) > 72:
        return False
    target = (stored_hash or _DUMMY_HASH).encode("ascii")
    matched = await ctx.off_loop(bcrypt.checkpw, candidate, target)
    return bool(matched) and stored_hash is not None
