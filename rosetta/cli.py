"""The `rosetta` command: serve, migrate, user create|plan, token create, backup, doctor.

Owns argument parsing, turning a bad configuration into one line on stderr with exit code 2 (and an
operator's other mistakes, such as a busy port or a data directory that is not writable, into one
line with exit code 1), and the operator commands. Those reuse the services through a
``RosettaApp`` whose database is open but which does not listen, so a user made here obeys the same
rules as one made over HTTP. Every command works while ``rosetta serve`` runs on the same data
directory (SQLite serialises the two writers with its busy timeout).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import getpass
import logging
import signal
import socket
import sqlite3
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rosetta import __version__
from rosetta.clock import iso, parse_iso
from rosetta.cluster import Cluster
from rosetta.config import Config, ConfigError, ServerConfig, load_config
from rosetta.errors import ApiError
from rosetta.text import bad_text
from rosetta.workers import serve_workers

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from rosetta.app import RosettaApp

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
DOCTOR_TIMEOUT_S = 3.0  # a reachable mail server or provider answers well within this on a LAN

Command = Callable[[Config, argparse.Namespace], Awaitable[int]]


class OperatorError(Exception):
    """A mistake the operator can fix (a busy port, an unwritable directory, no password given):
    ``main`` prints it as one line and exits 1, like the services' refusals."""


def _common_options() -> argparse.ArgumentParser:
    """--config and --data-dir, accepted before or after the command (SUPPRESS: absent means unset)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS,
                        help="path to rosetta.toml (default: $ROSETTA_CONFIG or ./rosetta.toml)")
    common.add_argument("--data-dir", default=argparse.SUPPRESS,
                        help="where the SQLite file and uploads live (storage.data_dir)")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = argparse.ArgumentParser(prog="rosetta", parents=[common],
                                     description="Rosetta: team chat, every message in your language.")
    parser.add_argument("--version", action="version", version=f"rosetta {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve_cmd = commands.add_parser("serve", parents=[common],
                                    help="run the server: HTTP, WebSocket, SSE and background jobs (default)")
    serve_cmd.add_argument("--host", help="address to listen on (server.host)")
    serve_cmd.add_argument("--port", type=int, help="port to listen on (server.port)")
    commands.add_parser("migrate", parents=[common], help="apply database migrations and exit")

    user = commands.add_parser("user", parents=[common], help="manage accounts: user create, user plan")
    user_commands = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    create = user_commands.add_parser("create", parents=[common], help="create an account (verified)")
    create.add_argument("--email", required=True)
    create.add_argument("--name", required=True)
    create.add_argument("--password", help="the password; without it, asked for (or one line read from stdin)")
    create.add_argument("--language", help="preferred language, e.g. en or zh-CN (translation.default_language)")
    create.add_argument("--inactive", action="store_true", help="create the account deactivated")
    plan = user_commands.add_parser("plan", parents=[common], help="set a user's temporary-rooms plan")
    plan.add_argument("--email", required=True)
    plan.add_argument("--plan", required=True, choices=("free", "developer"))

    token = commands.add_parser("token", parents=[common], help="manage access tokens: token create")
    token_commands = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    token_create = token_commands.add_parser("create", parents=[common],
                                             help="issue a personal access token and print it once")
    token_create.add_argument("--email", required=True, help="the user the token acts as")
    token_create.add_argument("--name", required=True, help="a label for the token")
    token_create.add_argument("--ability", action="append", required=True, dest="abilities",
                              help="an ability (repeat for several), e.g. automation")
    token_create.add_argument("--expires-at", help="ISO 8601 moment the token stops working (UTC if no offset)")

    backup = commands.add_parser("backup", parents=[common],
                                 help="copy the live database to FILE (SQLite online backup)")
    backup.add_argument("file", metavar="FILE")
    commands.add_parser("doctor", parents=[common],
                        help="check configuration, database, data directory, mail and translation")
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    overrides: dict[str, dict[str, Any]] = {"server": {}, "storage": {}}
    if getattr(args, "host", None):
        overrides["server"]["host"] = args.host
    if getattr(args, "port", None) is not None:
        overrides["server"]["port"] = args.port
    if getattr(args, "data_dir", None):
        overrides["storage"]["data_dir"] = args.data_dir
    return load_config(getattr(args, "config", None), overrides=overrides)


# Commands ---------------------------------------------------------------------------------------


async def serve(config: Config, args: argparse.Namespace | None = None, cluster: Cluster | None = None) -> int:
    from rosetta.app import RosettaApp

    ensure_data_dir(config.data_dir)
    app = RosettaApp(config, cluster=cluster)
    try:
        await app.start()
    except BaseException as exc:
        # The database (its aiosqlite thread) and the translation memory are open by the time the
        # port is bound: close them, or the process would not end after the message.
        await app.stop()
        explained = listen_error(exc, config.server) if isinstance(exc, OSError) else None
        if explained is None:
            raise
        raise explained from None
    # What exists now (modules, routes, the language model) lives as long as the process: out of the
    # cyclic collector's reach, a full collection scans only what came later. Such a collection stops
    # the loop; with 500 WebSocket connections it took 60-90 ms, half of it over these objects.
    gc.freeze()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    logging.getLogger("rosetta").info("shutting down")
    await app.stop()
    return EXIT_OK


async def prepare_workers(config: Config) -> None:
    """Before ``server.workers`` processes are forked: migrate, and the app's once-per-server start-up."""
    async with offline_app(config) as app:
        await app.prepare()


