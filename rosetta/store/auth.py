"""SQL for one-time codes, password resets, web sessions, OAuth flow state and social accounts.

Every single-use secret is consumed with a conditional UPDATE/DELETE whose row count says who won,
so two requests racing on one secret can never both succeed.
"""

from __future__ import annotations

import sqlite3

from rosetta.store.connections import Conn, Tx

# One-time codes ------------------------------------------------------------------------------------


async def otp_replace(tx: Tx, *, id: str, email: str, code_hash: str, expires_at: str, now: str) -> None:
    """A new code kills every older one for the same email."""
    await tx.execute("DELETE FROM otp_codes WHERE email = ?", (email,))
    await tx.execute(
        "INSERT INTO otp_codes (id, email, code_hash, expires_at, created_at) VALUES (?, ?, ?, ?, ?)",
        (id, email, code_hash, expires_at, now),
    )


async def otp_live(tx: Tx, email: str, now: str, max_attempts: int) -> sqlite3.Row | None:
    return await tx.fetch_one(
        "SELECT * FROM otp_codes WHERE email = ? AND consumed_at IS NULL AND expires_at > ? AND attempts < ?"
        " ORDER BY id DESC LIMIT 1",
        (email, now, max_attempts),
    )


async def otp_count_failure(tx: Tx, otp_id: str) -> None:
    await tx.execute("UPDATE otp_codes SET attempts = attempts + 1 WHERE id = ?", (otp_id,))


async def otp_consume(tx: Tx, otp_id: str, now: str) -> bool:
    changed = await tx.execute(
        "UPDATE otp_codes SET consumed_at = ? WHERE id = ? AND consumed_at IS NULL", (now, otp_id)
    )
    return changed == 1


# Password resets ------------------------------------------------------------------------------------


async def reset_replace(tx: Tx, *, id: str, user_id: str, token_hash: str, expires_at: str, now: str) -> None:
    """Only the newest reset link of an account works."""
    await tx.execute("DELETE FROM password_resets WHERE user_id = ?", (user_id,))
    await tx.execute(
        "INSERT INTO password_resets (id, user_id, token_hash, expires_at, created_at) VALUES (?, ?, ?, ?, ?)",
        (id, user_id, token_hash, expires_at, now),
    )


async def reset_consume(tx: Tx, user_id: str, token_hash: str, now: str) -> bool:
    changed = await tx.execute(
        "UPDATE password_resets SET used_at = ? WHERE user_id = ? AND token_hash = ? AND used_at IS NULL"
        " AND expires_at > ?",
        (now, user_id, token_hash, now),
    )
    return changed == 1


# Web sessions ----------------------------------------------------------------------------------------


async def session_insert(tx: Tx, *, id: str, user_id: str, secret_hash: str, xsrf_hash: str, expires_at: str,
                         now: str) -> None:
    await tx.execute(
        "INSERT INTO web_sessions (id, user_id, secret_hash, xsrf_hash, expires_at, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (id, user_id, secret_hash, xsrf_hash, expires_at, now),
    )


async def session_with_user(conn: Conn, secret_hash: str) -> sqlite3.Row | None:
    return await conn.fetch_one(
        "SELECT s.id, s.user_id, s.xsrf_hash, s.expires_at, u.is_active, u.kind AS user_kind"
        " FROM web_sessions s JOIN users u ON u.id = s.user_id WHERE s.secret_hash = ?",
        (secret_hash,),
    )


async def session_set_xsrf(tx: Tx, session_id: str, xsrf_hash: str) -> None:
    await tx.execute("UPDATE web_sessions SET xsrf_hash = ? WHERE id = ?", (xsrf_hash, session_id))


async def session_delete(tx: Tx, session_id: str) -> int:
    return await tx.execute("DELETE FROM web_sessions WHERE id = ?", (session_id,))


async def sessions_delete_for_user(tx: Tx, user_id: str, keep_id: str | None = None) -> list[str]:
    """Drop every session of a user except ``keep_id``; return the dropped ids."""
    rows = await tx.fetch_all(
        "DELETE FROM web_sessions WHERE user_id = ? AND id IS NOT ? RETURNING id", (user_id, keep_id)
    )
    return [row["id"] for row in rows]


async def delete_spent(tx: Tx, now: str) -> dict[str, int]:
    """Cleanup: one-time codes, reset links and OAuth states that can never be used again."""
    return {
        "otp_codes": await tx.execute(
            "DELETE FROM otp_codes WHERE consumed_at IS NOT NULL OR expires_at <= ?", (now,)),
        "password_resets": await tx.execute(
            "DELETE FROM password_resets WHERE used_at IS NOT NULL OR expires_at <= ?", (now,)),
        "oauth_states": await tx.execute("DELETE FROM oauth_states WHERE expires_at <= ?", (now,)),
    }


async def sessions_delete_expired(tx: Tx, now: str) -> int:
    return await tx.execute("DELETE FROM web_sessions WHERE expires_at <= ?", (now,))


# OAuth flow state ------------------------------------------------------------------------------------


async def state_insert(tx: Tx, *, id: str, state_hash: str, provider: str, purpose: str, family: str,
                       user_id: str | None, code_verifier: str, nonce: str, redirect_uri: str, expires_at: str,
                       now: str) -> None:
    await tx.execute(
        "INSERT INTO oauth_states (id, state_hash, provider, purpose, family, user_id, code_verifier, nonce,"
        " redirect_uri, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (id, state_hash, provider, purpose, family, user_id, code_verifier, nonce, redirect_uri, expires_at, now),
    )


async def state_take(tx: Tx, state_hash: str, now: str) -> sqlite3.Row | None:
    """Consume a flow's state (single use) and return it, or None when unknown or expired."""
    await tx.execute("DELETE FROM oauth_states WHERE expires_at <= ?", (now,))
    return await tx.fetch_one("DELETE FROM oauth_states WHERE state_hash = ? RETURNING *", (state_hash,))


# Social accounts -------------------------------------------------------------------------------------


async def social_by_subject(conn: Conn, provider: str, subject: str) -> sqlite3.Row | None:
    return await conn.fetch_one(
        "SELECT * FROM social_accounts WHERE provider = ? AND subject = ?", (provider, subject)
    )


async def social_for_user(conn: Conn, user_id: str) -> list[sqlite3.Row]:
    return await conn.fetch_all(
        "SELECT * FROM social_accounts WHERE user_id = ? ORDER BY id LIMIT 100", (user_id,)
    )


async def social_insert(tx: Tx, *, id: str, user_id: str, provider: str, subject: str, email: str | None,
                        now: str) -> None:
    await tx.execute(
        "INSERT INTO social_accounts (id, user_id, provider, subject, email, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (id, user_id, provider, subject, email, now),
    )


async def social_delete(tx: Tx, account_id: str, user_id: str) -> int:
    return await tx.execute("DELETE FROM social_accounts WHERE id = ? AND user_id = ?", (account_id, user_id))
