"""Per-reader payloads: each reader gets the message in their own language; translations go to theirs only."""

from __future__ import annotations

import pytest

from tests.support import register, workspace_with
from tests.test_realtime import barrier, channel_path, drain_to_fence, post, until

SPANISH = "Hola a todos, ¿cómo están hoy? Nos vemos mañana en la oficina."


@pytest.fixture
def server_overrides(stub):
    return {"translation": {"provider": "libretranslate", "url": stub.url, "max_attempts": 3}}


@pytest.mark.gen_test(timeout=30)
async def test_each_reader_gets_their_own_rendering_and_translation(server, api, rt):
    ana, bea, eva = await register(api, "Ana", "en"), await register(api, "Bea", "es"), await register(api, "Eva", "es")
    team = await workspace_with(api, ana, bea, eva)
    ws_en, _ = await rt.hello(ana.token)
    ws_es, _ = await rt.hello(eva.token)
    sent = await post(api, channel_path(team), SPANISH, bea.token)
    en = (await until(ws_en, "message.created"))[-1]["data"]
    es = (await until(ws_es, "message.created"))[-1]["data"]
    assert en["id"] == es["id"] == sent["id"]
    assert en["translation_status"] == "pending" and en["display_source"] == "original"
    assert es["translation_status"] == "not_needed" and es["display_content"] == SPANISH
    await server.app.jobs.run_once("translation.work")
    translated = (await until(ws_en, "message.translated"))[-1]["data"]
    assert translated["id"] == sent["id"] and translated["display_language"] == "en"
    assert translated["display_source"] == "translated" and translated["display_content"] == f"[en] {SPANISH}"
    # The Spanish reader is not sent a translation into English.
    fence = await barrier(api, eva)
    seen = await drain_to_fence(ws_es, fence)
    assert [e for e in seen if e["event"] == "message.translated"] == []
    # A late reader replaying the log sees the message as REST shows it to them now: translated.
    late, _ = await rt.hello(ana.token, "after=0")
    replayed = await until(late, "message.translated")
    created = next(e for e in replayed if e["event"] == "message.created")
    assert created["data"]["display_language"] == "en" and created["data"]["display_content"] == f"[en] {SPANISH}"
    assert replayed[-1]["data"]["display_language"] == "en"
