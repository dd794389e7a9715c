"""The `rosetta` command: serve, migrate, user create|plan, token create, backup, doctor.

Owns argument parsing, turning a bad configuration into one line on stderr with exit code 2, and
the operator commands. Those reuse the services through a ``RosettaApp`` whose database is open but
which does not listen, so a user made here obeys the same rules as one made over HTTP. Every
command works while ``rosetta serve`` runs on the same data directory (SQLite serialises the two
writers with its busy timeout).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import getpass
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rosetta import __version__
from rosetta.clock import iso, parse_iso
from rosetta.cluster import Cluster
from rosetta.config import Config, ConfigError, load_config
from rosetta.errors import ApiError
from rosetta.workers import serve_workers

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from rosetta.app import RosettaApp

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
DOCTOR_TIMEOUT_S = 3.0  # a reachable mail server or provider answers well within this on a LAN

Command = Callable[[Config, argparse.Namespace], Awaitable[int]]


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

    app = RosettaApp(config, cluster=cluster)
    await app.start()
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


async def migrate(config: Config, args: argparse.Namespace | None = None) -> int:
    from rosetta.store.db import Database

    db = Database(config.data_dir / "rosetta.sqlite3", synchronous=config.storage.synchronous, readers=1)
    await db.open()
    await db.close()
    print(f"database at {db.path} is up to date")
    return EXIT_OK


@asynccontextmanager
async def offline_app(config: Config) -> AsyncIterator[RosettaApp]:
    """The application's services over an open database, without listening or running jobs."""
    from rosetta.app import RosettaApp

    app = RosettaApp(config, run_jobs=False)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    await app.db.open()
    try:
        yield app
    finally:
        await app.db.close()


def read_password(given: str | None) -> str:
    if given is not None:
        return given
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != first:
            raise ApiError("The passwords do not match.")
        return first
    return sys.stdin.readline().rstrip("\r\n")


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
    from rosetta.services.operators import OperatorService

    async with offline_app(config) as app:
        user = await OperatorService(app.ctx, app.accounts).set_room_plan(args.email.strip().lower(), args.plan)
    print(f"user {user['id']} <{user['email']}> now has the {user['room_plan']} plan")
    return EXIT_OK


async def token_create(config: Config, args: argparse.Namespace) -> int:
    from rosetta.errors import Invalid
    from rosetta.services.operators import OperatorService

    expires_at = None
    if args.expires_at:
        try:
            moment = parse_iso(args.expires_at)
        except (ValueError, OverflowError):
            raise Invalid.one("expires_at", "The expires_at field must be an ISO 8601 date.") from None
        expires_at = iso(moment.astimezone(UTC))
    async with offline_app(config) as app:
        operators = OperatorService(app.ctx, app.accounts)
        _, plain = await operators.create_token(args.email.strip().lower(), args.name, args.abilities, expires_at)
    # The secret exists only in this output: print it alone on stdout so scripts can capture it.
    print(plain)
    return EXIT_OK


async def backup(config: Config, args: argparse.Namespace) -> int:
    from rosetta.store.db import Database

    source = config.data_dir / "rosetta.sqlite3"
    if not _is_file(source):
        print(f"rosetta: no database at {source}", file=sys.stderr)
        return EXIT_FAILED
    db = Database(source, synchronous=config.storage.synchronous, readers=1)
    await db.open()
    try:
        target = Path(args.file)
        await db.backup_to(target)
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
            return serve_workers(config, prepare_workers, lambda config, cluster: serve(config, args, cluster))
        return asyncio.run(COMMANDS[command_name(args)](config, args))
    except ApiError as exc:
        # The services' refusals (a taken email, an unknown ability): the same words the API would use.
        details = "; ".join(f"{field}: {' '.join(problems)}" for field, problems in (exc.errors or {}).items())
        print(f"rosetta: {exc.message}{' ' + details if details else ''}", file=sys.stderr)
        return EXIT_FAILED
    except ConfigError as exc:  # [oauth.NAME] tables are validated when the app is built
        print(f"rosetta: bad configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_FAILED

