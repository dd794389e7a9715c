"""The providers' HTTP: connections kept open between calls, and when they must not be (real sockets)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from rosetta.config import TranslationConfig
from rosetta.translation.base import Provider, ProviderError, build_provider
from rosetta.translation.keepalive import BadAnswer, KeepAliveClient
from tests.translation_stub import ProviderStub, client_context


@pytest.fixture
def tls_stub(io_loop):
    """The conftest's ``stub``, serving HTTPS."""
    stub = ProviderStub(tls=True)
    io_loop.run_sync(stub.start)
    yield stub
    io_loop.run_sync(stub.stop)


@contextmanager
def libre(stub: ProviderStub, **extra) -> Iterator[Provider]:
    """A LibreTranslate provider for ``stub``, its connections closed after the block."""
    provider = build_provider(TranslationConfig(provider="libretranslate", url=stub.url, **extra))
    try:
        yield provider
    finally:
        provider.close()


def translate_body(text: str) -> bytes:
    return json.dumps({"q": [text], "source": "es", "target": "en", "format": "text"}).encode()


@pytest.mark.gen_test
async def test_calls_one_after_another_share_one_connection(stub):
    with libre(stub) as provider:
        for word in ("uno", "dos", "tres"):
            assert await provider.translate([word], "es", "en") == [f"[en] {word}"]
        assert await provider.languages()
        assert len(stub.requests) == 4
        assert len(stub.connections()) == 1
        assert provider.http.connections_opened == 1
        assert stub.requests[0]["headers"]["Host"] == f"127.0.0.1:{stub.port}"
        assert stub.requests[0]["headers"]["Accept-Encoding"] == "identity"


@pytest.mark.gen_test
async def test_a_chunked_answer_is_read_whole_and_its_connection_kept(stub):
    stub.chunked = True
    with libre(stub) as provider:
        assert await provider.translate(["uno", "dos"], "es", "en") == ["[en] uno", "[en] dos"]
        assert await provider.translate(["tres"], "es", "en") == ["[en] tres"]
        assert len(stub.connections()) == 1


@pytest.mark.gen_test
async def test_parallel_calls_open_at_most_the_concurrency_and_keep_them(stub):
    stub.delay_s = 0.05  # the calls overlap
    with libre(stub, batch_size=1, concurrency=2) as provider:
        assert await provider.translate(["a", "b", "c", "d"], "es", "en") == ["[en] a", "[en] b", "[en] c", "[en] d"]
        assert len(stub.connections()) == 2
        assert provider.http.idle_count() == 2
        await provider.translate(["e", "f"], "es", "en")
        assert len(stub.connections()) == 2  # the same two again


@pytest.mark.gen_test
async def test_a_connection_the_engine_closed_while_idle_is_replaced_without_an_error(stub):
    with libre(stub) as provider:
        await provider.translate(["uno"], "es", "en")
        await stub.drop_connections()  # as the engine's idle timeout would
        assert await provider.translate(["dos"], "es", "en") == ["[en] dos"]
        assert len(stub.connections()) == 2
        assert len(stub.calls("/translate")) == 2  # the failed try never reached the engine
        assert await provider.translate(["tres"], "es", "en") == ["[en] tres"]
        assert len(stub.connections()) == 2  # the new one is kept


@pytest.mark.gen_test
async def test_an_answer_saying_connection_close_is_not_reused(stub):
    stub.close_each = True
    with libre(stub) as provider:
        await provider.translate(["uno"], "es", "en")
        await provider.translate(["dos"], "es", "en")
        assert len(stub.connections()) == 2
        assert provider.http.idle_count() == 0


@pytest.mark.gen_test
async def test_a_timed_out_call_drops_its_connection(stub):
    with libre(stub, timeout_s=0.1) as provider:
        await provider.translate(["uno"], "es", "en")
        stub.delay_s = 0.5
        with pytest.raises(ProviderError, match=r"no answer within 0\.1 s"):
            await provider.translate(["dos"], "es", "en")
        assert provider.http.idle_count() == 0  # its late answer must not be read as the next call's
        stub.delay_s = 0.0
        assert await provider.translate(["tres"], "es", "en") == ["[en] tres"]
        assert len(stub.connections()) == 2


@pytest.mark.gen_test
async def test_an_answer_over_the_size_limit_is_refused_and_the_next_call_works(stub):
    client = KeepAliveClient(max_idle=1, max_answer_bytes=200)
    try:
        with pytest.raises(BadAnswer, match="size limit"):
            await client.fetch("POST", f"{stub.url}/translate", {}, translate_body("x" * 300), 5.0)
        assert client.idle_count() == 0
        answer = await client.fetch("POST", f"{stub.url}/translate", {}, translate_body("hola"), 5.0)
        assert answer.code == 200 and json.loads(answer.body) == {"translatedText": ["[en] hola"]}
    finally:
        client.close()


@pytest.mark.gen_test
async def test_engine_errors_and_bad_urls_are_provider_errors(stub):
    with libre(stub) as provider:
        stub.fail = True
        with pytest.raises(ProviderError, match="answered 500"):
            await provider.translate(["uno"], "es", "en")
        stub.fail = False
        assert await provider.translate(["dos"], "es", "en") == ["[en] dos"]
        assert len(stub.connections()) == 1  # an error answer is still a whole answer: the connection stays
        for raw in (b"<html>busy</html>", b"[" * 100_000):  # the second makes json.loads raise RecursionError
            stub.answer_raw = raw
            with pytest.raises(ProviderError, match="not JSON"):
                await provider.translate(["tres"], "es", "en")
        stub.answer_raw = b'{"translatedText": ["cuatro \\ud800"]}'  # JSON, but not text SQLite can store
        assert await provider.translate(["cuatro"], "es", "en") == ["cuatro \ufffd"]
    ftp = build_provider(TranslationConfig(provider="libretranslate", url="ftp://127.0.0.1:1"))
    with pytest.raises(ProviderError, match="not an http"):
        await ftp.translate(["uno"], "es", "en")


@pytest.mark.gen_test
async def test_https_engine_certificate_checked_and_connection_kept(tls_stub):
    client = KeepAliveClient(max_idle=1, ssl_context=client_context())
    try:
        for word in ("uno", "dos"):
            answer = await client.fetch("POST", f"{tls_stub.url}/translate", {}, translate_body(word), 5.0)
            assert json.loads(answer.body) == {"translatedText": [f"[en] {word}"]}
        assert len(tls_stub.connections()) == 1
    finally:
        client.close()
    with libre(tls_stub) as untrusting:  # the system's trust store does not know the stub's certificate
        with pytest.raises(ProviderError, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusting.translate(["tres"], "es", "en")
    assert len(tls_stub.calls("/translate")) == 2