def ensure_data_dir(data_dir: Path) -> None:
    """Create the data directory and prove it writable, or say in one line why not.

    Without this a read-only or misplaced directory surfaced as a PermissionError traceback from
    mkdir, or as SQLite's "unable to open database file" from somewhere inside the start-up.
    """
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".rosetta-probe-"):
            pass
    except OSError as exc:
        raise OperatorError(f"the data directory {data_dir} is not writable: {exc.strerror or exc}") from None


def listen_error(exc: OSError, server: ServerConfig) -> Exception | None:
    """What an OSError from binding ``server.host:server.port`` means in one line, or None when it is
    another kind of OSError (which stays a traceback: it is not an operator's mistake we know)."""
    where = f"{server.host}:{server.port}"
    if exc.filename is not None:  # a file's error, not the socket's
        return None
    if isinstance(exc, socket.gaierror):
        return ConfigError("server.host", f"{server.host!r} is not a name this machine can resolve "
                                          f"({exc.strerror})")
    if exc.errno == errno.EADDRNOTAVAIL:
        return ConfigError("server.host", f"{server.host} is not an address of this machine")
    if exc.errno == errno.EADDRINUSE:
        return OperatorError(f"cannot listen on {where}: the port is in use (is another server running?)")
    if exc.errno == errno.EACCES:
        return OperatorError(f"cannot listen on {where}: permission denied (ports below 1024 need privileges)")
    return None


async def migrate(config: Config, args: argparse.Namespace | None = None) -> int:
    from rosetta.store.db import Database

    ensure_data_dir(config.data_dir)
    db = Database(config.data_dir / "rosetta.sqlite3", synchronous=config.storage.synchronous, readers=1)
    await db.open()
    await db.close()
    print(f"database at {db.path} is up to date")
    return EXIT_OK


@asynccontextmanager
async def offline_app(config: Config) -> AsyncIterator[RosettaApp]:
    """The application's services over an open database, without listening or running jobs."""
    from rosetta.app import RosettaApp

    ensure_data_dir(config.data_dir)
    app = RosettaApp(config, run_jobs=False)
    await app.db.open()
    try:
        yield app
    finally:
        await app.db.close()


def read_password(given: str | None) -> str:
    if given is not None:
        return given
    try:
        if sys.stdin.isatty():
            try:
                first = getpass.getpass("Password: ")
                if getpass.getpass("Again: ") != first:
                    raise ApiError("The passwords do not match.")
            except EOFError:  # Ctrl-D at the prompt (an empty pipe reads "", which the validator refuses)
                print(file=sys.stderr)  # end the prompt's line, so the message is a line of its own
                raise OperatorError("no password given (the input ended at the prompt)") from None
            return first
        return sys.stdin.readline().rstrip("\r\n")
    except UnicodeDecodeError:
        raise OperatorError("the password on standard input is not valid UTF-8") from None


async def user_create(config: Config, args: argparse.Namespace) -> int:
    from rosetta.handlers.validate import Validator
    from rosetta.services.operators import OperatorService

    password = read_password(args.password)
    v = Validator({"email": args.email, "name": args.name, "password": password,
                   "preferred_language": args.language})
    name = v.string("name", required=True, max_len=255)
    email = v.email()
    checked = v.password()
    language = v.language()
    v.done()
    assert name and email and checked
    async with offline_app(config) as app:
        operators = OperatorService(app.ctx, app.accounts)
        user = await operators.create_user(name=name, email=email, password=checked, language=language,
                                           active=not args.inactive)
    state = "inactive" if args.inactive else "active"
    print(f"created user {user['id']} <{user['email']}> ({state}, language {user['preferred_language']})")
    return EXIT_OK


