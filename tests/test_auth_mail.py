"""The mail outbox against a real SMTP server: delivery, retry after an outage, log mode, no header injection,
and what is kept after: no body once a mail ended, no row after 30 days."""

from __future__ import annotations

import sqlite3

import pytest

from rosetta.mail.smtp import BACKOFF_CAP_S, backoff_s, build_message
from rosetta.store.dbfile import apply_migrations
from tests.authkit import Mailbox, deliver, smtp_overrides


@pytest.fixture
def mailbox():
    """Not started here (overrides conftest's): these tests start and stop SMTP themselves."""
    box = Mailbox()
    yield box
    box.stop()


@pytest.fixture
def server_overrides(mailbox):
    return smtp_overrides(mailbox)


@pytest.mark.gen_test(timeout=30)
async def test_request_answers_at_once_and_mail_goes_out_from_the_outbox(api, server, mailbox):
    mailbox.start()
    sent = await api.post("/auth/app/otp", {"email": "zoe@example.test"})
    assert sent.status == 200 and sent.json == {"message": "OTP sent to your email."}
    assert mailbox.to("zoe@example.test") == []  # nothing leaves before the job runs
    await deliver(server)
    [mail] = mailbox.to("zoe@example.test")
    assert mail["Subject"] == "Your Rosetta sign-in code"
    assert mail["From"] == "Rosetta <rosetta@localhost>"
    await deliver(server)
    assert len(mailbox.to("zoe@example.test")) == 1  # sent once, never again


@pytest.mark.gen_test(timeout=30)
async def test_one_run_records_each_mails_own_outcome(api, server, mailbox):
    """Outcomes are written in shared writes while the run goes on: none may be lost or mixed up."""
    mailbox.start()
    addresses = [f"user{n}@example.test" for n in range(6)] + ["refused@example.test"]
    for address in addresses:
        assert (await api.post("/auth/app/otp", {"email": address})).status == 200
    await deliver(server)
    rows = await server.app.db.reader.fetch_all('SELECT "to", status, attempts, last_error FROM mail_outbox')
    outcome = {row["to"]: (row["status"], row["attempts"], bool(row["last_error"])) for row in rows}
    assert outcome == {**{address: ("sent", 1, False) for address in addresses[:-1]},
                       "refused@example.test": ("pending", 1, True)}
    assert sorted(mail["To"] for mail in mailbox.messages) == sorted(addresses[:-1])


@pytest.mark.gen_test(timeout=30)
async def test_a_mail_keeps_its_body_until_it_is_sent_and_ended_mails_go_after_30_days(api, server, clock,
                                                                                      mailbox):
    mailbox.start()
    for address in ("zoe@example.test", "refused@example.test"):
        await api.post("/auth/app/otp", {"email": address})
    await deliver(server)
    rows = await server.app.db.reader.fetch_all('SELECT "to", status, body FROM mail_outbox ORDER BY "to"')
    # The one-time code is in the clear in a body: kept for the retry, dropped once delivered.
    assert [(r["to"], r["status"], bool(r["body"])) for r in rows] == [
        ("refused@example.test", "pending", True), ("zoe@example.test", "sent", False)]
    clock.advance(days=29)
    assert await server.app.jobs.run_once("mail.trim") == 0
    clock.advance(days=2)
    assert await server.app.jobs.run_once("mail.trim") == 1
    rows = await server.app.db.reader.fetch_all('SELECT "to", status FROM mail_outbox')
    assert [(r["to"], r["status"]) for r in rows] == [("refused@example.test", "pending")]  # pending stays


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("server_overrides", [{"mail": {"mode": "smtp", "host": "127.0.0.1", "port": 9,
                                                        "max_attempts": 1}}])
async def test_a_mail_that_ends_failed_keeps_no_body(api, server):
    await api.post("/auth/app/otp", {"email": "zoe@example.test"})
    await deliver(server)
    [row] = await server.app.db.reader.fetch_all("SELECT status, body FROM mail_outbox")
    assert row["status"] == "failed" and row["body"] == ""


def test_upgrading_drops_the_bodies_of_mails_already_sent(tmp_path):
    raw = sqlite3.connect(tmp_path / "old.sqlite3", isolation_level=None)
    try:
        apply_migrations(raw)
        # As a database from before migration 9: the migration not applied, mails with their bodies.
        raw.execute("DELETE FROM schema_migrations WHERE version = 9")
        for mail_id, status in (("m1", "sent"), ("m2", "failed"), ("m3", "pending")):
            raw.execute('INSERT INTO mail_outbox (id, "to", subject, body, status, next_attempt_at, created_at)'
                        " VALUES (?, 'zoe@example.test', 'Code', 'Your code: 123456', ?, '', '')", (mail_id, status))
        assert apply_migrations(raw) == [9]
        bodies = dict(raw.execute("SELECT id, body FROM mail_outbox").fetchall())
        assert bodies == {"m1": "", "m2": "", "m3": "Your code: 123456"}  # a pending mail still has to go out
    finally:
        raw.close()


@pytest.mark.gen_test(timeout=30)
async def test_smtp_down_then_retried_with_backoff(api, server, clock, mailbox):
    # The SMTP server is not running yet: the first attempt fails and is scheduled for later.
    await api.post("/auth/app/otp", {"email": "zoe@example.test"})
    await deliver(server)
    [row] = await server.app.db.reader.fetch_all("SELECT * FROM mail_outbox")
    assert row["status"] == "pending" and row["attempts"] == 1 and row["last_error"]
    mailbox.start()
    await deliver(server)  # not due yet: backoff holds it back
    assert mailbox.messages == []
    clock.advance(seconds=backoff_s(1) * 2)
    await deliver(server)
    assert len(mailbox.to("zoe@example.test")) == 1
    [row] = await server.app.db.reader.fetch_all("SELECT * FROM mail_outbox")
    assert row["status"] == "sent" and row["attempts"] == 2 and row["sent_at"] is not None


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("server_overrides", [{"mail": {"mode": "smtp", "host": "127.0.0.1", "port": 9,
                                                        "max_attempts": 2}}])
async def test_gives_up_after_max_attempts(api, server, clock):
    await api.post("/auth/app/otp", {"email": "zoe@example.test"})
    await deliver(server)
    clock.advance(hours=2)
    await deliver(server)
    [row] = await server.app.db.reader.fetch_all("SELECT * FROM mail_outbox")
    assert row["status"] == "failed" and row["attempts"] == 2


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("server_overrides", [{}])
async def test_log_mode_is_the_default_and_marks_sent(api, server, caplog):
    assert server.app.config.mail.mode == "log"
    await api.post("/auth/app/otp", {"email": "zoe@example.test"})
    with caplog.at_level("INFO", logger="rosetta.mail"):
        await deliver(server)
    assert any("zoe@example.test" in record.getMessage() for record in caplog.records)
    [row] = await server.app.db.reader.fetch_all("SELECT status FROM mail_outbox")
    assert row["status"] == "sent"


def test_no_header_injection_through_names_or_subjects():
    message = build_message("Evil\r\nBcc: victim@example.test <a@b.test>", "x@example.test",
                            "Hi\r\nBcc: victim@example.test", "body")
    text = message.as_string()
    assert "\nBcc:" not in text and "\rBcc:" not in text
    assert message["Subject"] == "Hi Bcc: victim@example.test"


def test_backoff_grows_and_is_capped():
    assert 24 <= backoff_s(1) <= 36 and 48 <= backoff_s(2) <= 72
    assert backoff_s(30) <= BACKOFF_CAP_S * 1.2
