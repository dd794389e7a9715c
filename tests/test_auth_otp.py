"""Email one-time codes, app and web: codes read from mail delivered to a real SMTP server."""

from __future__ import annotations

import asyncio

import pytest

from tests.authkit import Browser, deliver, smtp_overrides
from tests.support import register

EMAIL = "nadia@example.test"
INVALID = {"message": "The given data was invalid.", "errors": {"token": ["Invalid or expired OTP."]}}


@pytest.fixture
def server_overrides(mailbox):
    # Generous per-address limits: these tests fire many requests from 127.0.0.1 on purpose.
    return smtp_overrides(mailbox, limits={"login_per_minute": 1000, "otp_verify_per_hour": 100})


async def send_code(api, server, mailbox, email=EMAIL) -> str:
    response = await api.post("/auth/app/otp", {"email": email})
    assert response.status == 200 and response.json == {"message": "OTP sent to your email."}, response
    await deliver(server)
    return mailbox.code(email)


@pytest.mark.gen_test(timeout=30)
async def test_verify_creates_the_account_from_the_address(api, server, mailbox):
    code = await send_code(api, server, mailbox)
    verified = await api.post("/auth/app/otp/verify", {"email": EMAIL, "token": code, "device_name": "phone"})
    assert verified.status == 200, verified
    body = verified.json
    assert body["token_type"] == "Bearer" and body["user"]["name"] == "nadia" and body["user"]["email"] == EMAIL
    assert body["user"]["email_verified_at"] is not None
    me = await api.get("/me", token=body["access_token"])
    assert me.status == 200 and me.json["id"] == body["user"]["id"]
    again = await api.post("/auth/app/otp/verify", {"email": EMAIL, "token": code})
    assert again.status == 422 and again.json == INVALID  # single use


@pytest.mark.gen_test(timeout=30)
async def test_existing_account_signs_in_and_code_is_hashed(api, server, mailbox):
    ana = await register(api, "Ana")
    code = await send_code(api, server, mailbox, ana.email)
    rows = await server.app.db.reader.fetch_all("SELECT code_hash FROM otp_codes")
    assert rows and all(code not in row["code_hash"] for row in rows)
    verified = await api.post("/auth/app/otp/verify", {"email": ana.email, "token": code})
    assert verified.status == 200 and verified.json["user"]["id"] == ana.id


@pytest.mark.gen_test(timeout=60)
async def test_twenty_simultaneous_correct_verifies_give_exactly_one_token(api, server, mailbox):
    code = await send_code(api, server, mailbox)
    results = await asyncio.gather(*[
        api.post("/auth/app/otp/verify", {"email": EMAIL, "token": code}) for _ in range(20)
    ])
    statuses = sorted(r.status for r in results)
    assert statuses == [200] + [422] * 19, statuses
    tokens = await server.app.db.reader.fetch_value("SELECT COUNT(*) FROM access_tokens")
    users = await server.app.db.reader.fetch_value("SELECT COUNT(*) FROM users WHERE email = ?", (EMAIL,))
    assert tokens == 1 and users == 1


@pytest.mark.gen_test(timeout=30)
async def test_five_wrong_tries_kill_the_code(api, server, mailbox):
    code = await send_code(api, server, mailbox)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        response = await api.post("/auth/app/otp/verify", {"email": EMAIL, "token": wrong})
        assert response.status == 422 and response.json == INVALID
    late = await api.post("/auth/app/otp/verify", {"email": EMAIL, "token": code})
    assert late.status == 422 and late.json == INVALID


@pytest.mark.gen_test(timeout=30)
async def test_four_wrong_tries_still_allow_the_right_code(api, server, mailbox):
    code = await send_code(api, server, mailbox)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(4):
        assert (await api.post("/auth/app/otp/verify", {"email": EMAIL, "token": wrong})).status == 422
    assert (await api.post("/auth/app/otp/verify", {"email": EMAIL, "token": code})).status == 200


