"""Each provider's real code against a local server speaking that provider's protocol; the requests it sends."""

from __future__ import annotations

import itertools
import random

import pytest

from rosetta.config import TranslationConfig
from rosetta.services.translation_queue import BACKOFF_MAX_S, backoff_s
from rosetta.translation.base import ProviderError, build_provider
from rosetta.translation.deepl import DeepL, deepl_target, from_xml, our_code, to_xml
from rosetta.translation.mask import mask, unmask
from rosetta.translation.openai import clean_answer
from tests.support import register
from tests.translation_stub import ProviderStub


def make(stub: ProviderStub, provider: str, **extra):
    return build_provider(TranslationConfig(provider=provider, **{"url": stub.url, **extra}))


@pytest.mark.gen_test
async def test_libretranslate_batches_q_as_a_list_and_splits_at_batch_size(stub):
    provider = make(stub, "libretranslate", api_key="secret", batch_size=2)
    try:
        out = await provider.translate(["uno", "dos", "tres"], "es", "zh-TW")
    finally:
        provider.close()
    assert out == ["[zt] uno", "[zt] dos", "[zt] tres"]
    calls = stub.calls("/translate")
    assert sorted(c["body"]["q"] for c in calls) == [["tres"], ["uno", "dos"]]  # batches may run concurrently
    first = calls[0]
    assert first["method"] == "POST" and first["headers"]["Content-Type"] == "application/json"
    assert {k: first["body"][k] for k in ("source", "target", "format", "api_key")} == {
        "source": "es", "target": "zt", "format": "text", "api_key": "secret"}


@pytest.mark.gen_test
async def test_libretranslate_languages_and_errors(stub):
    provider = make(stub, "libretranslate")
    try:
        assert await provider.languages() == [{"code": "en", "name": "English"}, {"code": "es", "name": "Spanish"}]
        assert stub.calls("/languages")[0]["method"] == "GET"
        await provider.translate(["hola"], "es", "en")
        assert "api_key" not in stub.calls("/translate")[-1]["body"]
        stub.fail = True
        with pytest.raises(ProviderError, match="500"):
            await provider.translate(["hola"], "es", "en")
    finally:
        provider.close()


@pytest.mark.gen_test
async def test_libretranslate_timeout_is_a_provider_error(stub):
    stub.delay_s = 0.5
    provider = make(stub, "libretranslate", timeout_s=0.1)
    try:
        with pytest.raises(ProviderError):
            await provider.translate(["hola"], "es", "en")
    finally:
        provider.close()


@pytest.mark.gen_test
async def test_deepl_sends_the_auth_header_json_and_xml_tag_handling(stub):
    provider = make(stub, "deepl", api_key="stub-key:fx")
    masked = mask("Look at https://x.org & tell @ana <now>")
    try:
        [out] = await provider.translate([masked.text], "en-GB", "pt-BR")
        languages = await provider.languages()
    finally:
        provider.close()
    call = stub.calls("/v2/translate")[0]
    assert call["headers"]["Authorization"] == "DeepL-Auth-Key stub-key:fx"
    assert call["body"]["source_lang"] == "EN" and call["body"]["target_lang"] == "PT-BR"
    assert call["body"]["tag_handling"] == "xml"
    assert call["body"]["text"] == ['Look at <x id="0"/> &amp; tell <x id="1"/> &lt;now&gt;']
    assert unmask(out, masked) == "[PT-BR] Look at https://x.org & tell @ana <now>"
    assert stub.calls("/v2/languages")[0]["query"] == "type=target"
    assert stub.calls("/v2/languages")[0]["headers"]["Authorization"] == "DeepL-Auth-Key stub-key:fx"
    assert languages == [{"code": "en-US", "name": "English (American)"},
                         {"code": "pt-BR", "name": "Portuguese (Brazilian)"}, {"code": "de", "name": "German"}]


@pytest.mark.gen_test
async def test_deepl_wrong_key_is_a_provider_error(stub):
    provider = make(stub, "deepl", api_key="other")
    try:
        with pytest.raises(ProviderError, match="403"):
            await provider.translate(["hello"], "en", "de")
    finally:
        provider.close()


