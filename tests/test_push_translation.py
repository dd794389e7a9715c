"""A push shows the recipient's language when the translation is ready in time, else the original."""

import pytest

from tests.support import register, workspace_with
from tests.test_push import EXPO_PATH, Providers, add_device, say

ENGLISH = "@mia Good morning everyone, the deployment went well and the tests are green."


@pytest.fixture
def server_overrides(stub, peer):
    return {"translation": {"provider": "libretranslate", "url": stub.url},
            "push": {"expo_url": f"{peer.url}{EXPO_PATH}", "translation_wait_s": 3.0}}


async def setup(api):
    owen, mia = await register(api, "Owen", "en"), await register(api, "Mia", "es")
    ws = await workspace_with(api, owen, mia)
    await add_device(api, mia, "expo", "ExponentPushToken[mia]")
    return owen, ws


@pytest.mark.gen_test(timeout=30)
async def test_push_waits_for_the_translation_and_sends_it(api, server, peer, clock):
    providers = Providers(peer)
    owen, ws = await setup(api)
    await say(api, owen, ws, ENGLISH)
    assert await server.app.jobs.run_once("push.deliver") == 1  # looked at, translation pending: held back
    assert providers.sent() == []
    await server.app.jobs.run_once("translation.work")
    clock.advance(seconds=1.5)
    await server.app.jobs.run_once("push.deliver")
    [(_, _, _, body)] = providers.sent()
    assert body.startswith("[es]") and "deployment" in body


@pytest.mark.gen_test(timeout=30)
async def test_push_sends_the_original_when_the_translation_is_late(api, server, peer, clock):
    providers = Providers(peer)
    owen, ws = await setup(api)
    await say(api, owen, ws, ENGLISH)
    await server.app.jobs.run_once("push.deliver")
    clock.advance(seconds=1.5)
    await server.app.jobs.run_once("push.deliver")
    assert providers.sent() == []  # still inside the 3 s wait
    clock.advance(seconds=2)
    await server.app.jobs.run_once("push.deliver")
    assert providers.sent() == [("expo", "ExponentPushToken[mia]", "Owen mentioned you", ENGLISH)]