@pytest.mark.gen_test(timeout=30)
async def test_a_new_code_kills_the_old_one(api, server, mailbox):
    first = await send_code(api, server, mailbox)
    second = await send_code(api, server, mailbox)
    if first != second:  # one in a million they coincide
        old = await api.post("/auth/app/otp/verify", {"email": EMAIL, "token": first})
        assert old.status == 422 and old.json == INVALID
    assert (await api.post("/auth/app/otp/verify", {"email": EMAIL, "token": second})).status == 200


@pytest.mark.gen_test(timeout=30)
async def test_code_expires(api, server, mailbox, clock):
    code = await send_code(api, server, mailbox)
    clock.advance(minutes=server.app.config.auth.otp_ttl_minutes, seconds=1)
    response = await api.post("/auth/app/otp/verify", {"email": EMAIL, "token": code})
    assert response.status == 422 and response.json == INVALID


@pytest.mark.gen_test(timeout=30)
async def test_sends_are_capped_per_account_per_hour(api, server, mailbox, clock):
    for _ in range(server.app.config.limits.otp_send_per_hour):
        assert (await api.post("/auth/app/otp", {"email": EMAIL})).status == 200
    capped = await api.post("/auth/app/otp", {"email": EMAIL})
    assert capped.status == 429 and "Retry-After" in capped.headers
    other = await api.post("/auth/app/otp", {"email": "someone@example.test"})
    assert other.status == 200  # the cap is per account
    clock.advance(hours=1, seconds=1)
    assert (await api.post("/auth/app/otp", {"email": EMAIL})).status == 200


@pytest.mark.gen_test(timeout=30)
async def test_inactive_account_gets_403(api, server, mailbox):
    ana = await register(api, "Ana")
    await server.app.db.write(lambda tx: tx.execute("UPDATE users SET is_active = 0 WHERE id = ?", (ana.id,)))
    code = await send_code(api, server, mailbox, ana.email)
    response = await api.post("/auth/app/otp/verify", {"email": ana.email, "token": code})
    assert response.status == 403 and response.json == {"message": "Account is inactive."}


@pytest.mark.gen_test(timeout=30)
async def test_bad_input_is_422_naming_the_field(api, server, mailbox):
    response = await api.post("/auth/app/otp", {"email": "not-an-email"})
    assert response.status == 422 and response.json["errors"] == {
        "email": ["The email field must be a valid email address."]}
    response = await api.post("/auth/app/otp/verify", {"email": EMAIL})
    assert response.status == 422 and "token" in response.json["errors"]
    response = await api.post("/auth/app/otp/verify", {"email": EMAIL, "token": "12ab56"})
    assert response.status == 422 and response.json == INVALID


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("email", ["mia,eve@example.test", "mia;eve@example.test", "g:eve@example.test;",
                                   '"eve"@example.test', "mia\u0001@example.test", "(c)eve@example.test"])
async def test_addresses_a_mail_header_reads_otherwise_are_422(api, server, mailbox, email):
    # "mia,eve@example.test" in a To header is two recipients: the code would reach eve@example.test.
    response = await api.post("/auth/app/otp", {"email": email})
    assert response.status == 422 and "email" in response.json["errors"], response
    await deliver(server)
    assert mailbox.messages == []
    assert await server.app.db.reader.fetch_value("SELECT COUNT(*) FROM mail_outbox") == 0


@pytest.mark.gen_test(timeout=30)
async def test_web_otp_establishes_a_session(api, server, mailbox):
    browser = Browser(api)
    await browser.csrf()
    sent = await browser.post("/auth/web/otp", {"email": EMAIL})
    assert sent.status == 200 and sent.json == {"message": "OTP sent to your email."}
    await deliver(server)
    verified = await browser.post("/auth/web/otp/verify", {"email": EMAIL, "token": mailbox.code(EMAIL)})
    assert verified.status == 200, verified
    assert verified.json["message"] == "Logged in successfully." and verified.json["user"]["name"] == "nadia"
    assert "access_token" not in verified.json
    me = await browser.get("/me")
    assert me.status == 200 and me.json["email"] == EMAIL
