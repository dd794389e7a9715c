"""App sign-up and sign-in, the current user, personal access tokens, and health."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rosetta import __version__
from rosetta.clock import parse_iso
from rosetta.errors import Forbidden, NotFound
from rosetta.handlers.base import BaseHandler
from rosetta.handlers.validate import Validator
from rosetta.ids import looks_like_id
from rosetta.services import views
from rosetta.services.accounts import SignedIn


def token_response(signed: SignedIn) -> dict[str, Any]:
    return {"access_token": signed.token.plain, "token_type": "Bearer", "user": views.user_self(signed.user)}


def token_view(row: Any, plain: str | None = None) -> dict[str, Any]:
    out = {
        "id": row["id"],
        "name": row["name"],
        "abilities": json.loads(row["abilities"]),
        "expires_at": row["expires_at"],
        "last_used_at": row["last_used_at"],
        "created_at": row["created_at"],
    }
    if plain is not None:
        out["token"] = plain
    return out


class HealthHandler(BaseHandler):
    public = True

    def get(self) -> None:
        self.send_json({"status": "ok", "version": __version__})


@dataclass(frozen=True)
class Registration:
    name: str
    email: str
    password: str
    language: str | None
    device_name: str | None


def registration_input(handler: BaseHandler) -> Registration:
    """A sign-up (app or web): the per-address limit, the open-registration rule, the checked fields."""
    handler.rate_limit("register", handler.address_key(), handler.app.config.limits.register_per_minute, 60)
    if not handler.app.config.auth.registration_open:
        raise Forbidden("Registration is closed.", code="registration_closed")
    v = Validator(handler.json_body())
    name = v.string("name", required=True, max_len=255)
    email = v.email()
    password = v.password(confirm=True)
    language = v.language()
    device = v.string("device_name", max_len=255)
    v.done()
    assert name and email and password
    return Registration(name, email, password, language, device)


class RegisterHandler(BaseHandler):
    public = True

    async def post(self) -> None:
        r = registration_input(self)
        signed = await self.app.accounts.register(name=r.name, email=r.email, password=r.password,
                                                  preferred_language=r.language, device_name=r.device_name)
        self.send_json(token_response(signed))


class LoginHandler(BaseHandler):
    public = True

    async def post(self) -> None:
        v = Validator(self.json_body())
        email = v.email()
        password = v.string("password", required=True, max_len=10_000, strip=False)
        device = v.string("device_name", max_len=255)
        v.done()
        assert email and password
        limit = self.app.config.limits.login_per_minute
        self.rate_limit("login-address", self.address_key(), limit, 60)
        self.rate_limit("login-account", email, limit, 60)
        signed = await self.app.accounts.login(email, password, device)
        self.send_json(token_response(signed))


class LogoutHandler(BaseHandler):
    async def post(self) -> None:
        assert self.principal
        await self.app.accounts.logout(self.principal)
        self.send_json({"message": "Logged out successfully."})


class ChangePasswordHandler(BaseHandler):
    async def post(self) -> None:
        assert self.principal
        # A stolen token must not become a fast oracle for the current password: the login limit.
        self.rate_limit("change-password", self.principal.user_id, self.app.config.limits.login_per_minute, 60)
        v = Validator(self.json_body())
        current = v.string("current_password", required=True, max_len=10_000, strip=False)
        new = v.password(confirm=True)
        v.done()
        assert current is not None and new is not None
        await self.app.accounts.change_password(self.principal, current, new)
        self.send_json({"message": "Password changed successfully."})


class MeHandler(BaseHandler):
    async def get(self) -> None:
        assert self.principal
        self.send_json(views.user_self(await self.app.accounts.me(self.principal)))

    async def patch(self) -> None:
        assert self.principal
        body = self.json_body()
        v = Validator(body)
        changes: dict[str, Any] = {}
        if "name" in body:
            changes["name"] = v.string("name", required=True, max_len=255)
        if "preferred_language" in body:
            changes["preferred_language"] = v.language(required=True)
        if "avatar_url" in body:
            url = v.string("avatar_url", max_len=2048)
            if url is not None and not url.startswith(("https://", "http://")):
                v.fail("avatar_url", "The avatar_url field must be a valid URL.")
            changes["avatar_url"] = url
        v.done()
        self.send_json(views.user_self(await self.app.accounts.update_me(self.principal, changes)))


class TokensHandler(BaseHandler):
    async def get(self) -> None:
        assert self.principal
        rows = await self.app.accounts.list_tokens(self.principal)
        self.send_json({"data": [token_view(row) for row in rows]})

    async def post(self) -> None:
        assert self.principal
        v = Validator(self.json_body())
        name = v.string("name", required=True, max_len=255)
        abilities = v.string_list("abilities", max_items=10, max_len=64, required=True)
        expires_at = v.string("expires_at", max_len=64)
        if expires_at is not None:
            try:
                expires_at = parse_iso(expires_at).isoformat(timespec="microseconds")
            except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 pushed past UTC's range
                v.fail("expires_at", "The expires_at field must be an ISO 8601 date.")
                expires_at = None
        v.done()
        assert name is not None and abilities is not None
        row, plain = await self.app.accounts.create_token(self.principal, name, abilities, expires_at)
        self.send_json({"data": token_view(row, plain)}, 201)


class TokenHandler(BaseHandler):
    async def delete(self, token_id: str) -> None:
        assert self.principal
        if not looks_like_id(token_id):
            raise NotFound()
        await self.app.accounts.revoke_token(self.principal, token_id.lower())
        self.no_content()


ROUTES = [
    ("/health", HealthHandler),
    ("/auth/app/register", RegisterHandler),
    ("/auth/app/login", LoginHandler),
    ("/auth/app/logout", LogoutHandler),
    ("/auth/app/change-password", ChangePasswordHandler),
    ("/me", MeHandler),
    ("/me/tokens", TokensHandler),
    (r"/me/tokens/([^/]+)", TokenHandler),
]
