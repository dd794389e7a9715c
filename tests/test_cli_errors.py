"""The `rosetta` command on an operator's ordinary mistakes: one `rosetta: ...` line and an exit code,
never a traceback, and nothing overwritten or half made.

Most cases fail before any database opens, so they call ``rosetta.cli.main`` in-process; the ones
that need a terminal, raw bytes on stdin or a listening server run ``python -m rosetta``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pty
import socket
import sqlite3
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rosetta.cli import main
from rosetta.config import Config, MailConfig, StorageConfig
from rosetta.doctor import run_checks
from tests.test_cli import Ran

ROOT = Path(__file__).resolve().parent.parent


Cli = Callable[..., Ran]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    """``cli(*args)`` runs ``main([*args, "--data-dir", tmp_path/data])`` in this process, from ``tmp_path``."""
    monkeypatch.chdir(tmp_path)  # no ./rosetta.toml of the checkout is read
    for var in [var for var in os.environ if var.startswith("ROSETTA_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("ROSETTA_AUTH_BCRYPT_ROUNDS", "4")
    rosetta_log = logging.getLogger("rosetta")
    level = rosetta_log.level  # main() quiets it for operator commands: give other tests theirs back

    def run(*args: str, data_dir: str | None = None) -> Ran:
        # On a thread of its own: main's asyncio.run would otherwise replace, unclosed, the event loop
        # an earlier gen_test left set for this thread (a ResourceWarning, so an error, at collection).
        with ThreadPoolExecutor(max_workers=1) as thread:
            code = thread.submit(main, [*args, "--data-dir", data_dir or str(tmp_path / "data")]).result()
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    yield run
    rosetta_log.setLevel(level)


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSETTA_")}
    return {**env, "PYTHONPATH": str(ROOT), "ROSETTA_AUTH_BCRYPT_ROUNDS": "4", **extra}


async def rosetta(*args: str, cwd: Path, stdin: bytes = b"", **env: str) -> Ran:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rosetta", *args, cwd=cwd, env=subprocess_env(**env),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(stdin), 60)
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode(errors="replace"))


# Configuration file, data directory ---------------------------------------------------------------


def test_config_path_that_is_a_directory(cli: Cli, tmp_path: Path) -> None:
    ran = cli("--config", str(tmp_path), "migrate")
    assert ran.code == 2
    assert ran.err.strip().splitlines() == [f"rosetta: bad configuration: config: cannot read {tmp_path}: "
                                            "Is a directory"]


@pytest.mark.parametrize("command", [["migrate"],
                                     ["user", "create", "--email", "a@example.test", "--name", "A",
                                      "--password", "long-enough-pw"]])
def test_data_dir_that_cannot_be_made(cli: Cli, tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "data").write_text("a file where the data directory should be")
    ran = cli(*command)
    assert ran.code == 1
    assert "data directory" in ran.one_line_error() and "not writable" in ran.err


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs sysfs, a directory even root cannot write")
def test_data_dir_that_exists_but_is_read_only(cli: Cli) -> None:
    ran = cli("migrate", data_dir="/sys/kernel")
    assert ran.code == 1
    assert ran.one_line_error().startswith("rosetta: the data directory /sys/kernel is not writable")


# serve ---------------------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=90)
async def test_serve_on_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ran = await rosetta("serve", "--port", str(port), "--data-dir", str(tmp_path / "data"), cwd=tmp_path)
    assert ran.code == 1
    assert ran.one_line_error() == f"rosetta: cannot listen on 127.0.0.1:{port}: the port is in use " \
                                   "(is another server running?)"


@pytest.mark.gen_test(timeout=90)
async def test_serve_on_an_address_this_machine_does_not_have(tmp_path: Path) -> None:
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): never a local address, and no name lookup is involved.
    ran = await rosetta("serve", "--host", "192.0.2.1", "--port", "0", "--data-dir", str(tmp_path / "data"),
                        cwd=tmp_path)
    assert ran.code == 2
    assert ran.one_line_error() == ("rosetta: bad configuration: server.host: 192.0.2.1 is not an address of "
                                    "this machine")


# Password input, text that is not UTF-8 ----------------------------------------------------------


@pytest.mark.gen_test(timeout=90)
async def test_end_of_input_at_the_password_prompt(tmp_path: Path) -> None:
    master, slave = pty.openpty()  # a terminal, so the command prompts with getpass
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rosetta", "user", "create", "--email", "p@example.test", "--name", "P",
            "--data-dir", str(tmp_path / "data"), cwd=tmp_path, env=subprocess_env(), stdin=slave,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
        os.close(slave)
        slave = -1
        assert process.stderr is not None
        prompt = b""
        while b"Password: " not in prompt:  # getpass flushes pending input before it prompts: wait for it
            chunk = await asyncio.wait_for(process.stderr.read(1024), 60)
            assert chunk, prompt
            prompt += chunk
        os.write(master, b"\x04")  # Ctrl-D at the start of a line: the terminal's end of input
        out, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        os.close(master)
        if slave != -1:
            os.close(slave)
    ran = Ran(process.returncode or 0, out.decode(), (prompt + err).decode())
    assert ran.code == 1
    assert ran.one_line_error() == "rosetta: no password given (the input ended at the prompt)"
    assert not (tmp_path / "data" / "rosetta.sqlite3").exists()


@pytest.mark.gen_test(timeout=90)
async def test_password_on_stdin_that_is_not_utf8(tmp_path: Path) -> None:
    # utf-8:strict is how Python reads stdin under a UTF-8 locale; the bytes are Latin-1 "pässwörd".
    ran = await rosetta("user", "create", "--email", "p@example.test", "--name", "P", "--data-dir",
                        str(tmp_path / "data"), cwd=tmp_path, stdin=b"p\xe4ssw\xf6rd\n",
                        PYTHONIOENCODING="utf-8:strict")
    assert ran.code == 1
    assert ran.one_line_error() == "rosetta: the password on standard input is not valid UTF-8"


def test_arguments_that_are_not_utf8(cli: Cli) -> None:
    # sys.argv holds undecodable bytes as lone surrogates (b"\xff" is "\udcff"): each command refuses
    # them in one line before they reach SQLite's or getaddrinfo's encoder.
    made = cli("user", "create", "--email", "u@example.test", "--name", "U", "--password", "long-enough-pw")
    assert made.code == 0, made
    bad_name = cli("token", "create", "--email", "u@example.test", "--name", "ci\udcff", "--ability", "automation")
    assert bad_name.code == 1 and "name: The name field must be valid Unicode text." in bad_name.one_line_error()
    bad_email = cli("user", "plan", "--email", "u\udcff@example.test", "--plan", "developer")
    assert bad_email.code == 1 and "email:" in bad_email.one_line_error()
    bad_host = cli("serve", "--host", "\udcff")
    assert bad_host.code == 2 and "server.host: must be valid Unicode text" in bad_host.one_line_error()
    bad_file = cli("backup", "copy-\udcff.sqlite3")
    assert bad_file.code == 1 and "not valid UTF-8" in bad_file.one_line_error()


# token create, user plan: the HTTP route's validation ---------------------------------------------


def tokens(tmp_path: Path) -> list[str]:
    with sqlite3.connect(tmp_path / "data" / "rosetta.sqlite3") as db:
        return [row[0] for row in db.execute("SELECT name FROM access_tokens ORDER BY name")]


def test_token_create_validates_like_post_me_tokens(cli: Cli, tmp_path: Path) -> None:
    made = cli("user", "create", "--email", "ana@example.test", "--name", "Ana", "--password", "long-enough-pw")
    assert made.code == 0, made
    refusals = {
        "": "name: The name field is required.",
        "   ": "name: The name field is required.",
        "n" * 256: "name: The name field must not be greater than 255 characters.",
        "nul\x00": "name: The name field must not contain NUL characters.",
    }
    for name, problem in refusals.items():
        ran = cli("token", "create", "--email", "ana@example.test", "--name", name, "--ability", "automation")
        assert ran.code == 1, (name, ran)
        assert problem in ran.one_line_error(), (name, ran.err)
    bad_email = cli("token", "create", "--email", "ana@@example.test", "--name", "n", "--ability", "automation")
    assert bad_email.code == 1
    assert "email: The email field must be a valid email address." in bad_email.one_line_error()
    too_many = cli("token", "create", "--email", "ana@example.test", "--name", "n",
                   *[arg for n in range(11) for arg in ("--ability", f"a{n}")])
    assert too_many.code == 1 and "abilities" in too_many.one_line_error()
    assert tokens(tmp_path) == []
    longest = cli("token", "create", "--email", " Ana@Example.test ", "--name", "n" * 255, "--ability", "automation")
    assert longest.code == 0, longest
    assert tokens(tmp_path) == ["n" * 255]


def test_user_plan_validates_the_email(cli: Cli) -> None:
    ran = cli("user", "plan", "--email", "not-an-email", "--plan", "developer")
    assert ran.code == 1
    assert "email: The email field must be a valid email address." in ran.one_line_error()


# backup: never onto the live database --------------------------------------------------------------


@pytest.fixture
def live_database(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    source = data / "rosetta.sqlite3"
    with sqlite3.connect(source) as db:
        db.execute("CREATE TABLE kept (x TEXT)")
        db.execute("INSERT INTO kept VALUES ('the live data')")
    db.close()
    for suffix in ("-wal", "-shm"):  # stand-ins for the files a running server keeps open
        source.with_name(source.name + suffix).write_bytes(b"live " + suffix.encode())
    return source


def snapshot(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir()) if path.is_file()}


@pytest.mark.parametrize("target", ["data/rosetta.sqlite3", "./data/../data/rosetta.sqlite3",
                                    "data/rosetta.sqlite3-wal", "data/rosetta.sqlite3-shm",
                                    "data/rosetta.sqlite3-journal", "data", "data/", "/", ".", ""])
def test_backup_refuses_the_live_database_a_directory_or_no_file_name(cli: Cli, tmp_path: Path,
                                                                       live_database: Path, target: str) -> None:
    before = snapshot(live_database.parent), snapshot(tmp_path)
    ran = cli("backup", target)
    assert ran.code == 1
    assert ran.one_line_error().startswith("rosetta: backup refused: ")
    assert (snapshot(live_database.parent), snapshot(tmp_path)) == before  # nothing written, nothing replaced


def test_backup_refuses_a_link_to_the_live_database(cli: Cli, tmp_path: Path, live_database: Path) -> None:
    (tmp_path / "symlink.sqlite3").symlink_to(live_database)
    os.link(live_database, tmp_path / "hardlink.sqlite3")
    before = snapshot(live_database.parent)
    for target in ("symlink.sqlite3", "hardlink.sqlite3"):
        ran = cli("backup", target)
        assert ran.code == 1 and "live database" in ran.one_line_error(), ran
    assert snapshot(live_database.parent) == before


def test_backup_into_a_path_under_a_file(cli: Cli, tmp_path: Path, live_database: Path) -> None:
    (tmp_path / "plain").write_text("a file, not a directory")
    ran = cli("backup", "plain/copy.sqlite3")
    assert ran.code == 1 and "cannot create the directory" in ran.one_line_error()


# doctor ---------------------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_doctor_mail_check_reports_starttls_with_use_tls(tmp_path: Path) -> None:
    # load_config refuses the pair; a Config built directly still gets a FAIL line, not a traceback.
    config = Config(storage=StorageConfig(data_dir=str(tmp_path / "data")),
                    mail=MailConfig(mode="smtp", host="127.0.0.1", starttls=True, use_tls=True))
    checks = {check.name: check for check in await run_checks(config, 1.0)}
    assert not checks["mail"].ok
    assert "do not fit together" in checks["mail"].detail


def test_doctor_fails_on_a_bad_oauth_table(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "rosetta.toml"
    bad.write_text('[oauth.corp]\nkind = "saml"\nclient_id = "id"\nclient_secret = "secret"\n', encoding="utf-8")
    ran = cli("doctor", "--config", str(bad))
    assert ran.code == 1
    lines = ran.out.splitlines()
    assert any(line.startswith("FAIL  oauth:") and "oauth.corp.kind" in line for line in lines), ran.out
    assert ran.out.strip().endswith("some checks failed")


def test_doctor_lists_good_oauth_providers(cli: Cli, tmp_path: Path) -> None:
    good = tmp_path / "rosetta.toml"
    good.write_text('[oauth.github]\nkind = "github"\nclient_id = "id"\nclient_secret = "secret"\n', encoding="utf-8")
    ran = cli("doctor", "--config", str(good))
    assert ran.code == 0, ran
    assert "ok    oauth: sign-in providers: github" in ran.out.splitlines()
