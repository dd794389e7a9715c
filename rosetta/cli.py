"""The `rosetta` command: serve, migrate, user create, token create, backup, doctor.

Owns argument parsing and turning a bad configuration into one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from rosetta import __version__
from rosetta.config import Config, ConfigError, load_config

EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rosetta", description="Rosetta: team chat, every message in your language.")
    parser.add_argument("--version", action="version", version=f"rosetta {__version__}")
    parser.add_argument("--config", help="path to rosetta.toml (default: $ROSETTA_CONFIG or ./rosetta.toml)")
    parser.add_argument("--data-dir", help="where the SQLite file and uploads live (storage.data_dir)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the server: HTTP, WebSocket, SSE and background jobs")
    serve.add_argument("--host", help="address to listen on (server.host)")
    serve.add_argument("--port", type=int, help="port to listen on (server.port)")
    commands.add_parser("migrate", help="apply database migrations and exit")
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    overrides: dict[str, dict[str, Any]] = {"server": {}, "storage": {}}
    if getattr(args, "host", None):
        overrides["server"]["host"] = args.host
    if getattr(args, "port", None) is not None:
        overrides["server"]["port"] = args.port
    if args.data_dir:
        overrides["storage"]["data_dir"] = args.data_dir
    return load_config(args.config, overrides=overrides)


async def serve(config: Config) -> None:
    from rosetta.app import RosettaApp

    app = RosettaApp(config)
    await app.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    logging.getLogger("rosetta").info("shutting down")
    await app.stop()


async def migrate(config: Config) -> None:
    from rosetta.store.db import Database

    db = Database(config.data_dir / "rosetta.sqlite3", synchronous=config.storage.synchronous, readers=1)
    await db.open()
    await db.close()
    print(f"database at {db.path} is up to date")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"rosetta: bad configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    command = args.command or "serve"
    if command == "serve":
        asyncio.run(serve(config))
    elif command == "migrate":
        asyncio.run(migrate(config))
    return 0
