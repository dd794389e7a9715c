"""Test helpers for sign-in tests: a real SMTP server (aiosmtpd) and a cookie-keeping web client."""

from __future__ import annotations

import email
import email.policy
import re
import socket
import threading
from email.message import EmailMessage
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller

from tests.support import Api, Response


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Mailbox:
    """An in-process SMTP server on a fixed free port; ``stop()``/``start()`` simulate an outage."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[EmailMessage] = []
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith("refused"):  # a recipient this relay rejects: that mail alone fails
            return "550 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.messages.append(parsed)  # type: ignore[arg-type]
        return "250 Message accepted for delivery"

    def start(self) -> None:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self.messages if m["To"] == address]

    def last_body(self, address: str) -> str:
        found = self.to(address)
        assert found, f"no mail to {address}; got {[m['To'] for m in self.messages]}"
        return found[-1].get_content()

    def code(self, address: str) -> str:
        """The 6-digit code alone on a line of the latest mail to ``address``."""
        match = re.search(r"^(\d{6})\r?$", self.last_body(address), re.MULTILINE)
        assert match, self.last_body(address)
        return match.group(1)

    def link(self, address: str, contains: str) -> str:
        for line in self.last_body(address).splitlines():
            if contains in line and line.startswith("http"):
                return line.strip()
        raise AssertionError(f"no link with {contains!r} in {self.last_body(address)!r}")


def smtp_overrides(box: Mailbox, **extra: dict[str, Any]) -> dict[str, dict[str, Any]]:
    sections: dict[str, dict[str, Any]] = {"mail": {"mode": "smtp", "host": "127.0.0.1", "port": box.port,
                                                    "timeout_s": 5.0}}
    for name, values in extra.items():
        sections.setdefault(name, {}).update(values)
    return sections


async def deliver(server: Any) -> None:
    await server.app.jobs.run_once("mail.send")


def query_of(link: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(link).query).items()}


class Browser:
    """A cookie jar over ``Api``: sends its cookies, keeps what the server sets, echoes XSRF like axios."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.cookies: dict[str, str] = {}

    async def request(self, method: str, path: str, body: Any = None, *, xsrf: str | bool | None = True,
                      headers: dict[str, str] | None = None) -> Response:
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if xsrf is True and "XSRF-TOKEN" in self.cookies:
            sent["X-XSRF-TOKEN"] = self.cookies["XSRF-TOKEN"]
        elif isinstance(xsrf, str):
            sent["X-XSRF-TOKEN"] = xsrf
        response = await self.api.request(method, path, body, headers=sent)
        for header in response.headers.get_list("Set-Cookie"):
            jar = SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0" or morsel["expires"].startswith("Thu, 01 Jan 1970") or not morsel.value:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return response

    async def get(self, path: str, **kw: Any) -> Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Response:
        return await self.request("POST", path, body, **kw)

    async def csrf(self) -> str:
        response = await self.get("/csrf-cookie")
        assert response.status == 204, response
        return self.cookies["XSRF-TOKEN"]
