"""Configuration: precedence (TOML < environment < flags), strict values, and rosetta.toml as its documentation."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import tomllib
import typing
from pathlib import Path

import pytest

from rosetta.config import SECTIONS, Config, ConfigError, TranslationConfig, load_config
from rosetta.translation.base import ProviderError, build_provider
from rosetta.translation.keepalive import BadAnswer, KeepAliveClient

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rosetta.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_with_no_configuration() -> None:
    config = load_config(None, env={}, search=False)
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8080)
    assert config.storage.data_dir == "./data"
    assert config.storage.synchronous == "FULL"


def test_precedence_toml_then_env_then_flags(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nport = 9000\nhost = "10.1.2.3"\n[mail]\nhost = "toml.example"\n')
    only_toml = load_config(path, env={})
    assert (only_toml.server.port, only_toml.server.host, only_toml.mail.host) == (9000, "10.1.2.3", "toml.example")

    env = {"ROSETTA_SERVER_PORT": "9100", "ROSETTA_MAIL_HOST": "env.example"}
    with_env = load_config(path, env=env)
    assert (with_env.server.port, with_env.server.host, with_env.mail.host) == (9100, "10.1.2.3", "env.example")

    with_flags = load_config(path, env=env, overrides={"server": {"port": 9200}})
    assert (with_flags.server.port, with_flags.mail.host) == (9200, "env.example")


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 9300\n")
    assert load_config(None, env={"ROSETTA_CONFIG": str(path)}).server.port == 9300


def test_env_values_are_typed() -> None:
    config = load_config(None, env={
        "ROSETTA_AUTH_REGISTRATION_OPEN": "false",
        "ROSETTA_SERVER_MAX_BODY_MB": "2.5",
        "ROSETTA_SERVER_TRUSTED_PROXIES": "10.0.0.1, 10.0.0.0/8",
        "ROSETTA_TEMPORARY_ROOMS_ACTIVE_LIMIT": "7",  # a section name with an underscore
        "ROSETTA_STORAGE_SYNCHRONOUS": "NORMAL",
    }, search=False)
    assert config.auth.registration_open is False
    assert config.server.max_body_mb == 2.5
    assert config.server.trusted_proxies == ("10.0.0.1", "10.0.0.0/8")
    assert config.temporary_rooms.active_limit == 7
    assert config.storage.synchronous == "NORMAL"


@pytest.mark.parametrize(("source", "key"), [
    ({"env": {"ROSETTA_SERVER_PORT": "abc"}}, "server.port"),
    ({"toml": '[server]\nport = "abc"\n'}, "server.port"),
    ({"toml": "[server]\nport = 70000\n"}, "server.port"),
    ({"toml": "[server]\nprot = 80\n"}, "server.prot"),
    ({"env": {"ROSETTA_SERVER_PROT": "80"}}, "server.prot"),
    ({"toml": "[serverz]\nport = 80\n"}, "serverz"),
    ({"toml": '[storage]\nsynchronous = "SOMETIMES"\n'}, "storage.synchronous"),
    ({"env": {"ROSETTA_MAIL_MODE": "pigeon"}}, "mail.mode"),
    ({"toml": '[auth]\nregistration_open = "yes"\n'}, "auth.registration_open"),
    ({"toml": "[server]\ncors_origins = [1, 2]\n"}, "server.cors_origins"),
    ({"toml": "[server\nport = 1\n"}, "config"),
])
def test_bad_values_name_the_key(tmp_path: Path, source: dict, key: str) -> None:
    path = write(tmp_path, source["toml"]) if "toml" in source else None
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=source.get("env", {}), search=False)
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{key}: ")


def test_bad_flag_value_names_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={}, overrides={"server": {"port": -1}}, search=False)
    assert caught.value.key == "server.port"


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.toml", env={})
    assert caught.value.key == "config"


def test_config_path_that_is_a_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, env={})
    assert caught.value.key == "config"
    assert str(tmp_path) in caught.value.problem


def keys_of_type(kind: type) -> list[str]:
    return [f"{section}.{f.name}" for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)
            if typing.get_type_hints(cls)[f.name] is kind]


def env_var(key: str) -> str:
    return "ROSETTA_" + key.replace(".", "_").upper()


FLOAT_KEYS = keys_of_type(float)


def test_there_are_float_keys_to_check() -> None:
    assert {"files.quota_mb", "server.max_body_mb", "auth.session_ttl_hours"} <= set(FLOAT_KEYS)


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_non_finite_float_from_env_names_the_key(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={env_var(key): value}, search=False)
    assert caught.value.key == key


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("value", ["nan", "+inf", "-nan"])
def test_non_finite_float_from_toml_names_the_key(tmp_path: Path, key: str, value: str) -> None:
    section, name = key.split(".")
    path = write(tmp_path, f"[{section}]\n{name} = {value}\n")  # TOML's own nan and inf literals
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.key == key
    assert "finite" in caught.value.problem


def test_non_finite_float_from_a_flag_names_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={}, overrides={"files": {"quota_mb": float("nan")}}, search=False)
    assert caught.value.key == "files.quota_mb"


URL_KEYS = [key for key in keys_of_type(str) if "url" in key.split(".")[1] or "endpoint" in key.split(".")[1]]


def test_every_url_key_is_validated_as_a_url() -> None:
    assert {"server.public_url", "translation.url", "auth.frontend_url", "push.fcm_endpoint",
            "push.expo_url"} <= set(URL_KEYS)
    for key in URL_KEYS:
        section, name = key.split(".")
        meta = {f.name: f.metadata for f in dataclasses.fields(SECTIONS[section])}[name]
        assert meta.get("url") in ("optional", "required"), f"{key} is not checked as a URL"


@pytest.mark.parametrize("key", URL_KEYS)
@pytest.mark.parametrize("value", [
    "ftp://files.example.test/", "localhost:5000", "example.test", "https://", "http://:8080/",
    "http://h.example.test:99999/", "http://h.example.test:port/", "http://h.example.test:0/",
    "http://[::1", "http://h.example.test/a b", "http://h.example.test/\nX-Evil: 1", "file:///etc/passwd",
])
def test_bad_url_names_the_key(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={env_var(key): value}, search=False)
    assert caught.value.key == key


@pytest.mark.parametrize("key", URL_KEYS)
def test_good_urls_are_kept(key: str) -> None:
    for value in ("https://h.example.test", "http://127.0.0.1:5000/v1", "HTTPS://[::1]:8443/x/{project_id}"):
        section, name = key.split(".")
        config = load_config(None, env={env_var(key): value}, search=False)
        assert getattr(getattr(config, section), name) == value


def test_empty_url_means_unset_where_the_key_is_optional() -> None:
    optional = [key for key in URL_KEYS if key != "push.expo_url"]
    config = load_config(None, env={env_var(key): "" for key in optional}, search=False)
    assert (config.server.public_url, config.translation.url, config.auth.frontend_url) == ("", "", "")
    with pytest.raises(ConfigError) as caught:  # Expo has no "off": an empty URL only failed every push
        load_config(None, env={"ROSETTA_PUSH_EXPO_URL": ""}, search=False)
    assert caught.value.key == "push.expo_url"


@pytest.mark.parametrize("value", ["\udcff", "a\x00b"])
@pytest.mark.parametrize(("var", "key"), [("ROSETTA_SERVER_HOST", "server.host"),
                                          ("ROSETTA_SERVER_CORS_ORIGINS", "server.cors_origins")])
def test_text_that_cannot_be_encoded_names_the_key(value: str, var: str, key: str) -> None:
    # What os.environ and sys.argv hold for bytes that are not UTF-8 (surrogateescape), and NUL.
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={var: f"https://a.test,{value}" if "CORS" in var else value}, search=False)
    assert caught.value.key == key


@pytest.mark.gen_test
async def test_keepalive_turns_an_unparsable_url_into_a_bad_answer() -> None:
    # Defence in depth behind the URL check above: a provider built without load_config (as the tests
    # and the doctor do) must fail the way a dead engine does, not with a ValueError from urlsplit.
    client = KeepAliveClient(max_idle=1)
    try:
        for url in ("http://127.0.0.1:99999/translate", "http://127.0.0.1:port/", "http://[::1/translate"):
            with pytest.raises(BadAnswer, match="not a valid URL"):
                await client.fetch("POST", url, {}, b"{}", 1.0)
    finally:
        client.close()
    provider = build_provider(TranslationConfig(provider="libretranslate", url="http://127.0.0.1:99999"))
    try:
        with pytest.raises(ProviderError, match="not a valid URL"):
            await provider.translate(["uno"], "es", "en")
    finally:
        provider.close()


def test_starttls_with_use_tls_names_use_tls(tmp_path: Path) -> None:
    path = write(tmp_path, "[mail]\nmode = \"smtp\"\nstarttls = true\nuse_tls = true\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.key == "mail.use_tls"
    with pytest.raises(ConfigError):
        load_config(None, env={"ROSETTA_MAIL_STARTTLS": "true", "ROSETTA_MAIL_USE_TLS": "yes"}, search=False)
    assert load_config(None, env={"ROSETTA_MAIL_STARTTLS": "true"}, search=False).mail.starttls is True
    assert load_config(None, env={"ROSETTA_MAIL_USE_TLS": "true"}, search=False).mail.use_tls is True


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "rosetta", *args], cwd=cwd, env=clean,  # noqa: S603 - our own CLI
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("command", [["migrate"], ["doctor"], ["backup", "out.db"], ["serve"],
                                     ["user", "create", "--email", "a@b.test", "--name", "A", "--password", "x"],
                                     ["token", "create", "--email", "a@b.test", "--name", "n", "--ability", "a"]])
def test_cli_bad_configuration_is_one_line_and_exit_2(tmp_path: Path, command: list[str]) -> None:
    bad = write(tmp_path, '[server]\nport = "abc"\n')
    result = run_cli("--config", str(bad), *command, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "server.port" in lines[0]
    assert not (tmp_path / "data").exists()  # nothing was started or created


def test_cli_bad_environment_variable_exits_2(tmp_path: Path) -> None:
    result = run_cli("migrate", cwd=tmp_path, env={"ROSETTA_STORAGE_SYNCHRONOUS": "OFF"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "rosetta: bad configuration: storage.synchronous: must be one of FULL, NORMAL, EXTRA, got 'OFF'"
    ]


# rosetta.toml documents every key ----------------------------------------------------------------


def documented_keys() -> dict[str, dict[str, tuple[object, str]]]:
    """``{section: {key: (value, line above)}}`` for every ``key = value`` line of rosetta.toml."""
    lines = (ROOT / "rosetta.toml").read_text(encoding="utf-8").splitlines()
    found: dict[str, dict[str, tuple[object, str]]] = {}
    section = None
    for number, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped.strip("[]")
            found.setdefault(section, {})
        elif stripped and not stripped.startswith("#"):
            assert section is not None, f"rosetta.toml line {number + 1} is outside a section"
            key = stripped.split("=", 1)[0].strip()
            value = tomllib.loads(stripped)[key]
            found[section][key] = (value, lines[number - 1].strip())
    return found


def test_rosetta_toml_documents_every_key_with_its_default() -> None:
    documented = documented_keys()
    assert set(documented) == set(SECTIONS), "rosetta.toml sections differ from the config dataclasses"
    for section, cls in SECTIONS.items():
        defaults = cls()
        fields = {f.name for f in dataclasses.fields(cls)}
        assert set(documented[section]) == fields, f"[{section}] keys differ from {cls.__name__}"
        for key in fields:
            value, above = documented[section][key]
            assert above.startswith("#") and len(above) > 2, f"{section}.{key} has no comment directly above it"
            default = getattr(defaults, key)
            shown = tuple(value) if isinstance(value, list) else value
            assert shown == default and type(shown) is type(default), (
                f"{section}.{key} = {value!r} in rosetta.toml, but the default is {default!r}")


def test_rosetta_toml_loads_to_the_defaults() -> None:
    loaded = load_config(ROOT / "rosetta.toml", env={})
    assert dataclasses.replace(loaded, oauth={}) == dataclasses.replace(Config(), oauth={})