def test_deepl_endpoints_and_codes():
    assert DeepL(TranslationConfig(provider="deepl", api_key="abc:fx")).base == "https://api-free.deepl.com"
    assert DeepL(TranslationConfig(provider="deepl", api_key="abc")).base == "https://api.deepl.com"
    assert DeepL(TranslationConfig(provider="deepl", api_key="abc", url="http://h/")).base == "http://h"
    assert [deepl_target(c) for c in ("en", "en-GB", "pt", "pt-BR", "zh-CN", "zh-TW", "de", "es-419")] == [
        "EN-US", "EN-GB", "PT-PT", "PT-BR", "ZH-HANS", "ZH-HANT", "DE", "ES-419"]
    assert [our_code(c) for c in ("EN-US", "ZH-HANS", "DE")] == ["en-US", "zh-Hans", "de"]
    assert from_xml(to_xml('a & b <x id="0"/> "c"')) == 'a & b <x id="0"/> "c"'


@pytest.mark.gen_test
async def test_openai_one_text_per_call_with_model_prompt_and_bearer(stub):
    provider = make(stub, "openai", url=f"{stub.url}/v1", model="llama3.1", api_key="sk-test", batch_size=8)
    masked = mask("Hola @ana, mira `make test`")
    try:
        out = await provider.translate([masked.text, "adiós"], "es", "en")
        languages = await provider.languages()
    finally:
        provider.close()
    calls = stub.calls("/v1/chat/completions")
    assert len(calls) == 2  # one call per text; they run concurrently, so arrival order is free
    assert sorted(call["body"]["messages"][1]["content"] for call in calls) == sorted([masked.text, "adiós"])
    [call] = [c for c in calls if c["body"]["messages"][1]["content"] == masked.text]
    body = call["body"]
    assert call["headers"]["Authorization"] == "Bearer sk-test"
    assert body["model"] == "llama3.1" and body["temperature"] == 0
    system, user = body["messages"]
    assert system["role"] == "system" and "ONLY" in system["content"] and '<x id="0"/>' in system["content"]
    assert "Spanish" in system["content"] and "English" in system["content"]
    assert user == {"role": "user", "content": masked.text}
    assert unmask(out[0], masked) == "[llm] Hola @ana, mira `make test`"
    assert {"code": "es", "name": "Spanish"} in languages


@pytest.mark.gen_test
async def test_openai_without_a_key_sends_no_authorization(stub):
    provider = make(stub, "openai", model="m")
    try:
        await provider.translate(["hola"], "es", "en")
    finally:
        provider.close()
    assert "Authorization" not in stub.calls("/v1/chat/completions")[0]["headers"]


def test_openai_answer_cleanup():
    assert clean_answer('  "Hello there"\n', "Hola") == "Hello there"
    assert clean_answer('"Quoted"', '"Citado"') == '"Quoted"'


def test_backoff_grows_with_jitter_and_is_capped():
    rng = random.Random(7)
    delays = [backoff_s(n, rng) for n in range(1, 6)]
    assert 2.5 <= delays[0] <= 5.0
    assert all(later > earlier for earlier, later in itertools.pairwise(delays))
    assert backoff_s(40, rng) <= BACKOFF_MAX_S
    assert len({round(backoff_s(3, random.Random(seed)), 6) for seed in range(5)}) > 1  # jitter


@pytest.mark.gen_test(timeout=30)
async def test_provider_none_shows_originals_as_skipped(server, api):
    from tests.support import workspace_with

    ana = await register(api, "Ana", "en")
    bea = await register(api, "Bea", "es")
    ws = await workspace_with(api, ana, bea)
    path = f"/workspaces/{ws['id']}/channels/{ws['general']['id']}/messages"
    sent = await api.post(path, {"content": "Hola a todos, nos vemos mañana en la oficina."}, token=bea.token)
    assert sent.json["data"]["translation_status"] == "not_needed"
    seen = (await api.get(path, token=ana.token)).json["data"][0]
    assert seen["translation_status"] == "skipped" and seen["display_source"] == "original"
    asked = await api.post(f"{path}/{seen['id']}/translate", {"target_language": "en"}, token=ana.token)
    assert asked.status == 200 and asked.json["data"]["translation_status"] == "skipped"
    languages = await api.get("/translation/languages", token=ana.token)
    assert languages.json == {"data": [], "meta": {"provider": "none"}}
    assert await server.app.jobs.run_once("translation.work") == 0
