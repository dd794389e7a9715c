"""Web sign-in: cookie sessions, the XSRF cookie and header, no session fixation, logout, password change."""

from __future__ import annotations

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from tests.authkit import Browser
from tests.support import frame, register

MISMATCH = {"message": "CSRF token mismatch."}


@pytest.fixture
def server_overrides():
    return {"limits": {"login_per_minute": 1000}, "server": {"cors_origins": ["https://app.example.test"]}}


async def web_login(api, user) -> Browser:
    browser = Browser(api)
    await browser.csrf()
    response = await browser.post("/auth/web/login", {"email": user.email, "password": user.password})
    assert response.status == 200, response
    assert response.json["message"] == "Logged in successfully." and response.json["user"]["id"] == user.id
    return browser


@pytest.mark.gen_test(timeout=30)
async def test_register_sets_httponly_lax_session_and_readable_xsrf_cookie(api, server):
    browser = Browser(api)
    await browser.csrf()
    response = await browser.post("/auth/web/register", {
        "name": "Ana", "email": "ana@example.test", "password": "correct-horse-1",
        "password_confirmation": "correct-horse-1", "preferred_language": "de"})
    assert response.status == 200, response
    assert response.json["message"] == "Registered successfully."
    assert response.json["user"]["email"] == "ana@example.test" and "access_token" not in response.json
    cookies = {c.split("=", 1)[0]: c for c in response.headers.get_list("Set-Cookie")}
    session = cookies["rosetta_session"].lower()
    assert "httponly" in session and "samesite=lax" in session and "secure" not in session
    assert "httponly" not in cookies["XSRF-TOKEN"].lower()
    secret = browser.cookies["rosetta_session"]
    stored = await server.app.db.reader.fetch_all("SELECT secret_hash FROM web_sessions")
    assert len(stored) == 1 and secret not in stored[0]["secret_hash"]  # only a hash is stored
    tokens = await server.app.db.reader.fetch_value("SELECT COUNT(*) FROM access_tokens")
    assert tokens == 0  # a web sign-up opens a session, not a bearer token
    me = await browser.get("/me")
    assert me.status == 200 and me.json["preferred_language"] == "de"


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("server_overrides", [{"server": {"public_url": "https://chat.example.test"}}])
async def test_session_cookie_is_secure_behind_https(api, server):
    ana = await register(api, "Ana")
    browser = Browser(api)
    await browser.csrf()
    response = await browser.post("/auth/web/login", {"email": ana.email, "password": ana.password})
    assert response.status == 200
    assert all("secure" in c.lower() for c in response.headers.get_list("Set-Cookie"))


@pytest.mark.gen_test(timeout=30)
async def test_state_changing_cookie_requests_need_the_sessions_xsrf_token(api, server):
    ana = await register(api, "Ana")
    bob = await register(api, "Bob")
    ana_browser = await web_login(api, ana)
    bob_browser = await web_login(api, bob)
    created = await ana_browser.post("/workspaces", {"name": "Home"})
    assert created.status == 201, created
    missing = await ana_browser.post("/workspaces", {"name": "Home 2"}, xsrf=None)
    assert missing.status == 419 and missing.json == MISMATCH
    foreign = await ana_browser.post("/workspaces", {"name": "Home 3"}, xsrf=bob_browser.cookies["XSRF-TOKEN"])
    assert foreign.status == 419 and foreign.json == MISMATCH
    forged = await ana_browser.post("/workspaces", {"name": "Home 4"}, xsrf="abc.def")
    assert forged.status == 419
    # Reads need no token; bearer requests never need one.
    assert (await ana_browser.get("/workspaces")).status == 200
    assert (await api.post("/workspaces", {"name": "Bearer"}, token=ana.token)).status == 201
    names = [w["name"] for w in (await ana_browser.get("/workspaces")).json["data"]]
    assert sorted(names) == ["Bearer", "Home"]


@pytest.mark.gen_test(timeout=30)
async def test_csrf_cookie_rotates_the_token_bound_to_the_session(api, server):
    ana = await register(api, "Ana")
    browser = await web_login(api, ana)
    old = browser.cookies["XSRF-TOKEN"]
    new = await browser.csrf()
    assert new != old
    stale = await browser.post("/workspaces", {"name": "Home"}, xsrf=old)
    assert stale.status == 419
    assert (await browser.post("/workspaces", {"name": "Home"})).status == 201


@pytest.mark.gen_test(timeout=30)
async def test_public_web_routes_need_the_double_submit(api, server):
    ana = await register(api, "Ana")
    browser = Browser(api)
    no_cookie = await browser.post("/auth/web/login", {"email": ana.email, "password": ana.password})
    assert no_cookie.status == 419 and no_cookie.json == MISMATCH
    token = await browser.csrf()
    no_header = await browser.post("/auth/web/login", {"email": ana.email, "password": ana.password}, xsrf=None)
    assert no_header.status == 419
    unsigned = "0" * 40 + ".x"
    browser.cookies["XSRF-TOKEN"] = unsigned
    forged = await browser.post("/auth/web/login", {"email": ana.email, "password": ana.password})
    assert forged.status == 419
    browser.cookies["XSRF-TOKEN"] = token
    assert (await browser.post("/auth/web/login", {"email": ana.email, "password": ana.password})).status == 200


