"""The `rosetta` command, run as a real subprocess next to a real server over the same data directory."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import tornado.httpserver
import tornado.web

from tests import support
from tests.support import Api, Server, register, workspace_with

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def one_line_error(self) -> str:
        """The message, after checking it is the last stderr line and no traceback came with it."""
        assert "Traceback" not in self.err, self.err
        last = self.err.strip().splitlines()[-1]
        assert last.startswith("rosetta: "), self.err
        return last


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSETTA_")}
    env.update({"PYTHONPATH": str(ROOT), "ROSETTA_AUTH_BCRYPT_ROUNDS": "4"}, **extra)
    return env


async def rosetta(*args: str, data_dir: Path, stdin: str | None = None, cwd: Path | None = None, **env: str) -> Ran:
    """Run ``python -m rosetta ARGS --data-dir DATA_DIR`` without blocking the server in this loop."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rosetta", *args, "--data-dir", str(data_dir), cwd=cwd or data_dir.parent,
        env=cli_env(**env), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode() if stdin is not None else b""), 60)
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# user create / user plan ----------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_user_create_reads_password_from_stdin_and_can_sign_in(server: Server, api: Api) -> None:
    data_dir = server.config.data_dir
    made = await rosetta("user", "create", "--email", "Zoe@Example.test", "--name", "Zoe", "--language", "pt-br",
                         data_dir=data_dir, stdin="long-enough-pw\n")
    assert made.code == 0, made
    assert "zoe@example.test" in made.out
    login = await api.post("/auth/app/login", {"email": "zoe@example.test", "password": "long-enough-pw"})
    assert login.status == 200, login
    assert login.json["user"]["preferred_language"] == "pt-BR"
    assert login.json["user"]["name"] == "Zoe"


@pytest.mark.gen_test(timeout=60)
async def test_user_create_inactive_cannot_sign_in(server: Server, api: Api) -> None:
    made = await rosetta("user", "create", "--email", "off@example.test", "--name", "Off", "--password",
                         "long-enough-pw", "--inactive", data_dir=server.config.data_dir)
    assert made.code == 0, made
    login = await api.post("/auth/app/login", {"email": "off@example.test", "password": "long-enough-pw"})
    assert login.status == 403, login


@pytest.mark.gen_test(timeout=60)
async def test_user_create_refuses_bad_input_and_taken_email(server: Server, api: Api) -> None:
    data_dir = server.config.data_dir
    await register(api, "Ana")
    taken = await rosetta("user", "create", "--email", "ana@example.test", "--name", "Ana 2", "--password",
                          "long-enough-pw", data_dir=data_dir)
    assert taken.code == 1 and "email" in taken.err and "already registered" in taken.err
    bad_email = await rosetta("user", "create", "--email", "not-an-email", "--name", "X", "--password",
                              "long-enough-pw", data_dir=data_dir)
    assert bad_email.code == 1 and "email" in bad_email.err
    too_long = await rosetta("user", "create", "--email", "x@example.test", "--name", "X", "--password",
                             "é" * 40, data_dir=data_dir)  # 80 bytes: refused, never truncated
    assert too_long.code == 1 and "72 bytes" in too_long.err
    empty = await rosetta("user", "create", "--email", "y@example.test", "--name", "Y", data_dir=data_dir, stdin="")
    assert empty.code == 1 and "password" in empty.err
    for attempt in (taken, bad_email, too_long, empty):
        assert "Traceback" not in attempt.err
    login = await api.post("/auth/app/login", {"email": "x@example.test", "password": "é" * 40})
    assert login.status == 422  # no half-made account


@pytest.mark.gen_test(timeout=60)
async def test_user_plan_sets_the_plan(server: Server, api: Api) -> None:
    await register(api, "Dev")
    data_dir = server.config.data_dir
    done = await rosetta("user", "plan", "--email", "dev@example.test", "--plan", "developer", data_dir=data_dir)
    assert done.code == 0, done
    assert "developer plan" in done.out
    unknown = await rosetta("user", "plan", "--email", "who@example.test", "--plan", "free", data_dir=data_dir)
    assert unknown.code == 1 and "who@example.test" in unknown.err
    wrong = await rosetta("user", "plan", "--email", "dev@example.test", "--plan", "gold", data_dir=data_dir)
    assert wrong.code == 2 and "gold" in wrong.err  # argparse refuses it before anything opens


