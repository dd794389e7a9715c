"""Web (cookie-session) sign-in for single-page apps, the XSRF cookie, and the session resolver.

Owns the cookies: ``rosetta_session`` (HttpOnly, SameSite=Lax, Secure behind https) and
``XSRF-TOKEN`` (readable by the page, sent back in ``X-XSRF-TOKEN``). Every state-changing request
authenticated by the session cookie is checked in BaseHandler.prepare against the token bound to
that session (419 otherwise).

Decision: like Laravel Sanctum, the public web routes (register, login, otp, otp/verify,
forgot-password, reset-password) also require the XSRF double submit: ``X-XSRF-TOKEN`` equal to the
``XSRF-TOKEN`` cookie, and that token signed by us (from ``GET /csrf-cookie``). A cross-site page
can neither read that cookie nor send the header without a CORS preflight we refuse, so it cannot
sign a victim in to the attacker's account (login CSRF).
"""

from __future__ import annotations

from typing import Any

from rosetta.errors import CsrfMismatch
from rosetta.handlers.accounts import ChangePasswordHandler, registration_input
from rosetta.handlers.auth_app import SigninHandler
from rosetta.handlers.base import BaseHandler
from rosetta.handlers.validate import Validator
from rosetta.services import views
from rosetta.services.auth import Principal
from rosetta.services.sessions import OpenedSession

SESSION_COOKIE = "rosetta_session"
XSRF_COOKIE = "XSRF-TOKEN"
XSRF_HEADER = "X-XSRF-TOKEN"


async def session_resolver(handler: BaseHandler) -> Principal | None:
    """``app.resolvers`` entry: the cookie session as a Principal (abilities ``*``)."""
    if not handler.allow_session:
        return None
    secret = handler.get_cookie(SESSION_COOKIE)
    if not secret:
        return None
    live = await handler.app.sessions.lookup(secret)
    if live is None:
        return None
    handler.web_session = live  # type: ignore[attr-defined]  # read by the XSRF check in prepare()
    return Principal("user", live.user_id, session_id=live.id, abilities=frozenset({"*"}))


def _secure(handler: BaseHandler) -> bool:
    return handler.app.config.server.public_url.lower().startswith("https://")


def set_xsrf_cookie(handler: BaseHandler, value: str) -> None:
    # Not HttpOnly: the page reads it and echoes it in X-XSRF-TOKEN.
    handler.set_cookie(XSRF_COOKIE, value, path="/", samesite="Lax", secure=_secure(handler),
                       max_age=int(handler.app.config.auth.session_ttl_hours * 3600))


def set_session_cookies(handler: BaseHandler, opened: OpenedSession) -> None:
    max_age = int(handler.app.config.auth.session_ttl_hours * 3600)
    handler.set_cookie(SESSION_COOKIE, opened.secret, path="/", httponly=True, samesite="Lax",
                       secure=_secure(handler), max_age=max_age)
    set_xsrf_cookie(handler, opened.xsrf)


def clear_session_cookies(handler: BaseHandler) -> None:
    handler.clear_cookie(SESSION_COOKIE, path="/")
    handler.clear_cookie(XSRF_COOKIE, path="/")


class WebSigninHandler(SigninHandler):
    """A public web route: XSRF double submit first, then the shared sign-in steps."""

    async def prepare(self) -> None:
        await super().prepare()
        if self.request.method == "OPTIONS":
            return
        presented = self.request.headers.get(XSRF_HEADER, "")
        cookie = self.get_cookie(XSRF_COOKIE) or ""
        if not presented or presented != cookie or not self.app.sessions.xsrf_is_ours(presented):
            raise CsrfMismatch()

    async def current_session_id(self) -> str | None:
        """The session the browser already holds (closed on a new sign-in: a new id every time)."""
        secret = self.get_cookie(SESSION_COOKIE)
        live = await self.app.sessions.lookup(secret) if secret else None
        return live.id if live else None

    def signed_in(self, user: Any, opened: OpenedSession, message: str) -> None:
        set_session_cookies(self, opened)
        self.send_json({"user": views.user_self(user), "message": message})


class CsrfCookieHandler(BaseHandler):
    """``GET /csrf-cookie``: 204 and a fresh ``XSRF-TOKEN`` (bound to the session when there is one)."""

    public = True

    async def get(self) -> None:
        secret = self.get_cookie(SESSION_COOKIE)
        live = await self.app.sessions.lookup(secret) if secret else None
        token = await self.app.sessions.rotate_xsrf(live.id) if live else self.app.sessions.new_xsrf()
        set_xsrf_cookie(self, token)
        self.no_content()


class WebRegisterHandler(WebSigninHandler):
    async def post(self) -> None:
        r = registration_input(self)
        replacing = await self.current_session_id()
        signed = await self.app.accounts.register(name=r.name, email=r.email, password=r.password,
                                                  preferred_language=r.language, device_name=None,
                                                  issue_token=False, within=self.app.sessions.opener(replacing))
        self.signed_in(signed.user, signed.extra, "Registered successfully.")


class WebLoginHandler(WebSigninHandler):
    async def post(self) -> None:
        v = Validator(self.json_body())
        email = v.email()
        password = v.string("password", required=True, max_len=10_000, strip=False)
        v.string("device_name", max_len=255)
        v.done()
        assert email and password
        limit = self.app.config.limits.login_per_minute
        self.rate_limit("login-address", self.address_key(), limit, 60)
        self.rate_limit("login-account", email, limit, 60)
        user = await self.app.accounts.check_password_login(email, password)
        fresh_user, opened = await self.app.sessions.sign_in(user["id"], await self.current_session_id())
        self.signed_in(fresh_user, opened, "Logged in successfully.")


class WebOtpHandler(WebSigninHandler):
    async def post(self) -> None:
        await self.send_otp()


class WebOtpVerifyHandler(WebSigninHandler):
    async def post(self) -> None:
        email, token, _device = self.otp_input()
        self.check_otp_shape(email, token)
        replacing = await self.current_session_id()

        user, opened = await self.app.otp.verify(email, token, self.app.sessions.session_sign_in(replacing))
        self.signed_in(user, opened, "Logged in successfully.")


class WebForgotPasswordHandler(WebSigninHandler):
    async def post(self) -> None:
        await self.forgot()


class WebResetPasswordHandler(WebSigninHandler):
    async def post(self) -> None:
        await self.reset()


class WebLogoutHandler(BaseHandler):
    async def post(self) -> None:
        assert self.principal
        if self.principal.session_id is not None:
            await self.app.sessions.close(self.principal.session_id)
            clear_session_cookies(self)
        else:
            await self.app.accounts.logout(self.principal)  # a bearer caller: revoke that token
        self.send_json({"message": "Logged out successfully."})


ROUTES = [
    ("/csrf-cookie", CsrfCookieHandler),
    ("/auth/web/register", WebRegisterHandler),
    ("/auth/web/login", WebLoginHandler),
    ("/auth/web/otp", WebOtpHandler),
    ("/auth/web/otp/verify", WebOtpVerifyHandler),
    ("/auth/web/forgot-password", WebForgotPasswordHandler),
    ("/auth/web/reset-password", WebResetPasswordHandler),
    ("/auth/web/logout", WebLogoutHandler),
    ("/auth/web/change-password", ChangePasswordHandler),  # the same rules for cookie and bearer callers
]
