"""Social sign-in routes, app (bearer token) and web (cookie session): the six operations of each family.

HTTP only. ``redirect`` and ``callback`` are public (the single-use state is the credential of a
flow); listing, linking and unlinking need a signed-in caller. The web callback is a GET the
provider's redirect leads to, so it needs no XSRF token; instead the web redirect also puts the
state in an HttpOnly cookie and the callback requires it, so a flow started by someone else (an
attacker mailing their own callback link: login CSRF) cannot finish in this browser.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qs, urlsplit

from rosetta.errors import Invalid, NotFound
from rosetta.handlers.accounts import token_response
from rosetta.handlers.auth_web import SESSION_COOKIE, set_session_cookies
from rosetta.handlers.base import BaseHandler
from rosetta.handlers.validate import Validator
from rosetta.ids import looks_like_id
from rosetta.services import views
from rosetta.services.oauth import BAD_STATE, linked_account

MAX_PARAM = 2000
STATE_COOKIE = "rosetta_oauth_state"
STATE_COOKIE_S = 600  # as long as the state itself lives (oauth.STATE_TTL_MIN)


class SocialHandler(BaseHandler):
    family = "app"

    def limit_address(self, route: str) -> None:
        self.rate_limit(f"social-{route}-address", self.address_key(), self.app.config.limits.login_per_minute, 60)


class RedirectHandler(SocialHandler):
    public = True

    async def get(self, provider: str) -> None:
        self.limit_address("redirect")
        url = await self.app.oauth.start(provider, family=self.family, purpose="login")
        if self.family == "web":
            state = parse_qs(urlsplit(url).query).get("state", [""])[0]
            self.set_cookie(STATE_COOKIE, state, path="/api/v1/auth/web/social", httponly=True, samesite="Lax",
                            secure=self.app.config.server.public_url.lower().startswith("https://"),
                            max_age=STATE_COOKIE_S)
        self.send_json({"url": url})


class CallbackHandler(SocialHandler):
    public = True

    async def get(self, provider: str) -> None:
        self.limit_address("callback")
        code = self.get_query_argument("code", "")[:MAX_PARAM + 1]
        state = self.get_query_argument("state", "")[:MAX_PARAM + 1]
        if self.family == "web":
            bound = self.get_cookie(STATE_COOKIE) or ""
            if not state or not hmac.compare_digest(bound.encode(), state.encode()):
                raise Invalid.one("state", BAD_STATE)
            self.clear_cookie(STATE_COOKIE, path="/api/v1/auth/web/social")
        who = await self.app.oauth.finish(provider, code, state, family=self.family, purpose="login")
        if self.family == "app":
            issue = self.app.accounts.token_sign_in(f"{provider} sign-in")
            self.send_json(token_response(await self.app.oauth.login(who, issue)))
            return
        secret = self.get_cookie(SESSION_COOKIE)
        live = await self.app.sessions.lookup(secret) if secret else None
        replacing = live.id if live else None

        user, opened = await self.app.oauth.login(who, self.app.sessions.session_sign_in(replacing))
        set_session_cookies(self, opened)
        self.send_json({"user": views.user_self(user), "message": "Logged in successfully."})


class AccountsHandler(SocialHandler):
    async def get(self) -> None:
        assert self.principal
        rows = await self.app.oauth.accounts(self.principal.user_id)
        self.send_json({"data": [linked_account(row) for row in rows]})


class AccountHandler(SocialHandler):
    async def delete(self, account_id: str) -> None:
        assert self.principal
        if not looks_like_id(account_id):
            raise NotFound()
        await self.app.oauth.unlink(self.principal.user_id, account_id.lower())
        self.no_content()


class LinkHandler(SocialHandler):
    async def post(self, provider: str) -> None:
        assert self.principal
        url = await self.app.oauth.start(provider, family=self.family, purpose="link", user_id=self.principal.user_id)
        self.send_json({"url": url})


class LinkCallbackHandler(SocialHandler):
    async def post(self, provider: str) -> None:
        assert self.principal
        v = Validator(self.json_body())
        code = v.string("code", required=True, max_len=MAX_PARAM)
        state = v.string("state", required=True, max_len=MAX_PARAM)
        v.done()
        assert code is not None and state is not None
        self.limit_address("link")
        who = await self.app.oauth.finish(provider, code, state, family=self.family, purpose="link",
                                          user_id=self.principal.user_id)
        row = await self.app.oauth.link(who, self.principal.user_id)
        self.send_json({"message": "Social account linked successfully.", "data": linked_account(row)})


def _family(family: str) -> list[tuple[str, type]]:
    """The six operations under /auth/{family}/social, each handler specialised to its family."""
    base = f"/auth/{family}/social"
    made = {cls: type(f"{family.title()}{cls.__name__}", (cls,), {"family": family})
            for cls in (RedirectHandler, CallbackHandler, AccountsHandler, AccountHandler, LinkHandler,
                        LinkCallbackHandler)}
    return [
        (f"{base}/accounts", made[AccountsHandler]),
        (rf"{base}/accounts/([^/]+)", made[AccountHandler]),
        (rf"{base}/([a-z0-9_-]{{1,32}})/redirect", made[RedirectHandler]),
        (rf"{base}/([a-z0-9_-]{{1,32}})/callback", made[CallbackHandler]),
        (rf"{base}/([a-z0-9_-]{{1,32}})/link", made[LinkHandler]),
        (rf"{base}/([a-z0-9_-]{{1,32}})/link/callback", made[LinkCallbackHandler]),
    ]


ROUTES = _family("app") + _family("web")