# token create -----------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_token_create_prints_a_token_that_authenticates(server: Server, api: Api) -> None:
    ana = await register(api, "Ana")
    made = await rosetta("token", "create", "--email", "ana@example.test", "--name", "ci bot", "--ability",
                         "automation", "--ability", "temporary-rooms:read", "--expires-at", "2999-01-01T00:00:00Z",
                         data_dir=server.config.data_dir)
    assert made.code == 0, made
    plain = made.out.strip()
    assert re.fullmatch(r"[0-9a-z]{26}\|[0-9a-f]{40}", plain), made.out
    listed = await api.get("/me/tokens", token=ana.token)
    assert listed.status == 200
    (token,) = [t for t in listed.json["data"] if t["name"] == "ci bot"]
    assert token["id"] == plain.split("|")[0]
    assert sorted(token["abilities"]) == ["automation", "temporary-rooms:read"]
    assert token["expires_at"].startswith("2999-01-01T00:00:00")
    assert "token" not in token
    # The token is known to the server: a route needing full access says 403 (not 401 as for a bad token).
    assert (await api.get("/me", token=plain)).status == 403
    assert (await api.get("/me", token=plain[:-1] + ("0" if plain[-1] != "0" else "1"))).status == 401
    # Revoking it over HTTP ends it at once.
    assert (await api.delete(f"/me/tokens/{token['id']}", token=ana.token)).status == 204
    assert (await api.get("/me", token=plain)).status == 401


@pytest.mark.gen_test(timeout=60)
async def test_token_create_refusals(server: Server, api: Api) -> None:
    await register(api, "Ana")
    data_dir = server.config.data_dir
    unknown_user = await rosetta("token", "create", "--email", "nobody@example.test", "--name", "n", "--ability",
                                 "automation", data_dir=data_dir)
    assert unknown_user.code == 1 and "nobody@example.test" in unknown_user.err
    bad_ability = await rosetta("token", "create", "--email", "ana@example.test", "--name", "n", "--ability",
                                "launch-missiles", data_dir=data_dir)
    assert bad_ability.code == 1 and "abilities" in bad_ability.err
    bad_date = await rosetta("token", "create", "--email", "ana@example.test", "--name", "n", "--ability",
                             "automation", "--expires-at", "tomorrow", data_dir=data_dir)
    assert bad_date.code == 1 and "expires_at" in bad_date.err
    out_of_range = await rosetta("token", "create", "--email", "ana@example.test", "--name", "n", "--ability",
                                 "automation", "--expires-at", "9999-12-31T23:00:00-05:00", data_dir=data_dir)
    assert out_of_range.code == 1 and "expires_at" in out_of_range.err and "Traceback" not in out_of_range.err
    past = await rosetta("token", "create", "--email", "ana@example.test", "--name", "n", "--ability",
                         "automation", "--expires-at", "2001-01-01T00:00:00+00:00", data_dir=data_dir)
    assert past.code == 1 and "future" in past.err


# backup -------------------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=90)
async def test_backup_of_a_live_database_while_the_server_writes(server: Server, api: Api, tmp_path: Path) -> None:
    ana = await register(api, "Ana")
    workspace = await workspace_with(api, ana)
    path = f"/workspaces/{workspace['id']}/channels/{workspace['general']['id']}/messages"
    acknowledged: list[str] = []
    stop = asyncio.Event()
    twenty_in = asyncio.Event()

    async def keep_writing() -> None:
        n = 0
        while not stop.is_set():
            sent = await api.post(path, {"content": f"message {n}"}, token=ana.token)
            assert sent.status == 201, sent
            acknowledged.append(sent.json["data"]["id"])
            n += 1
            if n == 20:
                twenty_in.set()

    writer = asyncio.ensure_future(keep_writing())
    await twenty_in.wait()
    before_backup = list(acknowledged)
    target = tmp_path / "backups" / "copy.sqlite3"
    done = await rosetta("backup", str(target), data_dir=server.config.data_dir)
    stop.set()
    await writer
    assert done.code == 0, done
    assert len(acknowledged) > len(before_backup), "the server kept writing during the backup"
    assert not list(target.parent.glob("*.partial"))
    with sqlite3.connect(target) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    # The copy is a working data directory: a server started on it serves everything acknowledged before.
    restored_dir = tmp_path / "restored"
    restored_dir.mkdir()
    shutil.copy(target, restored_dir / "rosetta.sqlite3")
    restored = Server(support.test_config(restored_dir), server.clock)
    await restored.start()
    try:
        reader = Api(restored)
        seen: set[str] = set()
        cursor = ""
        while True:
            page = await reader.get(f"{path}?limit=100{cursor}", token=ana.token)
            assert page.status == 200, page
            seen.update(m["id"] for m in page.json["data"])
            if len(page.json["data"]) < 100:
                break
            cursor = f"&before={page.json['data'][-1]['id']}"
        reader.close()
    finally:
        await restored.stop()
    assert set(before_backup) <= seen
    assert seen <= set(acknowledged)


@pytest.mark.gen_test(timeout=60)
async def test_backup_without_a_database_fails_cleanly(tmp_path: Path) -> None:
    empty = tmp_path / "data"
    empty.mkdir()
    ran = await rosetta("backup", str(tmp_path / "copy.sqlite3"), data_dir=empty)
    assert ran.code == 1 and "no database" in ran.err
    assert not (tmp_path / "copy.sqlite3").exists()


