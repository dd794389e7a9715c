"""Password reset and email verification, with links read from mail delivered to a real SMTP server."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.authkit import Browser, deliver, query_of, smtp_overrides
from tests.support import register

BAD_TOKEN = {"message": "The given data was invalid.", "errors": {"email": ["This password reset token is invalid."]}}


@pytest.fixture
def server_overrides(mailbox):
    return smtp_overrides(mailbox, limits={"login_per_minute": 1000},
                          server={"public_url": "https://chat.example.test"})


async def reset_link(api, server, mailbox, email: str) -> dict[str, str]:
    sent = await api.post("/auth/app/forgot-password", {"email": email}, headers={"Host": "evil.example"})
    assert sent.status == 200 and sent.json == {"message": "Password reset link sent to your email."}, sent
    await deliver(server)
    link = mailbox.link(email, "/reset-password?")
    assert link.startswith("https://chat.example.test/reset-password?")  # configured URL, never the Host header
    return query_of(link)


@pytest.mark.gen_test(timeout=30)
async def test_reset_is_single_use_and_revokes_every_token_and_session(api, server, mailbox):
    ana = await register(api, "Ana")
    browser = Browser(api)
    await browser.csrf()
    assert (await browser.post("/auth/web/login", {"email": ana.email, "password": ana.password})).status == 200
    query = await reset_link(api, server, mailbox, ana.email)
    assert query["email"] == ana.email
    body = {"token": query["token"], "email": ana.email, "password": "brand-new-pass", "password_confirmation":
            "brand-new-pass"}
    done = await api.post("/auth/app/reset-password", body)
    assert done.status == 200 and done.json == {"message": "Password has been reset successfully."}
    assert (await api.get("/me", token=ana.token)).status == 401  # the old bearer token is dead
    assert (await browser.get("/me")).status == 401  # and so is the web session
    again = await api.post("/auth/app/reset-password", body)
    assert again.status == 422 and again.json == BAD_TOKEN
    old = await api.post("/auth/app/login", {"email": ana.email, "password": ana.password})
    assert old.status == 422
    new = await api.post("/auth/app/login", {"email": ana.email, "password": "brand-new-pass"})
    assert new.status == 200


@pytest.mark.gen_test(timeout=30)
async def test_reset_token_expires_and_wrong_tokens_fail(api, server, mailbox, clock):
    ana = await register(api, "Ana")
    query = await reset_link(api, server, mailbox, ana.email)
    body = {"email": ana.email, "password": "brand-new-pass", "password_confirmation": "brand-new-pass"}
    token = query["token"]
    altered = token[:-1] + ("1" if token[-1] == "0" else "0")  # always a different token
    wrong = await api.post("/auth/app/reset-password", {**body, "token": altered})
    assert wrong.status == 422 and wrong.json == BAD_TOKEN
    clock.advance(minutes=61)
    late = await api.post("/auth/app/reset-password", {**body, "token": query["token"]})
    assert late.status == 422 and late.json == BAD_TOKEN
    assert (await api.get("/me", token=ana.token)).status == 200  # nothing was revoked


@pytest.mark.gen_test(timeout=30)
async def test_forgot_unknown_email_and_rate_limit(api, server, mailbox):
    unknown = await api.post("/auth/app/forgot-password", {"email": "nobody@example.test"})
    assert unknown.status == 422 and unknown.json["errors"] == {
        "email": ["We could not find an account with that email."]}
    ana = await register(api, "Ana")
    for _ in range(server.app.config.limits.password_reset_per_hour):
        assert (await api.post("/auth/app/forgot-password", {"email": ana.email})).status == 200
    assert (await api.post("/auth/app/forgot-password", {"email": ana.email})).status == 429


@pytest.mark.gen_test(timeout=30)
async def test_registration_mails_a_verification_link_that_verifies(api, server, mailbox):
    ana = await register(api, "Ana")
    await deliver(server)
    link = mailbox.link(ana.email, "/auth/email/verify/")
    assert link.startswith(f"https://chat.example.test/api/v1/auth/email/verify/{ana.id}/")
    local = f"{server.base_url}{urlsplit(link).path}?{urlsplit(link).query}"
    verified = await api.get(local)
    assert verified.status == 200 and verified.json == {"message": "Email verified successfully."}
    me = await api.get("/me", token=ana.token)
    assert me.json["email_verified_at"] is not None


@pytest.mark.gen_test(timeout=30)
async def test_tampered_or_expired_verification_links_are_404(api, server, mailbox, clock):
    ana = await register(api, "Ana")
    await deliver(server)
    parts = urlsplit(mailbox.link(ana.email, "/auth/email/verify/"))
    query = query_of(parts.geturl())
    base = f"{server.base_url}{parts.path}"
    invalid = {"message": "Verification link is invalid."}
    tampered_expiry = await api.get(f"{base}?expires={int(query['expires']) + 3600}&signature={query['signature']}")
    assert tampered_expiry.status == 404 and tampered_expiry.json == invalid
    bob = await register(api, "Bob")
    other_user = base.replace(ana.id, bob.id)
    assert (await api.get(f"{other_user}?{parts.query}")).status == 404
    assert (await api.get(f"{base}?expires={query['expires']}")).status == 404
    clock.advance(minutes=server.app.config.auth.verify_ttl_minutes + 1)
    expired = await api.get(f"{base}?{parts.query}")
    assert expired.status == 404 and expired.json == invalid
    assert (await api.get("/me", token=ana.token)).json["email_verified_at"] is None


@pytest.mark.gen_test(timeout=30)
async def test_resend_answers_200_and_sends_only_when_unverified(api, server, mailbox):
    ana = await register(api, "Ana")
    await deliver(server)
    assert len(mailbox.to(ana.email)) == 1
    resent = await api.post("/auth/email/verification-notification", token=ana.token)
    assert resent.status == 200 and resent.json == {"message": "Verification email sent."}
    await deliver(server)
    assert len(mailbox.to(ana.email)) == 2
    link = urlsplit(mailbox.link(ana.email, "/auth/email/verify/"))
    assert (await api.get(f"{server.base_url}{link.path}?{link.query}")).status == 200
    again = await api.post("/auth/email/verification-notification", token=ana.token)
    assert again.status == 200 and again.json == {"message": "Verification email sent."}
    await deliver(server)
    assert len(mailbox.to(ana.email)) == 2  # already verified: nothing sent, same answer
    assert (await api.post("/auth/email/verification-notification")).status == 401


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("server_overrides", [{"auth": {"frontend_url": "https://app.example.test/verified"}}])
async def test_verification_redirects_to_the_frontend_when_set(api, server):
    ana = await register(api, "Ana")
    link = server.app.verification.link(ana.id, ana.email)
    response = await api.get(link)
    assert response.status == 302 and response.headers["Location"] == "https://app.example.test/verified"
