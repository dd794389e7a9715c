"""Local protocol peers for integration tests: an HTTP receiver on loopback that records every call.

One ``Receiver`` serves any path; ``respond`` decides each answer, so a test can play an outgoing
webhook receiver, Expo's push API, a ntfy server, or FCM's OAuth token endpoint and HTTP v1 API.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int = 200
    body: Any = "ok"
    headers: dict[str, str] = field(default_factory=dict)


class Receiver:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        # (call) -> Answer; the default answers 200 "ok".
        self.respond: Callable[[Call], Answer] = lambda call: Answer()
        self.server: tornado.httpserver.HTTPServer | None = None
        self.port = 0

    def start(self) -> Receiver:
        receiver = self

        class Handler(tornado.web.RequestHandler):
            def _any(self) -> None:
                call = Call(self.request.method or "", self.request.path, dict(self.request.headers),
                            self.request.body or b"")
                receiver.calls.append(call)
                answer = receiver.respond(call)
                self.set_status(answer.status)
                for name, value in answer.headers.items():
                    self.set_header(name, value)
                if isinstance(answer.body, dict | list):
                    self.set_header("Content-Type", "application/json")
                    self.finish(json.dumps(answer.body))
                else:
                    self.finish(answer.body)

            def post(self, *_: str) -> None:
                self._any()

            def get(self, *_: str) -> None:
                self._any()

        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        self.server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/(.*)", Handler)]))
        self.server.add_sockets(sockets)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def to(self, path: str) -> list[Call]:
        return [call for call in self.calls if call.path == path]
