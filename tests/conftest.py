"""Fixtures: a real server per test (pytest-tornado's io_loop runs it), an HTTP client, a clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tornado.ioloop import IOLoop

from rosetta.clock import ManualClock
from tests.authkit import Mailbox
from tests.peers import Receiver
from tests.support import Api, Clients, Server, test_config
from tests.translation_stub import ProviderStub

START = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def server_overrides() -> dict:
    """Override per test module or test: ``{"limits": {"login_per_minute": 2}}``."""
    return {}


@pytest.fixture
def server(io_loop: IOLoop, tmp_path: Path, clock: ManualClock, server_overrides: dict) -> Iterator[Server]:
    running = Server(test_config(tmp_path / "data", **server_overrides), clock)
    io_loop.run_sync(running.start)
    yield running
    io_loop.run_sync(running.stop)


@pytest.fixture
def api(server: Server) -> Iterator[Api]:
    client = Api(server)
    yield client
    client.close()


@pytest.fixture
def rt(server: Server) -> Iterator[Clients]:
    """The test's WebSocket clients to the realtime endpoint, closed at teardown."""
    clients = Clients(server)
    yield clients
    clients.close()


@pytest.fixture
def stub(io_loop: IOLoop) -> Iterator[ProviderStub]:
    """A local server speaking the translation providers' protocols (LibreTranslate, DeepL, OpenAI)."""
    provider = ProviderStub()
    io_loop.run_sync(provider.start)
    yield provider
    io_loop.run_sync(provider.stop)


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    """A running SMTP server (aiosmtpd) on a free port that keeps what it receives."""
    box = Mailbox()
    box.start()
    yield box
    box.stop()


@pytest.fixture
def peer(io_loop: IOLoop) -> Iterator[Receiver]:
    """A local HTTP server that records what it is sent (webhook receivers, push providers)."""
    receiver = Receiver().start()
    yield receiver
    receiver.stop()
