"""Social sign-in end to end against a small local OpenID Connect provider.

The provider is a real tornado app on a free port serving discovery, JWKS and a token endpoint; it
checks PKCE and client credentials and signs real RS256 ID tokens with a key from ``cryptography``.
The test plays the user's browser: it reads the authorization URL, "approves" by registering a code
with the provider, and calls the callback.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import socket
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import tornado.httpserver
import tornado.web
from cryptography.hazmat.primitives.asymmetric import rsa

from rosetta.config import ConfigError
from rosetta.services.oauth import parse_providers
from tests import support
from tests.authkit import Browser
from tests.support import Server, register

CLIENT_ID = "rosetta-test"
CLIENT_SECRET = "s3cret-client"


class Provider:
    def __init__(self, clock: Any, keys: tuple[Any, Any]) -> None:
        self.clock = clock
        self.key, self.other_key = keys  # other_key: a stranger's key, for forged signatures
        self.grants: dict[str, dict[str, Any]] = {}
        self.sign_with = self.key
        self.audience = CLIENT_ID
        self.exp_offset = 300
        self.email_verified: object = True
        self.token_answer: bytes | None = None  # set: the token endpoint answers exactly these bytes
        self.port = 0
        self.server: tornado.httpserver.HTTPServer | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def jwks(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}

    def id_token(self, grant: dict[str, Any]) -> str:
        now = int(self.clock.now().timestamp())
        claims = {"iss": self.issuer, "aud": self.audience, "sub": grant["sub"], "iat": now,
                  "exp": now + self.exp_offset, "nonce": grant["nonce"], "email": grant["email"],
                  "email_verified": self.email_verified, "name": grant.get("name", "Idp User")}
        return jwt.encode(claims, self.sign_with, algorithm="RS256", headers={"kid": "k1"})

    def approve(self, authorize_url: str, sub: str, email: str, code: str = "code-1") -> dict[str, str]:
        """The user signs in at the provider: remember the request; return the authorize parameters."""
        params = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
        assert authorize_url.startswith(f"{self.issuer}/authorize?")
        assert params["client_id"] == CLIENT_ID and params["code_challenge_method"] == "S256"
        self.grants[code] = {"sub": sub, "email": email, "nonce": params["nonce"],
                             "challenge": params["code_challenge"], "redirect_uri": params["redirect_uri"]}
        return params

    def app(self) -> tornado.web.Application:
        provider = self

        class Discovery(tornado.web.RequestHandler):
            def get(self) -> None:
                self.write({"issuer": provider.issuer, "authorization_endpoint": f"{provider.issuer}/authorize",
                            "token_endpoint": f"{provider.issuer}/token", "jwks_uri": f"{provider.issuer}/jwks"})

        class Jwks(tornado.web.RequestHandler):
            def get(self) -> None:
                self.write(provider.jwks())

        class Token(tornado.web.RequestHandler):
            def post(self) -> None:
                basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
                if self.request.headers.get("Authorization") != f"Basic {basic}":
                    self.set_status(401)
                    self.write({"error": "invalid_client"})
                    return
                if provider.token_answer is not None:
                    self.write(provider.token_answer)
                    return
                grant = provider.grants.pop(self.get_body_argument("code"), None)
                verifier = self.get_body_argument("code_verifier", "")
                digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                if (grant is None or digest != grant["challenge"]
                        or self.get_body_argument("redirect_uri") != grant["redirect_uri"]):
                    self.set_status(400)
                    self.write({"error": "invalid_grant"})
                    return
                self.write({"access_token": "at-1", "token_type": "Bearer", "id_token": provider.id_token(grant)})

        return tornado.web.Application([
            (r"/.well-known/openid-configuration", Discovery), (r"/jwks", Jwks), (r"/token", Token)])

    def start(self) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self.server = tornado.httpserver.HTTPServer(self.app())
        self.server.add_socket(sock)


@pytest.fixture(scope="module")
def rsa_keys():
    # 2048-bit keys take ~100 ms each to make: once per module is enough.
    return tuple(rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2))


@pytest.fixture
def idp(io_loop, clock, rsa_keys):
    provider = Provider(clock, rsa_keys)
    provider.start()
    yield provider
    assert provider.server is not None
    provider.server.stop()


@pytest.fixture
def server(io_loop, tmp_path, clock, idp):
    base = support.test_config(tmp_path / "data", limits={"login_per_minute": 1000})
    oauth = {"idp": {"kind": "oidc", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                     "discovery_url": f"{idp.issuer}/.well-known/openid-configuration"}}
    running = Server(dataclasses.replace(base, oauth=oauth), clock)
    io_loop.run_sync(running.start)
    yield running
    io_loop.run_sync(running.stop)


async def start_login(api, family="app") -> str:
    response = await api.get(f"/auth/{family}/social/idp/redirect")
    assert response.status == 200, response
    return response.json["url"]


async def callback(api, params: dict[str, str], code: str = "code-1", family: str = "app"):
    return await api.get(f"/auth/{family}/social/idp/callback?code={code}&state={params['state']}")


@pytest.mark.gen_test(timeout=30)
async def test_oidc_login_creates_the_account_then_signs_it_in(api, server, idp):
    params = idp.approve(await start_login(api), "sub-1", "mia@example.test")
    assert params["redirect_uri"].endswith("/api/v1/auth/app/social/idp/callback")
    signed = await callback(api, params)
    assert signed.status == 200, signed
    assert signed.json["token_type"] == "Bearer" and signed.json["user"]["email"] == "mia@example.test"
    assert signed.json["user"]["email_verified_at"] is not None
    me = await api.get("/me", token=signed.json["access_token"])
    assert me.status == 200 and me.json["name"] == "Idp User"
    replay = await callback(api, params)
    assert replay.status == 422 and "state" in replay.json["errors"]  # the state is single use
    again = idp.approve(await start_login(api), "sub-1", "mia@example.test", code="code-2")
    second = await callback(api, again, code="code-2")
    assert second.status == 200 and second.json["user"]["id"] == signed.json["user"]["id"]
    accounts = await api.get("/auth/app/social/accounts", token=second.json["access_token"])
    [linked] = accounts.json["data"]
    assert set(linked) == {"id", "provider", "email", "created_at"} and linked["provider"] == "idp"


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("claim", [False, "true", None])
async def test_an_unverified_provider_email_creates_no_account(api, server, idp, claim):
    # Else anyone could pre-register a victim's address at a lax provider and keep access through the link.
    idp.email_verified = claim
    params = idp.approve(await start_login(api), "sub-1", "mia@example.test")
    refused = await callback(api, params)
    assert refused.status == 422 and "email" in refused.json["errors"], refused
    assert await server.app.db.reader.fetch_value("SELECT COUNT(*) FROM users") == 0


@pytest.mark.gen_test(timeout=30)
async def test_state_mismatch_is_refused(api, server, idp):
    params = idp.approve(await start_login(api), "sub-1", "mia@example.test")
    forged = await api.get("/auth/app/social/idp/callback?code=code-1&state=not-the-state")
    assert forged.status == 422 and forged.json["errors"] == {"state": ["Invalid or expired state."]}
    web_state = await api.get(f"/auth/web/social/idp/callback?code=code-1&state={params['state']}")
    assert web_state.status == 422  # an app flow's state does not finish a web flow
    assert await server.app.db.reader.fetch_value("SELECT COUNT(*) FROM users") == 0


@pytest.mark.gen_test(timeout=30)
async def test_expired_state_is_refused(api, server, idp, clock):
    params = idp.approve(await start_login(api), "sub-1", "mia@example.test")
    clock.advance(minutes=11)
    late = await callback(api, params)
    assert late.status == 422 and "state" in late.json["errors"]


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("spoil", ["bad_signature", "wrong_audience", "expired", "wrong_nonce"])
async def test_unverifiable_id_tokens_are_refused(api, server, idp, spoil):
    params = idp.approve(await start_login(api), "sub-1", "mia@example.test")
    if spoil == "bad_signature":
        idp.sign_with = idp.other_key
    elif spoil == "wrong_audience":
        idp.audience = "someone-else"
    elif spoil == "expired":
        idp.exp_offset = -3600
    else:
        idp.grants["code-1"]["nonce"] = "replayed-nonce"
    refused = await callback(api, params)
    assert refused.status == 422 and refused.json["errors"] == {"code": ["The identity token could not be verified."]}
    assert await server.app.db.reader.fetch_value("SELECT COUNT(*) FROM users") == 0


@pytest.mark.gen_test(timeout=30)
async def test_wrong_code_or_pkce_is_refused_by_the_provider(api, server, idp):
    params = idp.approve(await start_login(api), "sub-1", "mia@example.test")
    idp.grants["code-1"]["challenge"] = "tampered"
    refused = await callback(api, params)
    assert refused.status == 422 and "code" in refused.json["errors"]


@pytest.mark.gen_test(timeout=30)
async def test_a_token_answer_that_is_not_json_is_refused_not_a_500(api, server, idp):
    for answer in (b"<html>maintenance</html>", b"[" * 100_000):  # the second: RecursionError in json.loads
        params = idp.approve(await start_login(api), "sub-1", "mia@example.test")
        idp.token_answer = answer
        refused = await callback(api, params)
        assert refused.status == 422 and "code" in refused.json["errors"], refused


@pytest.mark.gen_test(timeout=30)
async def test_a_name_claim_sqlite_cannot_store_is_shown_replaced(api, server, idp):
    params = idp.approve(await start_login(api), "sub-1", "mia@example.test")
    idp.grants["code-1"]["name"] = "Mia \ud800"  # a lone surrogate: valid in JSON, not storable as UTF-8
    signed = await callback(api, params)
    assert signed.status == 200, signed
    assert (await api.get("/me", token=signed.json["access_token"])).json["name"] == "Mia \ufffd"


@pytest.mark.gen_test(timeout=30)
async def test_never_links_by_email(api, server, idp):
    ana = await register(api, "Ana")
    params = idp.approve(await start_login(api), "sub-9", ana.email)
    refused = await callback(api, params)
    assert refused.status == 422 and "email" in refused.json["errors"]
    assert "link" in refused.json["errors"]["email"][0]
    listed = await api.get("/auth/app/social/accounts", token=ana.token)
    assert listed.json == {"data": []}


@pytest.mark.gen_test(timeout=30)
async def test_link_then_unlink_rules(api, server, idp):
    ana = await register(api, "Ana")
    started = await api.post("/auth/app/social/idp/link", token=ana.token)
    assert started.status == 200
    params = idp.approve(started.json["url"], "sub-ana", "ana.at.idp@example.test")
    assert params["redirect_uri"].endswith("/auth/app/social/idp/link/callback")
    # A login callback cannot complete a link flow, and another user cannot finish Ana's link.
    assert (await callback(api, params)).status == 422
    started = await api.post("/auth/app/social/idp/link", token=ana.token)
    params = idp.approve(started.json["url"], "sub-ana", "ana.at.idp@example.test", code="code-2")
    bob = await register(api, "Bob")
    stolen = await api.post("/auth/app/social/idp/link/callback", {"code": "code-2", "state": params["state"]},
                            token=bob.token)
    assert stolen.status == 422 and "state" in stolen.json["errors"]
    started = await api.post("/auth/app/social/idp/link", token=ana.token)
    params = idp.approve(started.json["url"], "sub-ana", "ana.at.idp@example.test", code="code-3")
    linked = await api.post("/auth/app/social/idp/link/callback", {"code": "code-3", "state": params["state"]},
                            token=ana.token)
    assert linked.status == 200, linked
    account = linked.json["data"]
    assert account["provider"] == "idp" and account["email"] == "ana.at.idp@example.test"
    # Now the identity signs in to Ana's account.
    login = idp.approve(await start_login(api), "sub-ana", "ana.at.idp@example.test", code="code-4")
    signed = await callback(api, login, code="code-4")
    assert signed.status == 200 and signed.json["user"]["id"] == ana.id
    # Ana has a password: unlinking her only social account is allowed.
    assert (await api.delete(f"/auth/app/social/accounts/{account['id']}", token=bob.token)).status == 404
    assert (await api.delete(f"/auth/app/social/accounts/{account['id']}", token=ana.token)).status == 204
    assert (await api.get("/auth/app/social/accounts", token=ana.token)).json == {"data": []}


@pytest.mark.gen_test(timeout=30)
async def test_unlink_refused_when_it_is_the_only_way_to_sign_in(api, server, idp):
    params = idp.approve(await start_login(api), "sub-1", "mia@example.test")
    token = (await callback(api, params)).json["access_token"]
    [account] = (await api.get("/auth/app/social/accounts", token=token)).json["data"]
    refused = await api.delete(f"/auth/app/social/accounts/{account['id']}", token=token)
    assert refused.status == 422 and "provider" in refused.json["errors"]


@pytest.mark.gen_test(timeout=30)
async def test_web_social_login_establishes_a_session(api, server, idp):
    browser = Browser(api)
    url = (await browser.get("/auth/web/social/idp/redirect")).json["url"]
    params = idp.approve(url, "sub-w", "web@example.test")
    assert params["redirect_uri"].endswith("/api/v1/auth/web/social/idp/callback")
    # Another browser holding the link (login CSRF) cannot finish this flow: the state is bound by cookie.
    elsewhere = await Browser(api).get(f"/auth/web/social/idp/callback?code=code-1&state={params['state']}")
    assert elsewhere.status == 422 and elsewhere.json["errors"] == {"state": ["Invalid or expired state."]}
    signed = await browser.get(f"/auth/web/social/idp/callback?code=code-1&state={params['state']}")
    assert signed.status == 200, signed
    assert signed.json["message"] == "Logged in successfully." and signed.json["user"]["email"] == "web@example.test"
    assert "rosetta_session" in browser.cookies
    listed = await browser.get("/auth/web/social/accounts")
    assert listed.status == 200 and len(listed.json["data"]) == 1
    no_xsrf = await browser.post("/auth/web/social/idp/link", xsrf=None)
    assert no_xsrf.status == 419


@pytest.mark.gen_test(timeout=30)
async def test_unknown_provider_is_404(api, server):
    assert (await api.get("/auth/app/social/nope/redirect")).status == 404


def test_provider_tables_are_validated_at_start_up():
    with pytest.raises(ConfigError) as bad_kind:
        parse_providers({"x": {"kind": "saml", "client_id": "a", "client_secret": "b"}})
    assert bad_kind.value.key == "oauth.x.kind"
    with pytest.raises(ConfigError) as no_discovery:
        parse_providers({"x": {"kind": "oidc", "client_id": "a", "client_secret": "b"}})
    assert no_discovery.value.key == "oauth.x.discovery_url"
    with pytest.raises(ConfigError) as unknown:
        parse_providers({"x": {"kind": "github", "client_id": "a", "client_secret": "b", "colour": "red"}})
    assert unknown.value.key == "oauth.x.colour"
    github = parse_providers({"gh": {"kind": "github", "client_id": "a", "client_secret": "b"}})["gh"]
    assert github.token_url == "https://github.com/login/oauth/access_token" and not github.is_oidc
    google = parse_providers({"g": {"kind": "google", "client_id": "a", "client_secret": "b", "scopes": "openid"}})
    assert google["g"].is_oidc and google["g"].scopes == ("openid",) and google["g"].discovery_url

