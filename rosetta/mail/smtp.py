"""Building and sending one mail: ``EmailMessage`` (no header injection) over aiosmtplib, or the log.

Owns the wire side only. It never touches the database: the outbox job (services/mailer.py) decides
what to send and records what happened.
"""

from __future__ import annotations

import logging
import random
import re
from email.message import EmailMessage
from email.utils import make_msgid

import aiosmtplib

from rosetta.backoff import doubling_s
from rosetta.config import MailConfig

log = logging.getLogger("rosetta.mail")

BACKOFF_BASE_S = 30.0  # first retry after ~30 s: long enough for a restarting relay, short for a user waiting
BACKOFF_CAP_S = 3600.0  # never wait more than an hour between two attempts
JITTER = 0.2  # ±20 %: many mails failing together do not retry in lock step


def single_line(value: str) -> str:
    """Header values never carry CR/LF (that is how headers get injected); collapse them to spaces."""
    return " ".join(part.strip() for part in re.split(r"[\r\n]+", value) if part.strip())


def build_message(sender: str, to: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = single_line(sender)
    message["To"] = single_line(to)
    message["Subject"] = single_line(subject)
    domain = sender.rpartition("@")[2].strip(" >") or "localhost"
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(body)
    return message


def backoff_s(attempts: int, rng: random.Random | None = None) -> float:
    """Delay before the next attempt after ``attempts`` failures: exponential, capped, jittered."""
    base = doubling_s(attempts, BACKOFF_BASE_S, BACKOFF_CAP_S)
    spread = (rng or random).uniform(-JITTER, JITTER)  # jitter, not a secret
    return base * (1 + spread)


async def deliver(config: MailConfig, to: str, subject: str, body: str) -> None:
    """Send now, or write to the log in ``log`` mode. Raises on any SMTP failure.

    Log mode builds no MIME message: ``EmailMessage`` costs about a millisecond of CPU per mail,
    which a batch of 50 spent on the event loop while deliveries waited.
    """
    if config.mode == "log":
        log.info("mail (mode=log) to %s, subject %r:\n%s", single_line(to), single_line(subject), body)
        return
    await aiosmtplib.send(
        build_message(config.sender, to, subject, body),
        hostname=config.host,
        port=config.port,
        username=config.username or None,
        password=config.password or None,
        start_tls=config.starttls,
        use_tls=config.use_tls,
        timeout=config.timeout_s,
    )
