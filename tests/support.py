"""Test support: a real Rosetta server on a free port over a real SQLite file, and an HTTP client.

``Server`` starts the real application in the test's IOLoop (pytest-tornado's ``io_loop``), with a
``ManualClock`` the test moves and background jobs off (tests call ``app.jobs.run_once``).
``Api`` talks to it over real HTTP, ``Clients`` over real WebSockets.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from rosetta.app import RosettaApp
from rosetta.clock import ManualClock
from rosetta.cluster import Cluster
from rosetta.config import Config, load_config

BCRYPT_TEST_ROUNDS = 4  # the minimum: tests check behaviour, not hashing cost


def test_config(data_dir: Path, **sections: dict[str, Any]) -> Config:
    overrides: dict[str, dict[str, Any]] = {
        "server": {"port": 0, "host": "127.0.0.1"},
        "storage": {"data_dir": str(data_dir)},
        "auth": {"bcrypt_rounds": BCRYPT_TEST_ROUNDS},
    }
    for section, values in sections.items():
        overrides.setdefault(section, {}).update(values)
    return load_config(None, env={}, overrides=overrides, search=False)


class Server:
    """One running Rosetta; ``restart()`` stops it and starts a new app over the same files."""

    def __init__(self, config: Config, clock: ManualClock, cluster: Cluster | None = None) -> None:
        self.config = config
        self.clock = clock
        self.cluster = cluster  # one of several workers (tests/test_workers.py)
        self.app: RosettaApp | None = None

    async def start(self) -> RosettaApp:
        self.app = RosettaApp(self.config, clock=self.clock, run_jobs=False, cluster=self.cluster)
        await self.app.start()
        return self.app

    async def stop(self) -> None:
        if self.app is not None:
            await self.app.stop()
            self.app = None

    async def restart(self) -> RosettaApp:
        await self.stop()
        return await self.start()

    @property
    def port(self) -> int:
        assert self.app is not None and self.app.port is not None
        return self.app.port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Response:
    status: int
    headers: Any
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body[:300]!r}>"


class Api:
    """Real HTTP against the server: ``await api.post("/workspaces", {"name": "x"}, token=t)``."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.http = AsyncHTTPClient(force_instance=True, max_clients=64)

    def close(self) -> None:
        self.http.close()

    async def request(self, method: str, path: str, body: Any = None, *, token: str | None = None,
                      headers: dict[str, str] | None = None, raw: bytes | None = None,
                      timeout: float = 20) -> Response:
        all_headers = {"Accept": "application/json"}
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        payload: bytes | None = raw
        if body is not None:
            payload = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        if payload is None and method in ("POST", "PUT", "PATCH"):
            payload = b""
        url = path if path.startswith("http") else f"{self.server.base_url}/api/v1{path}"
        request = HTTPRequest(url, method=method, headers=all_headers, body=payload,
                              allow_nonstandard_methods=True, request_timeout=timeout, follow_redirects=False)
        result = await self.http.fetch(request, raise_error=False)
        if result.code == 599 and result.error is not None:
            raise result.error
        return Response(result.code, result.headers, result.body or b"")

    async def get(self, path: str, **kw: Any) -> Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Response:
        return await self.request("POST", path, body, **kw)

    async def put(self, path: str, body: Any = None, **kw: Any) -> Response:
        return await self.request("PUT", path, body, **kw)

    async def patch(self, path: str, body: Any = None, **kw: Any) -> Response:
        return await self.request("PATCH", path, body, **kw)

    async def delete(self, path: str, **kw: Any) -> Response:
        return await self.request("DELETE", path, **kw)


@dataclass
class User:
    id: str
    token: str
    email: str
    name: str
    password: str


async def register(api: Api, name: str = "Ana", language: str = "en", email: str | None = None,
                   password: str = "correct-horse-1") -> User:
    email = email or f"{name.lower().replace(' ', '.')}@example.test"
    response = await api.post("/auth/app/register", {
        "name": name, "email": email, "password": password, "password_confirmation": password,
        "preferred_language": language, "device_name": "tests",
    })
    assert response.status == 200, response
    data = response.json
    return User(data["user"]["id"], data["access_token"], email, name, password)


async def workspace_with(api: Api, owner: User, *members: User, name: str = "Team") -> dict[str, Any]:
    """A workspace owned by ``owner`` with ``members`` joined through an invite; returns it with ``general``."""
    created = await api.post("/workspaces", {"name": name}, token=owner.token)
    assert created.status == 201, created
    workspace = created.json["data"]
    if members:
        invite = await api.post(f"/workspaces/{workspace['id']}/invites", {"expires_in_days": 1}, token=owner.token)
        assert invite.status == 201, invite
        for member in members:
            accepted = await api.post(f"/invites/{invite.json['data']['code']}/accept", token=member.token)
            assert accepted.status == 200, accepted
    channels = await api.get(f"/workspaces/{workspace['id']}/channels", token=owner.token)
    workspace["general"] = next(c for c in channels.json["data"] if c["slug"] == "general")
    return workspace


class Clients:
    """Every socket a test opens, closed at teardown (an unclosed client is a ResourceWarning)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.open: list[WebSocketClientConnection] = []

    async def connect(self, token: str | None = None, query: str = "",
                      headers: dict[str, str] | None = None) -> WebSocketClientConnection:
        params = [f"access_token={token}"] if token else []
        if query:
            params.append(query)
        url = f"ws://127.0.0.1:{self.server.port}/api/v1/realtime" + ("?" + "&".join(params) if params else "")
        ws = await websocket_connect(HTTPRequest(url, headers=headers or {}))
        self.open.append(ws)
        return ws

    async def hello(self, token: str, query: str = "") -> tuple[WebSocketClientConnection, dict[str, Any]]:
        ws = await self.connect(token, query)
        first = await frame(ws)
        assert first is not None and first["type"] == "hello", first
        return ws, first

    def close(self) -> None:
        for ws in self.open:
            ws.close()


async def frame(ws: WebSocketClientConnection, timeout: float = 5.0) -> dict[str, Any] | None:
    """The next frame, or None when the server closed the socket."""
    raw = await asyncio.wait_for(ws.read_message(), timeout)
    return None if raw is None else json.loads(raw)
