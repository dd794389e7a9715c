"""Configuration: frozen dataclasses, loaded from TOML, then environment, then flags (later wins).

Owns the list of every key, its type, default and bounds. It must not read files other than the TOML
it is given, and it never guesses: an unknown key or a bad value raises ``ConfigError`` naming the
key, which the CLI turns into one line and exit code 2.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rosetta.text import bad_text


class ConfigError(Exception):
    """A configuration key is unknown or its value is wrong."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


def _bounded(lo: float | None = None, hi: float | None = None, choices: tuple[str, ...] = ()) -> dict:
    return {"min": lo, "max": hi, "choices": choices}


def _url(optional: bool = True) -> dict:
    """An http(s) URL key; ``optional`` lets the empty string mean "not set" (each key says what then)."""
    return {"url": "optional" if optional else "required"}


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = field(default=8080, metadata=_bounded(0, 65535))
    public_url: str = field(default="", metadata=_url())
    max_body_mb: float = field(default=1.0, metadata=_bounded(0.001, 1024))
    cors_origins: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    # Which requests get an access-log line: each costs ~150 µs of the loop (10% of a message send).
    access_log: str = field(default="errors", metadata=_bounded(choices=("all", "errors", "off")))
    # Processes serving the same port and database (rosetta.workers); one per core uses every core.
    workers: int = field(default=1, metadata=_bounded(1, 64))
    # Several workers, at most one per CPU: each runs on a CPU of its own (rosetta.affinity).
    pin_workers: bool = True
    # Several workers: one holding more connections than another hands new ones over (rosetta.balance).
    balance_connections: bool = True
    # Plain history reads on keep-alive connections skip Tornado's HTTP/1 code (rosetta.fastlane).
    fast_lane: bool = True

    def base_url(self) -> str:
        """The URL people reach the server at; links in mail and join endpoints are built from it."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"


@dataclass(frozen=True)
class StorageConfig:
    data_dir: str = "./data"
    synchronous: str = field(default="FULL", metadata=_bounded(choices=("FULL", "NORMAL", "EXTRA")))
    readers: int = field(default=2, metadata=_bounded(1, 16))
    # Largest number of write units that share one COMMIT (group commit).
    group_commit_max: int = field(default=128, metadata=_bounded(1, 10000))


@dataclass(frozen=True)
class AuthConfig:
    bcrypt_rounds: int = field(default=12, metadata=_bounded(4, 16))
    otp_ttl_minutes: int = field(default=10, metadata=_bounded(1, 1440))
    reset_ttl_minutes: int = field(default=60, metadata=_bounded(1, 1440))
    verify_ttl_minutes: int = field(default=60, metadata=_bounded(1, 10080))
    registration_open: bool = True
    frontend_url: str = field(default="", metadata=_url())
    # Signs email-verification links; generated into the data directory when empty.
    app_key: str = ""
    session_ttl_hours: float = field(default=336.0, metadata=_bounded(0.01, 8760))


@dataclass(frozen=True)
class MailConfig:
    mode: str = field(default="log", metadata=_bounded(choices=("log", "smtp")))
    host: str = "localhost"
    port: int = field(default=25, metadata=_bounded(1, 65535))
    username: str = ""
    password: str = ""
    starttls: bool = False
    use_tls: bool = False
    sender: str = "Rosetta <rosetta@localhost>"
    timeout_s: float = field(default=10.0, metadata=_bounded(0.1, 300))
    max_attempts: int = field(default=8, metadata=_bounded(1, 100))


@dataclass(frozen=True)
class TranslationConfig:
    provider: str = field(
        default="none", metadata=_bounded(choices=("none", "libretranslate", "deepl", "openai"))
    )
    url: str = field(default="", metadata=_url())
    api_key: str = ""
    model: str = ""
    default_language: str = "en"
    batch_size: int = field(default=16, metadata=_bounded(1, 128))
    max_attempts: int = field(default=5, metadata=_bounded(1, 50))
    timeout_s: float = field(default=20.0, metadata=_bounded(0.1, 600))
    concurrency: int = field(default=4, metadata=_bounded(1, 64))
    poll_interval_s: float = field(default=0.5, metadata=_bounded(0.01, 60))
    memory_days: float = field(default=90.0, metadata=_bounded(1, 36500))


@dataclass(frozen=True)
class RealtimeConfig:
    retention_hours: float = field(default=24.0, metadata=_bounded(0.01, 8760))
    send_buffer_kb: int = field(default=256, metadata=_bounded(1, 65536))
    heartbeat_s: float = field(default=25.0, metadata=_bounded(1, 3600))
    max_connections_per_principal: int = field(default=20, metadata=_bounded(1, 10000))
    trim_interval_s: float = field(default=300.0, metadata=_bounded(1, 86400))


@dataclass(frozen=True)
class FilesConfig:
    staging_ttl_hours: float = field(default=24.0, metadata=_bounded(0.01, 8760))
    max_upload_mb: float = field(default=25.0, metadata=_bounded(0.001, 102400))
    quota_mb: float = field(default=1024.0, metadata=_bounded(0, 10485760))
    sweep_interval_s: float = field(default=300.0, metadata=_bounded(1, 86400))
    thumbnail_max_pixels: int = field(default=50_000_000, metadata=_bounded(1, 1_000_000_000))


@dataclass(frozen=True)
class TemporaryRoomsConfig:
    default_plan: str = field(default="free", metadata=_bounded(choices=("free", "developer")))
    free_max_ttl_hours: float = field(default=24.0, metadata=_bounded(0.01, 87600))
    developer_max_ttl_hours: float = field(default=720.0, metadata=_bounded(0.01, 87600))
    max_extension_hours: float = field(default=168.0, metadata=_bounded(0.01, 87600))
    active_limit: int = field(default=3, metadata=_bounded(0, 100000))
    monthly_creation_limit: int = field(default=10, metadata=_bounded(0, 1000000))
    max_guests: int = field(default=200, metadata=_bounded(0, 100000))
    sweep_interval_s: float = field(default=30.0, metadata=_bounded(1, 86400))
    purge_after_hours: float = field(default=24.0, metadata=_bounded(0, 87600))


@dataclass(frozen=True)
class PushConfig:
    fcm_credentials_file: str = ""
    fcm_endpoint: str = field(default="", metadata=_url())
    expo_url: str = field(default="https://exp.host/--/api/v2/push/send", metadata=_url(optional=False))
    ntfy_allowed_hosts: tuple[str, ...] = ()
    translation_wait_s: float = field(default=3.0, metadata=_bounded(0, 60))
    max_attempts: int = field(default=6, metadata=_bounded(1, 100))


@dataclass(frozen=True)
class WebhooksConfig:
    # Hosts an admin allows outgoing webhooks to reach even though they resolve to private addresses.
    allowed_hosts: tuple[str, ...] = ()
    timeout_s: float = field(default=10.0, metadata=_bounded(0.1, 120))
    max_attempts: int = field(default=8, metadata=_bounded(1, 100))


@dataclass(frozen=True)
class LimitsConfig:
    register_per_minute: int = field(default=20, metadata=_bounded(0, 1_000_000))
    login_per_minute: int = field(default=10, metadata=_bounded(0, 1_000_000))
    otp_send_per_hour: int = field(default=5, metadata=_bounded(0, 1_000_000))
    otp_verify_per_hour: int = field(default=20, metadata=_bounded(0, 1_000_000))
    password_reset_per_hour: int = field(default=5, metadata=_bounded(0, 1_000_000))
    invite_preview_per_minute: int = field(default=30, metadata=_bounded(0, 1_000_000))
    guest_join_per_minute: int = field(default=30, metadata=_bounded(0, 1_000_000))
    channel_password_per_minute: int = field(default=10, metadata=_bounded(0, 1_000_000))
    api_per_minute: int = field(default=600, metadata=_bounded(0, 1_000_000))


@dataclass(frozen=True)
class Config:
    server: ServerConfig = ServerConfig()
    storage: StorageConfig = StorageConfig()
    auth: AuthConfig = AuthConfig()
    mail: MailConfig = MailConfig()
    translation: TranslationConfig = TranslationConfig()
    realtime: RealtimeConfig = RealtimeConfig()
    files: FilesConfig = FilesConfig()
    temporary_rooms: TemporaryRoomsConfig = TemporaryRoomsConfig()
    push: PushConfig = PushConfig()
    webhooks: WebhooksConfig = WebhooksConfig()
    limits: LimitsConfig = LimitsConfig()
    # [oauth.NAME] tables, kept raw here and validated by the OAuth service that reads them.
    oauth: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return Path(self.storage.data_dir)


SECTIONS: dict[str, type] = {
    name: kind for name, kind in typing.get_type_hints(Config).items() if name != "oauth"
}


def _field_type(section_cls: type, name: str) -> Any:
    return typing.get_type_hints(section_cls)[name]


def _coerce(key: str, raw: Any, kind: Any, from_env: bool) -> Any:
    """Turn a TOML or environment value into ``kind``, or raise ConfigError naming ``key``."""
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if from_env and isinstance(raw, str) and raw.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return raw.lower() in ("1", "true", "yes", "on")
        raise ConfigError(key, f"must be true or false, got {raw!r}")
    if kind is int:
        if isinstance(raw, bool):
            raise ConfigError(key, f"must be a whole number, got {raw!r}")
        if isinstance(raw, int):
            return raw
        if from_env and isinstance(raw, str):
            try:
                return int(raw.strip())
            except ValueError:
                pass
        raise ConfigError(key, f"must be a whole number, got {raw!r}")
    if kind is float:
        if isinstance(raw, bool):
            raise ConfigError(key, f"must be a number, got {raw!r}")
        number: float | None = None
        if isinstance(raw, int | float):
            number = float(raw)
        elif from_env and isinstance(raw, str):
            try:
                number = float(raw.strip())
            except ValueError:
                pass
        if number is None:
            raise ConfigError(key, f"must be a number, got {raw!r}")
        # TOML and float() both accept nan and inf. nan passes every bound (each comparison is False):
        # quota_mb = nan switched the upload quota off, max_body_mb = nan crashed start-up in int().
        if not math.isfinite(number):
            raise ConfigError(key, f"must be a finite number, got {raw!r}")
        return number
    if kind is str:
        if isinstance(raw, str):
            return _text(key, raw)
        raise ConfigError(key, f"must be a string, got {raw!r}")
    if typing.get_origin(kind) is tuple:
        if from_env and isinstance(raw, str):
            return tuple(_text(key, part.strip()) for part in raw.split(",") if part.strip())
        if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
            return tuple(_text(key, item) for item in raw)
        raise ConfigError(key, f"must be a list of strings, got {raw!r}")
    raise ConfigError(key, f"has an unsupported type {kind!r}")  # pragma: no cover - a programming error


def _text(key: str, value: str) -> str:
    """``value`` when it is text every consumer can encode, else ConfigError naming ``key``."""
    # Environment variables and arguments that are not UTF-8 arrive with lone surrogates
    # (surrogateescape); they failed far from here, e.g. a --host of b"\xff" in getaddrinfo's encoder.
    problem = bad_text(value)
    if problem:
        raise ConfigError(key, problem)  # not the value: it may be a password or an API key
    return value


def check_url(key: str, value: str, optional: bool = True) -> None:
    """An http(s) URL with a host and, if given, a port: what the code building links and requests needs."""
    if not value:
        if optional:
            return
        raise ConfigError(key, "must be an http(s) URL, got ''")
    # urlsplit silently drops tabs and newlines (WHATWG), so check them here: the raw value is what a
    # Location header or a request line would carry.
    if any(char.isspace() or not char.isprintable() for char in value):
        raise ConfigError(key, f"must be a URL without spaces or control characters, got {value!r}")
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError for a port that is not a number in 0-65535
    except ValueError as exc:
        raise ConfigError(key, f"is not a valid URL ({exc}), got {value!r}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ConfigError(key, f"must start with http:// or https://, got {value!r}")
    if not parts.hostname:
        raise ConfigError(key, f"must name a host, got {value!r}")
    if port == 0:
        raise ConfigError(key, f"must not use port 0, got {value!r}")


def _check_bounds(key: str, value: Any, meta: Mapping[str, Any]) -> None:
    if meta.get("url"):
        check_url(key, value, optional=meta["url"] == "optional")
    lo, hi, choices = meta.get("min"), meta.get("max"), meta.get("choices") or ()
    if choices and value not in choices:
        raise ConfigError(key, f"must be one of {', '.join(choices)}, got {value!r}")
    if lo is not None and value < lo:
        raise ConfigError(key, f"must be at least {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise ConfigError(key, f"must be at most {hi}, got {value!r}")


def _build_section(name: str, values: Mapping[str, tuple[Any, bool]]) -> Any:
    cls = SECTIONS[name]
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, (raw, from_env) in values.items():
        dotted = f"{name}.{key}"
        if key not in known:
            raise ConfigError(dotted, "is not a known key")
        value = _coerce(dotted, raw, _field_type(cls, key), from_env)
        _check_bounds(dotted, value, known[key].metadata)
        kwargs[key] = value
    return cls(**kwargs)


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    search: bool = True,
) -> Config:
    """Build the configuration: TOML file, then ``ROSETTA_<SECTION>_<KEY>`` variables, then overrides.

    ``path`` None means ``ROSETTA_CONFIG`` or ``./rosetta.toml`` when present; ``overrides`` are the
    command-line flags (and tests), already typed, as ``{"server": {"port": 0}}``. ``search`` False
    reads no file unless ``path`` names one.
    """
    env = os.environ if env is None else env
    if path is None and search:
        path = env.get("ROSETTA_CONFIG") or ("rosetta.toml" if Path("rosetta.toml").is_file() else None)
    layered: dict[str, dict[str, tuple[Any, bool]]] = {name: {} for name in SECTIONS}
    oauth: dict[str, dict[str, str]] = {}
    if path is not None:
        try:
            document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError("config", f"file {path} does not exist") from None
        except OSError as exc:  # a directory, no read permission: the operator's to fix, not a traceback
            raise ConfigError("config", f"cannot read {path}: {exc.strerror or exc}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError("config", f"{path} is not valid TOML: {exc}") from None
        for section, table in document.items():
            if section == "oauth":
                if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
                    raise ConfigError("oauth", "must hold one table per provider, [oauth.NAME]")
                oauth = {name: dict(values) for name, values in table.items()}
                continue
            if section not in SECTIONS:
                raise ConfigError(section, "is not a known section")
            if not isinstance(table, dict):
                raise ConfigError(section, "must be a table")
            for key, value in table.items():
                layered[section][key] = (value, False)
    for var, value in env.items():
        if not var.startswith("ROSETTA_") or var == "ROSETTA_CONFIG":
            continue
        rest = var[len("ROSETTA_") :].lower()
        section = next((s for s in sorted(SECTIONS, key=len, reverse=True) if rest.startswith(s + "_")), None)
        if section is None:
            continue  # not ours to judge: ROSETTA_ variables of other tools pass through
        layered[section][rest[len(section) + 1 :]] = (value, True)
    for section, values in (overrides or {}).items():
        if section not in SECTIONS:
            raise ConfigError(section, "is not a known section")
        for key, value in values.items():
            layered[section][key] = (value, False)
    built = {name: _build_section(name, values) for name, values in layered.items()}
    _check_combinations(built)
    return Config(**built, oauth=types.MappingProxyType(oauth))


def _check_combinations(built: Mapping[str, Any]) -> None:
    """Keys that are valid alone but not together."""
    mail: MailConfig = built["mail"]
    if mail.starttls and mail.use_tls:
        # aiosmtplib refuses the pair in SMTP(); every delivery then failed and retried until given up.
        raise ConfigError("mail.use_tls", "cannot be combined with mail.starttls (use_tls is TLS from the "
                                          "first byte, usually port 465; starttls upgrades, usually port 587)")
