"""Local HTTP servers that speak the translation providers' real protocols, for tests and the benchmark.

``ProviderStub`` answers LibreTranslate (``POST /translate``, ``GET /languages``), DeepL
(``POST /v2/translate``, ``GET /v2/languages``) and OpenAI-compatible (``POST /v1/chat/completions``)
requests by prefixing each text with ``[target] ``, records every request it gets, and can be told to
fail (HTTP 500), to drop placeholders, to answer after a delay, to close each connection after one
answer, or to answer in chunked encoding. It serves plain HTTP, or HTTPS with ``tests/tls/stub.crt``
(a self-signed certificate for 127.0.0.1 that ``client_context`` trusts). Each request records the
client's address: the connection it came on.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web

from rosetta.translation.mask import PLACEHOLDER_RE

TLS_DIR = Path(__file__).parent / "tls"


def client_context() -> ssl.SSLContext:
    """A client context that trusts the stub's certificate (and nothing else)."""
    return ssl.create_default_context(cafile=str(TLS_DIR / "stub.crt"))


class _Base(tornado.web.RequestHandler):
    def initialize(self, stub: ProviderStub) -> None:
        self.stub = stub

    def record(self) -> Any:
        body: Any = None
        if self.request.body:
            try:
                body = json.loads(self.request.body)
            except ValueError:
                body = self.request.body.decode()
        self.stub.requests.append({"method": self.request.method, "path": self.request.path,
                                   "query": self.request.query, "headers": dict(self.request.headers), "body": body,
                                   "connection": self.request.connection.stream.socket.getpeername()})
        if self.stub.close_each:
            self.set_header("Connection", "close")  # Tornado closes the connection after this answer
        return body

    async def gate(self) -> bool:
        if self.stub.delay_s:
            await asyncio.sleep(self.stub.delay_s)
        if self.stub.fail:
            self.set_status(500)
            self.finish({"error": "stub told to fail"})
            return False
        if self.stub.answer_raw is not None:
            self.set_header("Content-Type", "application/json")
            self.finish(self.stub.answer_raw)
            return False
        return True

    def fake(self, text: str, target: str) -> str:
        self.stub.texts += 1
        if self.stub.drop_placeholders:
            text = PLACEHOLDER_RE.sub("", text)
        return f"[{target}] {text}"


class LibreTranslate(_Base):
    async def post(self) -> None:
        body = self.record()
        if not await self.gate():
            return
        q = body["q"]
        texts = [self.fake(t, body["target"]) for t in (q if isinstance(q, list) else [q])]
        answer = json.dumps({"translatedText": texts if isinstance(q, list) else texts[0]})
        if self.stub.chunked:  # flushed before it ends: Tornado frames it with chunked encoding
            self.set_header("Content-Type", "application/json")
            self.write(answer[:10])
            await self.flush()
            answer = answer[10:]
        self.finish(answer)


class LibreLanguages(_Base):
    async def get(self) -> None:
        self.record()
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps([{"code": "en", "name": "English", "targets": ["es"]},
                                {"code": "es", "name": "Spanish", "targets": ["en"]}]))


class DeepLTranslate(_Base):
    async def post(self) -> None:
        body = self.record()
        if self.request.headers.get("Authorization") != f"DeepL-Auth-Key {self.stub.key}":
            self.set_status(403)
            self.finish({"message": "Wrong key"})
            return
        if not await self.gate():
            return
        self.finish({"translations": [{"detected_source_language": body.get("source_lang", "EN"),
                                       "text": self.fake(t, body["target_lang"])} for t in body["text"]]})


class DeepLLanguages(_Base):
    async def get(self) -> None:
        self.record()
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps([{"language": "EN-US", "name": "English (American)"},
                                {"language": "PT-BR", "name": "Portuguese (Brazilian)"},
                                {"language": "DE", "name": "German"}]))


class ChatCompletions(_Base):
    async def post(self) -> None:
        body = self.record()
        if not await self.gate():
            return
        text = body["messages"][-1]["content"]
        self.finish({"id": "chatcmpl-1", "object": "chat.completion", "model": body.get("model"),
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": self.fake(text, "llm")}}]})


class ProviderStub:
    def __init__(self, key: str = "stub-key:fx", tls: bool = False) -> None:
        self.key = key
        self.requests: list[dict[str, Any]] = []
        self.texts = 0  # texts translated (a batch of 3 counts 3)
        self.fail = False
        self.answer_raw: bytes | None = None  # set: every call is answered 200 with exactly these bytes
        self.drop_placeholders = False
        self.delay_s = 0.0
        self.close_each = False
        self.chunked = False  # LibreTranslate answers in chunked encoding
        self.tls = tls
        self.server: tornado.httpserver.HTTPServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def connections(self) -> set[Any]:
        """The distinct connections requests came on."""
        return {r["connection"] for r in self.requests}

    async def drop_connections(self) -> None:
        """Close every open client connection from the server's side, as an idle timeout would."""
        assert self.server is not None
        await self.server.close_all_connections()

    def calls(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == path]

    async def start(self) -> None:
        args = {"stub": self}
        app = tornado.web.Application([
            ("/translate", LibreTranslate, args), ("/languages", LibreLanguages, args),
            ("/v2/translate", DeepLTranslate, args), ("/v2/languages", DeepLLanguages, args),
            ("/v1/chat/completions", ChatCompletions, args),
        ])
        ssl_options = None
        if self.tls:
            ssl_options = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_options.load_cert_chain(TLS_DIR / "stub.crt", TLS_DIR / "stub.key")
        self.server = tornado.httpserver.HTTPServer(app, ssl_options=ssl_options)
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
        self.port = sockets[0].getsockname()[1]
        self.server.add_sockets(sockets)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            await self.server.close_all_connections()
            self.server = None