@pytest.mark.gen_test(timeout=30)
async def test_every_login_gets_a_new_session_id(api, server):
    ana = await register(api, "Ana")
    browser = Browser(api)
    await browser.csrf()
    planted = "f" * 48  # a fixation attempt: a cookie value chosen by someone else
    browser.cookies["rosetta_session"] = planted
    assert (await browser.post("/auth/web/login", {"email": ana.email, "password": ana.password})).status == 200
    first = browser.cookies["rosetta_session"]
    assert first != planted
    assert (await browser.post("/auth/web/login", {"email": ana.email, "password": ana.password})).status == 200
    second = browser.cookies["rosetta_session"]
    assert second != first
    stale = Browser(api)
    stale.cookies["rosetta_session"] = first
    assert (await stale.get("/me")).status == 401  # the replaced session is closed
    assert (await browser.get("/me")).status == 200
    assert await server.app.db.reader.fetch_value("SELECT COUNT(*) FROM web_sessions") == 1


@pytest.mark.gen_test(timeout=30)
async def test_web_logout_destroys_the_session(api, server):
    ana = await register(api, "Ana")
    browser = await web_login(api, ana)
    secret = browser.cookies["rosetta_session"]
    refused = await browser.post("/auth/web/logout", xsrf=None)
    assert refused.status == 419
    out = await browser.post("/auth/web/logout")
    assert out.status == 200 and out.json == {"message": "Logged out successfully."}
    assert "rosetta_session" not in browser.cookies
    replay = Browser(api)
    replay.cookies["rosetta_session"] = secret
    assert (await replay.get("/me")).status == 401
    assert (await api.get("/me", token=ana.token)).status == 200  # other credentials live on


@pytest.mark.gen_test(timeout=30)
async def test_app_logout_with_the_session_cookie_closes_that_session(api, server):
    # It answered "Logged out successfully." and left the session signed in.
    ana = await register(api, "Ana")
    browser = await web_login(api, ana)
    secret = browser.cookies["rosetta_session"]
    assert (await browser.post("/auth/app/logout", xsrf=None)).status == 419
    out = await browser.post("/auth/app/logout")
    assert out.status == 200 and out.json == {"message": "Logged out successfully."}
    replay = Browser(api)
    replay.cookies["rosetta_session"] = secret
    assert (await replay.get("/me")).status == 401
    assert (await api.get("/me", token=ana.token)).status == 200  # other credentials live on


@pytest.mark.gen_test(timeout=30)
async def test_change_password_keeps_this_session_and_revokes_the_others(api, server):
    ana = await register(api, "Ana")
    here = await web_login(api, ana)
    there = await web_login(api, ana)
    changed = await here.post("/auth/web/change-password", {
        "current_password": ana.password, "password": "another-pass-9", "password_confirmation": "another-pass-9"})
    assert changed.status == 200 and changed.json == {"message": "Password changed successfully."}
    assert (await here.get("/me")).status == 200
    assert (await there.get("/me")).status == 401
    assert (await api.get("/me", token=ana.token)).status == 401
    wrong = await here.post("/auth/web/change-password", {
        "current_password": "nope-nope-1", "password": "x-another-9", "password_confirmation": "x-another-9"})
    assert wrong.status == 422 and wrong.json["errors"] == {"current_password": ["The current password is incorrect."]}


@pytest.mark.gen_test(timeout=30)
async def test_inactive_account_cannot_use_its_session(api, server):
    ana = await register(api, "Ana")
    browser = await web_login(api, ana)
    await server.app.db.write(lambda tx: tx.execute("UPDATE users SET is_active = 0 WHERE id = ?", (ana.id,)))
    assert (await browser.get("/me")).status == 401
    browser2 = Browser(api)
    await browser2.csrf()
    refused = await browser2.post("/auth/web/login", {"email": ana.email, "password": ana.password})
    assert refused.status == 403 and refused.json == {"message": "Account is inactive."}


@pytest.mark.gen_test(timeout=30)
async def test_session_expires(api, server, clock):
    ana = await register(api, "Ana")
    browser = await web_login(api, ana)
    clock.advance(hours=server.app.config.auth.session_ttl_hours + 1)
    assert (await browser.get("/me")).status == 401
    await server.app.jobs.run_once("credentials.cleanup")
    assert await server.app.db.reader.fetch_value("SELECT COUNT(*) FROM web_sessions") == 0


@pytest.mark.gen_test(timeout=30)
async def test_cors_with_credentials_only_for_configured_origins(api, server):
    allowed = await api.get("/csrf-cookie", headers={"Origin": "https://app.example.test"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example.test"
    assert allowed.headers["Access-Control-Allow-Credentials"] == "true"
    other = await api.get("/csrf-cookie", headers={"Origin": "https://evil.example"})
    assert other.headers.get("Access-Control-Allow-Credentials") is None
    assert other.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.gen_test(timeout=30)
async def test_the_websocket_route_refuses_in_the_contracts_json(api, server):
    """A cookie session from an origin that is not allowed, and a request that is no upgrade, were
    answered by Tornado's handshake in plain text."""
    ana = await register(api, "Ana")
    browser = await web_login(api, ana)
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    evil = await browser.get("/realtime", headers={**upgrade, "Origin": "https://evil.example"})
    assert evil.status == 403 and evil.json == {"message": "This action is unauthorized."}
    plain = await api.get("/realtime", token=ana.token)
    assert plain.status == 400
    assert plain.json == {"message": 'This route speaks WebSocket only: send "Upgrade: websocket".'}
    # The configured origin's page may use the session.
    cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
    ws = await websocket_connect(HTTPRequest(f"ws://127.0.0.1:{server.port}/api/v1/realtime",
                                             headers={"Cookie": cookie, "Origin": "https://app.example.test"}))
    assert (await frame(ws))["type"] == "hello"
    ws.close()