# doctor -------------------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_doctor_on_a_healthy_default_setup(server: Server) -> None:
    ran = await rosetta("doctor", data_dir=server.config.data_dir)
    assert ran.code == 0, ran
    lines = ran.out.splitlines()
    assert any(line.startswith("ok    database:") and "migrations applied" in line for line in lines), ran.out
    assert any(line.startswith("ok    data directory:") and "writable" in line for line in lines)
    assert any("translation is off" in line for line in lines)
    assert any(line.startswith("ok    mail:") and '"log"' in line for line in lines)
    assert not any(line.startswith("FAIL") for line in lines)


@pytest.mark.gen_test(timeout=60)
async def test_doctor_reports_unreachable_mail_and_translation(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    dead = closed_port()
    ran = await rosetta("doctor", data_dir=data_dir, ROSETTA_MAIL_MODE="smtp", ROSETTA_MAIL_HOST="127.0.0.1",
                        ROSETTA_MAIL_PORT=str(dead), ROSETTA_TRANSLATION_PROVIDER="libretranslate",
                        ROSETTA_TRANSLATION_URL=f"http://127.0.0.1:{dead}")
    assert ran.code == 1, ran
    lines = ran.out.splitlines()
    assert any(line.startswith("FAIL  mail:") and f"127.0.0.1:{dead}" in line for line in lines), ran.out
    assert any(line.startswith("FAIL  translation:") and "libretranslate" in line for line in lines), ran.out
    assert any("does not exist yet" in line for line in lines)  # no database yet is not a failure
    assert ran.out.strip().endswith("some checks failed")


@pytest.mark.gen_test(timeout=60)
async def test_doctor_reaches_a_translation_provider(tmp_path: Path) -> None:
    class Languages(tornado.web.RequestHandler):
        def get(self) -> None:
            self.write({"ok": True})

    provider = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/.*", Languages)]))
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    provider.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    try:
        ran = await rosetta("doctor", data_dir=data_dir, ROSETTA_TRANSLATION_PROVIDER="libretranslate",
                            ROSETTA_TRANSLATION_URL=f"http://127.0.0.1:{port}")
    finally:
        provider.stop()
    assert ran.code == 0, ran
    assert any(line.startswith("ok    translation:") and str(port) in line for line in ran.out.splitlines())


@pytest.mark.gen_test(timeout=60)
async def test_doctor_checks_where_the_provider_will_call_when_no_url_is_set(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    ran = await rosetta("doctor", data_dir=data_dir, ROSETTA_TRANSLATION_PROVIDER="openai",
                        ROSETTA_TRANSLATION_URL="", ROSETTA_TRANSLATION_MODEL="llama3.1")
    line = next(line for line in ran.out.splitlines() if "translation:" in line)
    assert "localhost:11434" in line, line  # Ollama's address, the provider's default


@pytest.mark.gen_test(timeout=60)
async def test_doctor_fails_when_the_data_dir_cannot_be_made(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data directory's parent should be")
    ran = await rosetta("doctor", data_dir=blocker / "data", cwd=tmp_path)
    assert ran.code == 1
    assert any(line.startswith("FAIL  data directory:") and "not a directory" in line
               for line in ran.out.splitlines()), ran.out


# serve, help ---------------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_serve_answers_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rosetta", "serve", "--port", "0", "--data-dir", str(data_dir), cwd=tmp_path,
        env=cli_env(), stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
    )
    assert process.stderr is not None
    port = None
    while port is None:
        line = (await asyncio.wait_for(process.stderr.readline(), 30)).decode()
        assert line, "the server exited before listening"
        found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        port = int(found.group(1)) if found else None
    from tornado.httpclient import AsyncHTTPClient

    client = AsyncHTTPClient(force_instance=True)
    health = await client.fetch(f"http://127.0.0.1:{port}/api/v1/health", raise_error=False)
    client.close()
    assert health.code == 200
    process.send_signal(signal.SIGTERM)
    rest = (await asyncio.wait_for(process.stderr.read(), 30)).decode()
    assert await asyncio.wait_for(process.wait(), 30) == 0
    assert "shutting down" in rest and "database closed" in rest
    assert "Traceback" not in rest


@pytest.mark.gen_test(timeout=60)
async def test_help_lists_every_command(tmp_path: Path) -> None:
    ran = await rosetta("--help", data_dir=tmp_path / "data")
    assert ran.code == 0
    for command in ("serve", "migrate", "user", "token", "backup", "doctor"):
        assert re.search(rf"^\s+{command}\s", ran.out, re.MULTILINE), command
    user_help = await rosetta("user", "--help", data_dir=tmp_path / "data")
    assert "create" in user_help.out and "plan" in user_help.out