async def user_plan(config: Config, args: argparse.Namespace) -> int:
    from rosetta.handlers.validate import Validator
    from rosetta.services.operators import OperatorService

    v = Validator({"email": args.email})
    email = v.email()
    v.done()
    assert email
    async with offline_app(config) as app:
        user = await OperatorService(app.ctx, app.accounts).set_room_plan(email, args.plan)
    print(f"user {user['id']} <{user['email']}> now has the {user['room_plan']} plan")
    return EXIT_OK


async def token_create(config: Config, args: argparse.Namespace) -> int:
    from rosetta.handlers.validate import Validator
    from rosetta.services.operators import OperatorService

    # The checks of POST /me/tokens (handlers/accounts.py), so a token made here obeys the same rules.
    v = Validator({"email": args.email, "name": args.name, "abilities": args.abilities,
                   "expires_at": args.expires_at})
    email = v.email()
    name = v.string("name", required=True, max_len=255)
    abilities = v.string_list("abilities", max_items=10, max_len=64, required=True)
    expires_at = v.string("expires_at", max_len=64)
    if expires_at is not None:
        try:
            expires_at = iso(parse_iso(expires_at).astimezone(UTC))
        except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 pushed past UTC's range
            v.fail("expires_at", "The expires_at field must be an ISO 8601 date.")
            expires_at = None
    v.done()
    assert email and name and abilities is not None
    async with offline_app(config) as app:
        operators = OperatorService(app.ctx, app.accounts)
        _, plain = await operators.create_token(email, name, abilities, expires_at)
    # The secret exists only in this output: print it alone on stdout so scripts can capture it.
    print(plain)
    return EXIT_OK


async def backup(config: Config, args: argparse.Namespace) -> int:
    from rosetta.store.db import Database
    from rosetta.store.dbfile import backup_target_problem

    source = config.data_dir / "rosetta.sqlite3"
    if not _is_file(source):
        print(f"rosetta: no database at {source}", file=sys.stderr)
        return EXIT_FAILED
    if bad_text(args.file):  # a name that is not UTF-8: the line reporting it could not be printed
        raise OperatorError("backup refused: the file name is not valid UTF-8 text")
    target = Path(args.file)
    problem = backup_target_problem(source, target)
    if problem is not None:
        raise OperatorError(f"backup refused: {problem}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OperatorError(f"cannot create the directory for {target}: {exc.strerror or exc}") from None
    ensure_data_dir(config.data_dir)  # opening the database writes its -wal and -shm files there
    db = Database(source, synchronous=config.storage.synchronous, readers=1)
    await db.open()
    try:
        await db.backup_to(target)
    except (OSError, sqlite3.Error) as exc:  # e.g. the target's directory is read-only or the disk full
        raise OperatorError(f"cannot write the backup {target}: {exc}") from None
    finally:
        await db.close()
    print(f"backed up {source} to {target} ({_size(target)} bytes)")
    return EXIT_OK


def _is_file(path: Path) -> bool:
    return path.is_file()


def _size(path: Path) -> int:
    return path.stat().st_size


async def doctor(config: Config, args: argparse.Namespace | None = None) -> int:
    from rosetta.doctor import run_checks

    failed = False
    for check in await run_checks(config, DOCTOR_TIMEOUT_S):
        failed = failed or not check.ok
        print(check.line())
    print("some checks failed" if failed else "everything looks fine")
    return EXIT_FAILED if failed else EXIT_OK


COMMANDS: dict[str, Command] = {
    "serve": serve,
    "migrate": migrate,
    "user create": user_create,
    "user plan": user_plan,
    "token create": token_create,
    "backup": backup,
    "doctor": doctor,
}


def command_name(args: argparse.Namespace) -> str:
    command = args.command or "serve"
    action = getattr(args, f"{command}_command", None)
    return f"{command} {action}" if action else command


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"rosetta: bad configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if command_name(args) != "serve":
        logging.getLogger("rosetta").setLevel(logging.WARNING)  # operator commands print their own result
    try:
        if command_name(args) == "serve" and config.server.workers > 1:
            try:  # the parent binds the port before forking the workers
                return serve_workers(config, prepare_workers, lambda config, cluster: serve(config, args, cluster))
            except OSError as exc:
                explained = listen_error(exc, config.server)
                if explained is None:
                    raise
                raise explained from None
        return asyncio.run(COMMANDS[command_name(args)](config, args))
    except ApiError as exc:
        # The services' refusals (a taken email, an unknown ability): the same words the API would use.
        details = "; ".join(f"{field}: {' '.join(problems)}" for field, problems in (exc.errors or {}).items())
        print(f"rosetta: {exc.message}{' ' + details if details else ''}", file=sys.stderr)
        return EXIT_FAILED
    except ConfigError as exc:  # [oauth.NAME] tables when the app is built; server.host when it binds
        print(f"rosetta: bad configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OperatorError as exc:
        print(f"rosetta: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED

