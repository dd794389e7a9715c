"""Per-reader translation end to end: a real server, a local LibreTranslate-speaking provider stub."""

from __future__ import annotations

import pytest

from tests.support import register, workspace_with
from tests.translation_stub import ProviderStub

SPANISH = "Hola a todos, ¿cómo están hoy? Nos vemos mañana en la oficina."


@pytest.fixture
def stub(io_loop):
    provider = ProviderStub()
    io_loop.run_sync(provider.start)
    yield provider
    io_loop.run_sync(provider.stop)


@pytest.fixture
def server_overrides(stub):
    return {"translation": {"provider": "libretranslate", "url": stub.url, "max_attempts": 3}}


async def team(api):
    ana = await register(api, "Ana", "en")
    bea = await register(api, "Bea", "es")
    ws = await workspace_with(api, ana, bea)
    return ana, bea, ws, f"/workspaces/{ws['id']}/channels/{ws['general']['id']}/messages"


@pytest.mark.gen_test(timeout=30)
async def test_spanish_message_is_pending_then_completed_for_the_english_reader(server, api, stub):
    ana, bea, ws, path = await team(api)
    sent = await api.post(path, {"content": SPANISH}, token=bea.token)
    assert sent.status == 201, sent
    message = sent.json["data"]
    assert message["source_language"] == "es" and message["translation_status"] == "not_needed"
    seen = (await api.get(path, token=ana.token)).json["data"][0]
    assert seen["translation_status"] == "pending" and seen["display_source"] == "original"
    await server.app.jobs.run_once("translation.work")
    seen = (await api.get(path, token=ana.token)).json["data"][0]
    assert seen["translation_status"] == "completed"
    assert seen["display_source"] == "translated" and seen["display_language"] == "en"
    assert seen["display_content"] == f"[en] {SPANISH}"
    assert seen["original_content"] == SPANISH
    own = (await api.get(path, token=bea.token)).json["data"][0]
    assert own["translation_status"] == "not_needed" and own["display_content"] == SPANISH
    assert stub.requests[0]["body"]["q"] == [SPANISH]
    assert stub.requests[0]["body"]["source"] == "es" and stub.requests[0]["body"]["target"] == "en"
