"""`rosetta doctor`: checks an installation and says, one line per check, what is missing.

Owns the checks only; it changes nothing (the database is opened read-only, the data directory is
probed with a temporary file that is removed again). Network checks use a short timeout so a
missing mail server or translation engine is reported, not waited for.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import aiosmtplib

from rosetta.config import Config, ConfigError
from rosetta.services.oauth import parse_providers
from rosetta.store.dbfile import migration_files, pending_migrations
from rosetta.translation.base import build_provider
from rosetta.translation.keepalive import BadAnswer


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


async def run_checks(config: Config, timeout_s: float) -> list[Check]:
    checks = [Check("configuration", True, "loaded; every key is valid")]
    if config.oauth:
        checks.append(check_oauth(config))
    checks.append(check_data_dir(config.data_dir))
    checks.append(await check_database(config.data_dir / "rosetta.sqlite3"))
    checks.append(await check_mail(config, timeout_s))
    checks.append(await check_translation(config, timeout_s))
    if not config.server.public_url:
        checks.append(Check("public url", True, f"server.public_url is empty: links in mail will point to "
                                                f"{config.server.base_url()}"))
    if config.push.fcm_credentials_file:
        checks.append(check_file("push", "push.fcm_credentials_file", Path(config.push.fcm_credentials_file)))
    return checks


def check_oauth(config: Config) -> Check:
    """The [oauth.NAME] tables, read as the server reads them: one it would refuse to start with is a FAIL."""
    try:
        providers = parse_providers(config.oauth)
    except ConfigError as exc:
        return Check("oauth", False, f"`rosetta serve` would refuse to start: {exc}")
    return Check("oauth", True, f"sign-in providers: {', '.join(sorted(providers))}")


def check_file(name: str, key: str, path: Path) -> Check:
    if not path.is_file():
        return Check(name, False, f"{key} {path} does not exist")
    return Check(name, True, f"{key} {path} exists")


def database_file_state(path: Path) -> str | None:
    """Why the database file cannot be checked further (or None when it can)."""
    if not path.is_file():
        return "missing"
    if not os.access(path, os.R_OK | os.W_OK):
        return "unreadable"
    return None


def check_data_dir(data_dir: Path) -> Check:
    target = data_dir.resolve()
    existing = next((p for p in (target, *target.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        return Check("data directory", False, f"{target} cannot be created ({existing} is not a directory)")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".rosetta-doctor-"):
            pass
    except OSError as exc:
        return Check("data directory", False, f"{existing} is not writable: {exc.strerror}")
    if existing != target:
        return Check("data directory", True, f"{target} does not exist yet; it will be created on first start")
    return Check("data directory", True, f"{target} is writable")


async def check_database(path: Path) -> Check:
    state = database_file_state(path)
    if state == "missing":
        return Check("database", True, f"{path} does not exist yet; `rosetta serve` or `rosetta migrate` "
                                       "creates it")
    if state == "unreadable":
        return Check("database", False, f"{path} is not readable and writable by this user")
    try:
        pending = await pending_migrations(path)
    except Exception as exc:  # any failure to open or read is exactly what the check reports
        return Check("database", False, f"{path} cannot be opened: {exc}")
    if pending:
        return Check("database", False, f"{path} opens but misses migrations {pending}: run `rosetta migrate`")
    return Check("database", True, f"{path} opens; all {len(migration_files())} migrations applied")


async def check_mail(config: Config, timeout_s: float) -> Check:
    mail = config.mail
    if mail.mode == "log":
        return Check("mail", True, 'mail.mode is "log": outgoing mail is written to the server log, not sent '
                                   '(set mail.mode = "smtp" and mail.host to send it)')
    try:
        # Built inside the try: aiosmtplib checks its options here (ValueError for starttls with use_tls),
        # and a bad combination is one more thing this check reports, not a traceback.
        client = aiosmtplib.SMTP(hostname=mail.host, port=mail.port, use_tls=mail.use_tls,
                                 start_tls=mail.starttls, timeout=min(timeout_s, mail.timeout_s))
        await client.connect()
        if mail.username:
            await client.login(mail.username, mail.password)
        await client.quit()
    except ValueError as exc:
        return Check("mail", False, f"the SMTP settings do not fit together: {exc}")
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        return Check("mail", False, f"cannot reach the SMTP server {mail.host}:{mail.port}: {exc}")
    signed_in = f" and signed in as {mail.username}" if mail.username else ""
    return Check("mail", True, f"connected to the SMTP server {mail.host}:{mail.port}{signed_in}")


async def check_translation(config: Config, timeout_s: float) -> Check:
    tr = config.translation
    if tr.provider == "none":
        return Check("translation", True, 'translation is off (translation.provider = "none"): readers see '
                                          "the original text")
    provider = build_provider(tr)
    url = provider.base  # where the provider will call: the configured url, or its default
    missing_key = tr.provider == "deepl" and not tr.api_key
    try:  # through the provider's own client: the connection (and TLS) code the queue will use
        answer = await provider.http.fetch("GET", url, {}, None, timeout_s)
    except (OSError, BadAnswer) as exc:  # TimeoutError is an OSError
        return Check("translation", False, f"cannot reach {tr.provider} at {url}: {str(exc) or 'no answer in time'}")
    finally:
        provider.close()
    if answer.code >= 500:
        return Check("translation", False, f"cannot reach {tr.provider} at {url}: HTTP {answer.code}")
    if missing_key:
        return Check("translation", False, f"{tr.provider} at {url} answers but translation.api_key is empty")
    return Check("translation", True, f"{tr.provider} answers at {url} (HTTP {answer.code})")
