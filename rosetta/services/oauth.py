"""Social sign-in: OAuth 2 / OpenID Connect providers from ``[oauth.NAME]``, with state, PKCE and nonce.

Owns the provider table (validated at start-up), the flow state (random, stored as sha256, single
use, bound to login-vs-link and to the user for links), the code exchange, ID-token verification
(RS256 against the provider's JWKS with pyjwt: iss, aud = client_id, exp by our clock, nonce) and
the account rules: a new subject creates an account only when no local account has its email, and
NEVER links by email; linking happens only through the explicit link flow.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import urlencode

import jwt
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from rosetta.clock import iso
from rosetta.config import ConfigError, check_url
from rosetta.errors import JSON_ERRORS, Forbidden, Invalid, NotFound
from rosetta.ids import new_id, sha256_hex
from rosetta.services.accounts import INACTIVE
from rosetta.services.context import Context
from rosetta.store import auth as auth_store
from rosetta.store import users as user_store
from rosetta.store.connections import Tx
from rosetta.text import storable

T = TypeVar("T")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
KINDS = ("oidc", "github", "google")
KEYS = ("kind", "client_id", "client_secret", "discovery_url", "authorize_url", "token_url", "userinfo_url",
        "jwks_url", "issuer", "scopes", "redirect_uri")
STATE_TTL_MIN = 10  # a user takes a few minutes at the provider's consent screen, not hours
HTTP_TIMEOUT_S = 10.0
METADATA_TTL_S = 3600.0  # discovery documents and JWKS are re-read hourly (and at once on an unknown kid)
LEEWAY_S = 60  # clock skew tolerated on exp/iat/nbf
DEFAULTS: dict[str, dict[str, Any]] = {
    "github": {"authorize_url": "https://github.com/login/oauth/authorize",
               "token_url": "https://github.com/login/oauth/access_token",
               "userinfo_url": "https://api.github.com/user", "scopes": ("read:user", "user:email")},
    "google": {"discovery_url": "https://accounts.google.com/.well-known/openid-configuration",
               "scopes": ("openid", "email", "profile")},
    "oidc": {"scopes": ("openid", "email", "profile")},
}
BAD_STATE = "Invalid or expired state."
BAD_CODE = "The provider did not accept this sign-in."
BAD_TOKEN = "The identity token could not be verified."  # noqa: S105 - a message, not a secret


@dataclass(frozen=True)
class Provider:
    name: str
    kind: str
    client_id: str
    client_secret: str
    discovery_url: str = ""
    authorize_url: str = ""
    token_url: str = ""
    userinfo_url: str = ""
    jwks_url: str = ""
    issuer: str = ""
    scopes: tuple[str, ...] = ()
    redirect_uri: str = ""

    @property
    def is_oidc(self) -> bool:
        return self.kind in ("oidc", "google")


@dataclass(frozen=True)
class Identity:
    provider: str
    subject: str
    email: str | None
    email_verified: bool
    name: str | None

    @classmethod
    def of(cls, provider: str, subject: Any, email: Any, email_verified: bool, name: Any) -> Identity:
        """From what a provider said: bounded and storable (claims are JSON, and may hold "\\ud800");
        an e-mail address that is not plain text, or has no "@", is no address."""
        address = email.lower() if isinstance(email, str) and "@" in email and storable(email) == email else None
        return cls(provider=provider, subject=storable(str(subject))[:255], email=address,
                   email_verified=email_verified, name=storable(str(name or ""))[:255] or None)


def parse_providers(raw: Mapping[str, Mapping[str, Any]]) -> dict[str, Provider]:
    """``config.oauth`` into Providers; ConfigError naming ``oauth.NAME.key`` on anything wrong."""
    providers: dict[str, Provider] = {}
    for name, table in raw.items():
        where = f"oauth.{name}"
        if not NAME_RE.match(name):
            raise ConfigError(where, "provider names are 1-32 lowercase letters, digits, - or _")
        unknown = sorted(set(table) - set(KEYS))
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}", "is not a known key")
        kind = table.get("kind")
        if kind not in KINDS:
            raise ConfigError(f"{where}.kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
        values: dict[str, Any] = dict(DEFAULTS[kind])
        for key, value in table.items():
            if key == "scopes":
                if isinstance(value, str):
                    value = tuple(value.split())
                elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                    value = tuple(value)
                else:
                    raise ConfigError(f"{where}.scopes", "must be a list of strings")
            elif not isinstance(value, str):
                raise ConfigError(f"{where}.{key}", f"must be a string, got {value!r}")
            values[key] = value
        for key in ("client_id", "client_secret"):
            if not values.get(key):
                raise ConfigError(f"{where}.{key}", "is required")
        if kind == "oidc" and not values.get("discovery_url") and not all(
                values.get(k) for k in ("authorize_url", "token_url", "jwks_url", "issuer")):
            raise ConfigError(f"{where}.discovery_url",
                              "is required (or all of authorize_url, token_url, jwks_url and issuer)")
        for key in ("discovery_url", "authorize_url", "token_url", "userinfo_url", "jwks_url", "redirect_uri"):
            check_url(f"{where}.{key}", values.get(key) or "")
        values["kind"] = kind
        providers[name] = Provider(name=name, **values)
    return providers


def pkce_challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


class OAuthService:
    def __init__(self, ctx: Context, base_url: Callable[[], str]) -> None:
        self.ctx = ctx
        self.base_url = base_url
        self.providers = parse_providers(ctx.config.oauth)
        # Per-app caches of provider metadata (never module level): url -> (fetched_at, document).
        self._cache: dict[str, tuple[float, Any]] = {}

    def provider(self, name: str) -> Provider:
        found = self.providers.get(name)
        if found is None:
            raise NotFound()
        return found

    # Provider metadata ---------------------------------------------------------------------------

    async def _get_json(self, url: str, headers: dict[str, str] | None = None) -> Any:
        request = HTTPRequest(url, headers={"Accept": "application/json", **(headers or {})},
                              request_timeout=HTTP_TIMEOUT_S, follow_redirects=False)
        try:
            response = await AsyncHTTPClient().fetch(request)
            return json.loads(response.body)
        except (HTTPClientError, OSError, *JSON_ERRORS):
            raise Invalid.one("code", BAD_CODE) from None

    async def _cached(self, url: str, fresh: bool = False) -> Any:
        now = self.ctx.clock.now().timestamp()
        hit = self._cache.get(url)
        if hit is not None and not fresh and now - hit[0] < METADATA_TTL_S:
            return hit[1]
        document = await self._get_json(url)
        self._cache[url] = (now, document)
        return document

    async def endpoints(self, p: Provider) -> Provider:
        """The provider with every endpoint filled in from discovery (explicit settings win)."""
        if not p.discovery_url:
            return p
        found = await self._cached(p.discovery_url)
        if not isinstance(found, dict):
            raise Invalid.one("code", BAD_CODE)
        return Provider(
            name=p.name, kind=p.kind, client_id=p.client_id, client_secret=p.client_secret,
            discovery_url=p.discovery_url, scopes=p.scopes, redirect_uri=p.redirect_uri,
            authorize_url=p.authorize_url or str(found.get("authorization_endpoint", "")),
            token_url=p.token_url or str(found.get("token_endpoint", "")),
            userinfo_url=p.userinfo_url or str(found.get("userinfo_endpoint", "")),
            jwks_url=p.jwks_url or str(found.get("jwks_uri", "")),
            issuer=p.issuer or str(found.get("issuer", "")),
        )

    # The flow ------------------------------------------------------------------------------------

    def _redirect_uri(self, p: Provider, family: str, purpose: str) -> str:
        if p.redirect_uri:
            return p.redirect_uri
        tail = "link/callback" if purpose == "link" else "callback"
        return f"{self.base_url().rstrip('/')}/api/v1/auth/{family}/social/{p.name}/{tail}"

    async def start(self, name: str, *, family: str, purpose: str, user_id: str | None = None) -> str:
        """Record a new flow and return the provider's authorization URL."""
        p = await self.endpoints(self.provider(name))
        state = secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(48)
        nonce = secrets.token_urlsafe(24)
        redirect_uri = self._redirect_uri(p, family, purpose)
        expires_at = iso(self.ctx.clock.now() + timedelta(minutes=STATE_TTL_MIN))
        await self.ctx.db.write(lambda tx: auth_store.state_insert(
            tx, id=new_id(), state_hash=sha256_hex(state), provider=p.name, purpose=purpose, family=family,
            user_id=user_id, code_verifier=verifier, nonce=nonce, redirect_uri=redirect_uri,
            expires_at=expires_at, now=self.ctx.now()))
        params = {"response_type": "code", "client_id": p.client_id, "redirect_uri": redirect_uri,
                  "scope": " ".join(p.scopes), "state": state, "code_challenge": pkce_challenge(verifier),
                  "code_challenge_method": "S256"}
        if p.is_oidc:
            params["nonce"] = nonce
        separator = "&" if "?" in p.authorize_url else "?"
        return f"{p.authorize_url}{separator}{urlencode(params)}"

    async def finish(self, name: str, code: str, state: str, *, family: str, purpose: str,
                     user_id: str | None = None) -> Identity:
        """Consume the state, exchange the code, verify who it is. 422 on any mismatch."""
        p = self.provider(name)
        if not state or len(state) > 200:
            raise Invalid.one("state", BAD_STATE)
        if not code or len(code) > 2000:
            raise Invalid.one("code", BAD_CODE)
        row = await self.ctx.db.write(lambda tx: auth_store.state_take(tx, sha256_hex(state), self.ctx.now()))
        if (row is None or row["provider"] != p.name or row["purpose"] != purpose or row["family"] != family
                or row["user_id"] != user_id):
            raise Invalid.one("state", BAD_STATE)
        p = await self.endpoints(p)
        tokens = await self._exchange(p, code, row)
        if p.is_oidc:
            return await self._verify_id_token(p, tokens.get("id_token"), row["nonce"])
        return await self._github_identity(p, tokens)

    async def _exchange(self, p: Provider, code: str, row: sqlite3.Row) -> dict[str, Any]:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": row["redirect_uri"],
                "code_verifier": row["code_verifier"], "client_id": p.client_id}
        headers = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}
        if p.kind == "github":
            form["client_secret"] = p.client_secret  # GitHub takes the secret in the form
        else:  # client_secret_basic: the default auth method of OpenID Connect token endpoints
            basic = base64.b64encode(f"{p.client_id}:{p.client_secret}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        request = HTTPRequest(p.token_url, method="POST", body=urlencode(form), headers=headers,
                              request_timeout=HTTP_TIMEOUT_S, follow_redirects=False)
        try:
            response = await AsyncHTTPClient().fetch(request)
            tokens = json.loads(response.body)
        except (HTTPClientError, OSError, *JSON_ERRORS):
            raise Invalid.one("code", BAD_CODE) from None
        if not isinstance(tokens, dict) or "error" in tokens:
            raise Invalid.one("code", BAD_CODE)
        return tokens

    async def _signing_key(self, p: Provider, kid: str | None, fresh: bool = False) -> Any:
        document = await self._cached(p.jwks_url, fresh=fresh)
        try:
            keys = [key for key in jwt.PyJWKSet.from_dict(document).keys if key.key_type == "RSA"]
        except (jwt.PyJWKSetError, jwt.InvalidKeyError, TypeError, KeyError):
            raise Invalid.one("code", BAD_TOKEN) from None
        matching = [key for key in keys if key.key_id == kid] if kid else keys[:1] if len(keys) == 1 else []
        if not matching:
            if not fresh:  # the provider may have rotated its keys: read the JWKS once more
                return await self._signing_key(p, kid, fresh=True)
            raise Invalid.one("code", BAD_TOKEN)
        return matching[0].key

    async def _verify_id_token(self, p: Provider, id_token: Any, nonce: str) -> Identity:
        if not isinstance(id_token, str) or len(id_token) > 20_000:
            raise Invalid.one("code", BAD_TOKEN)
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError:
            raise Invalid.one("code", BAD_TOKEN) from None
        if header.get("alg") != "RS256":  # never "none", never HS256 keyed with a public key
            raise Invalid.one("code", BAD_TOKEN)
        key = await self._signing_key(p, header.get("kid"))
        try:
            claims = jwt.decode(
                id_token, key=key, algorithms=["RS256"], audience=p.client_id, issuer=p.issuer or None,
                # Time is checked below against the server's clock (tests move it; pyjwt reads the wall clock).
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                         "verify_iss": bool(p.issuer), "require": ["exp", "iat", "sub", "aud", "iss"]},
            )
        except jwt.PyJWTError:
            raise Invalid.one("code", BAD_TOKEN) from None
        now = self.ctx.clock.now().timestamp()
        try:
            expired = float(claims["exp"]) <= now - LEEWAY_S
            early = float(claims.get("nbf", 0)) > now + LEEWAY_S or float(claims["iat"]) > now + LEEWAY_S
        except (TypeError, ValueError):
            raise Invalid.one("code", BAD_TOKEN) from None
        if expired or early:
            raise Invalid.one("code", BAD_TOKEN)
        if not hmac.compare_digest(str(claims.get("nonce", "")).encode(), nonce.encode()):
            raise Invalid.one("code", BAD_TOKEN)
        return Identity.of(p.name, claims["sub"], claims.get("email"), claims.get("email_verified") is True,
                           claims.get("name") or claims.get("preferred_username"))

    async def _github_identity(self, p: Provider, tokens: dict[str, Any]) -> Identity:
        access = tokens.get("access_token")
        if not isinstance(access, str) or not p.userinfo_url:
            raise Invalid.one("code", BAD_CODE)
        auth = {"Authorization": f"Bearer {access}"}
        profile = await self._get_json(p.userinfo_url, auth)
        if not isinstance(profile, dict) or profile.get("id") is None:
            raise Invalid.one("code", BAD_CODE)
        email, verified = None, False
        emails = await self._get_json(p.userinfo_url.rstrip("/") + "/emails", auth)
        for entry in emails if isinstance(emails, list) else []:
            if isinstance(entry, dict) and entry.get("primary") and isinstance(entry.get("email"), str):
                email, verified = entry["email"], entry.get("verified") is True
        return Identity.of(p.name, profile["id"], email, verified, profile.get("name") or profile.get("login"))

    # Accounts ------------------------------------------------------------------------------------

    async def login(self, who: Identity, sign_in: Callable[[Tx, str], Awaitable[T]]) -> T:
        """Sign in the account linked to ``who``, or create one when its email is new; never link by email."""

        async def unit(tx: Tx) -> tuple[str, Any]:
            now = self.ctx.now()
            linked = await auth_store.social_by_subject(tx, who.provider, who.subject)
            if linked is not None:
                user = await user_store.by_id(tx, linked["user_id"])
                if user is None or not user["is_active"]:
                    return "inactive", None
                return "ok", await sign_in(tx, user["id"])
            if who.email is None:
                return "no_email", None
            # An unverified provider address must not create an account: anyone could pre-register the
            # victim's email at a lax provider, then keep access through this link once the victim
            # takes the account over by one-time code or password reset (pre-account hijacking).
            if not who.email_verified:
                return "unverified", None
            if await user_store.by_email(tx, who.email) is not None:
                return "email_taken", None
            if not self.ctx.config.auth.registration_open:
                return "closed", None
            user_id = new_id()
            await user_store.insert(tx, id=user_id, name=who.name or who.email.partition("@")[0][:255],
                                    email=who.email, password_hash=None,
                                    preferred_language=self.ctx.config.translation.default_language, now=now,
                                    email_verified_at=now if who.email_verified else None)
            await auth_store.social_insert(tx, id=new_id(), user_id=user_id, provider=who.provider,
                                           subject=who.subject, email=who.email, now=now)
            return "ok", await sign_in(tx, user_id)

        verdict, result = await self.ctx.db.write(unit)
        if verdict == "inactive":
            raise Forbidden(INACTIVE)
        if verdict == "closed":
            raise Forbidden("Registration is closed.", code="registration_closed")
        if verdict == "no_email":
            raise Invalid.one("email", f"The {who.provider} account did not share an email address.")
        if verdict == "unverified":
            raise Invalid.one("email", f"The {who.provider} account's email address is not verified.")
        if verdict == "email_taken":
            raise Invalid.one("email", f"An account with this email already exists. Sign in to it, then link "
                                       f"{who.provider} from your account.")
        return result

    async def link(self, who: Identity, user_id: str) -> sqlite3.Row:
        async def unit(tx: Tx) -> sqlite3.Row | None:
            linked = await auth_store.social_by_subject(tx, who.provider, who.subject)
            if linked is not None:
                return linked if linked["user_id"] == user_id else None
            await auth_store.social_insert(tx, id=new_id(), user_id=user_id, provider=who.provider,
                                           subject=who.subject, email=who.email, now=self.ctx.now())
            return await auth_store.social_by_subject(tx, who.provider, who.subject)

        row = await self.ctx.db.write(unit)
        if row is None:
            raise Invalid.one("provider", f"This {who.provider} account is already linked to another user.")
        return row

    async def accounts(self, user_id: str) -> list[sqlite3.Row]:
        return await auth_store.social_for_user(self.ctx.db.reader, user_id)

    async def unlink(self, user_id: str, account_id: str) -> None:
        async def unit(tx: Tx) -> str:
            mine = await auth_store.social_for_user(tx, user_id)
            if not any(row["id"] == account_id for row in mine):
                return "missing"
            user = await user_store.by_id(tx, user_id)
            if user is not None and user["password_hash"] is None and len(mine) == 1:
                return "last"
            await auth_store.social_delete(tx, account_id, user_id)
            return "ok"

        verdict = await self.ctx.db.write(unit)
        if verdict == "missing":
            raise NotFound()
        if verdict == "last":
            raise Invalid.one("provider", "This is your only way to sign in: set a password before unlinking it.")


def linked_account(row: sqlite3.Row) -> dict[str, Any]:
    return {"id": row["id"], "provider": row["provider"], "email": row["email"], "created_at": row["created_at"]}
