"""Push delivery to local peers speaking Expo's push API, ntfy, and FCM HTTP v1 (with its OAuth token exchange)."""

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from tornado.websocket import websocket_connect

from rosetta.services.fresh import ANY_WRITE
from rosetta.services.push import backoff_s, mentioned_handles
from rosetta.store import push as push_store
from tests.peers import Answer
from tests.support import register, workspace_with

PROJECT = "rosetta-test"
ACCESS_TOKEN = "ya29.local-test-token"
FCM_PATH = f"/v1/projects/{PROJECT}/messages:send"
EXPO_PATH = "/--/api/v2/push/send"


def service_account_file(path, token_uri):
    """A real service-account key file, as Firebase issues them, whose token_uri is our local peer."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path.write_text(json.dumps({
        "type": "service_account", "project_id": PROJECT, "private_key_id": "k1", "private_key": pem,
        "client_email": f"push@{PROJECT}.iam.gserviceaccount.com", "client_id": "1", "token_uri": token_uri,
    }))
    return path


class Providers:
    """Expo, ntfy and FCM in one local peer; tokens listed in ``dead`` are reported unregistered."""

    def __init__(self, peer):
        self.peer = peer
        self.dead = set()
        self.fail_next = []  # paths that answer 500 once
        self.delivered = []
        peer.respond = self.respond

    def respond(self, call):
        answer, delivered = self._answer(call)
        if delivered is not None:
            self.delivered.append(delivered)
        return answer

    def _answer(self, call):
        """(the answer, and what reached the phone: (provider, token, title, body), or None)."""
        if call.path in self.fail_next:
            self.fail_next.remove(call.path)
            return Answer(500, {"error": "try later"}), None
        if call.path == "/token":
            return Answer(200, {"access_token": ACCESS_TOKEN, "expires_in": 3600, "token_type": "Bearer"}), None
        if call.path == FCM_PATH:
            if call.headers.get("Authorization") != f"Bearer {ACCESS_TOKEN}":
                return Answer(401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}}), None
            message = call.json["message"]
            if message["token"] in self.dead:
                error = {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}
                return Answer(404, {"error": {"code": 404, "status": "NOT_FOUND", "details": [error]}}), None
            note = message["notification"]
            return Answer(200, {"name": f"projects/{PROJECT}/messages/1"}), ("fcm", message["token"], note["title"],
                                                                           note["body"])
        if call.path == EXPO_PATH:
            [message] = call.json
            if message["to"] in self.dead:
                return Answer(200, {"data": [{"status": "error", "message": "not registered",
                                              "details": {"error": "DeviceNotRegistered"}}]}), None
            return (Answer(200, {"data": [{"status": "ok", "id": "ticket-1"}]}),
                    ("expo", message["to"], message["title"], message["body"]))
        if call.path.startswith("/ntfy/"):
            url = f"{self.peer.url}{call.path}"
            if url in self.dead:
                return Answer(410, "gone"), None
            return Answer(200, "{}"), ("ntfy", url, call.headers.get("Title"), call.body.decode())
        return Answer(404, "unknown"), None

    def sent(self):
        """(provider, token, title, body) of every push a provider accepted."""
        return sorted(self.delivered)


@pytest.fixture
def providers(peer):
    return Providers(peer)


@pytest.fixture
def server_overrides(peer, tmp_path):
    credentials = service_account_file(tmp_path / "firebase.json", f"{peer.url}/token")
    return {"push": {"expo_url": f"{peer.url}{EXPO_PATH}", "fcm_credentials_file": str(credentials),
                     "fcm_endpoint": f"{peer.url}/v1/projects/{{project_id}}/messages:send",
                     "ntfy_allowed_hosts": ["127.0.0.1"]}}


async def add_device(api, user, provider, token):
    created = await api.post("/devices", {"platform": "android", "provider": provider, "push_token": token},
                             token=user.token)
    assert created.status == 201, created
    return created.json["data"]


async def say(api, user, ws, text):
    sent = await api.post(f"/workspaces/{ws['id']}/channels/{ws['general']['id']}/messages", {"content": text},
                          token=user.token)
    assert sent.status == 201, sent
    return sent.json["data"]


def test_mention_syntax():
    assert mentioned_handles("hi @mia and @Ana.Maria, cc @ops-team. mail me@example.com") == {
        "mia", "anamaria", "opsteam"}
    assert mentioned_handles("no mentions here") == set()


def test_push_backoff():
    assert [backoff_s(n) for n in (1, 2, 3)] == [10.0, 20.0, 40.0] and backoff_s(40) == 3600


@pytest.mark.gen_test(timeout=60)
async def test_mention_reaches_every_provider(api, server, peer, providers):
    owen, mia, max_ = await register(api, "Owen"), await register(api, "Mia Lee", "de"), await register(api, "Max")
    ws = await workspace_with(api, owen, mia, max_)
    ntfy_url = f"{peer.url}/ntfy/up-mia"
    for provider, token in (("expo", "ExponentPushToken[mia]"), ("ntfy", ntfy_url), ("fcm", "fcm-mia")):
        await add_device(api, mia, provider, token)
    await add_device(api, max_, "expo", "ExponentPushToken[max]")  # not mentioned: no push
    await add_device(api, owen, "expo", "ExponentPushToken[owen]")  # the author: never pushed
    await say(api, owen, ws, "@mialee the backup is done, @owen")
    assert await server.app.jobs.run_once("push.deliver") == 3
    text = "@mialee the backup is done, @owen"
    assert providers.sent() == sorted([
        ("expo", "ExponentPushToken[mia]", "Owen mentioned you", text),
        ("ntfy", ntfy_url, "Owen mentioned you", text),
        ("fcm", "fcm-mia", "Owen mentioned you", text),
    ])
    # FCM went through the OAuth service-account exchange and HTTP v1's payload shape.
    assert peer.to("/token")
    [fcm] = peer.to(FCM_PATH)
    assert fcm.json["message"]["data"]["channel_id"] == ws["general"]["id"] and fcm.json["validate_only"] is False
    # Sent once: the outbox is empty afterwards.
    assert await server.app.jobs.run_once("push.deliver") == 0
    # No mention, no push.
    await say(api, owen, ws, "nobody in particular")
    assert await server.app.jobs.run_once("push.deliver") == 0


@pytest.mark.gen_test(timeout=60)
async def test_delivering_pushes_keeps_the_cached_reads(api, server, peer, providers):
    """The outbox is read by no cache: sending a push (and dropping its row) must not throw the
    history pages, channel views and the hub's readers away, as a write that declares nothing does."""
    owen, mia = await register(api, "Owen"), await register(api, "Mia Lee")
    ws = await workspace_with(api, owen, mia)
    await add_device(api, mia, "ntfy", f"{peer.url}/ntfy/up-mia")
    await say(api, owen, ws, "@mialee the backup is done")
    stamp = server.app.db.freshness(ANY_WRITE)
    assert await server.app.jobs.run_once("push.deliver") == 1
    assert len(providers.delivered) == 1
    assert server.app.db.freshness(ANY_WRITE) == stamp


@pytest.mark.gen_test(timeout=60)
async def test_direct_message_pushes_only_when_offline(api, server, providers):
    ana, ben = await register(api, "Ana"), await register(api, "Ben")
    await workspace_with(api, ana, ben)  # direct chat needs a shared workspace
    await add_device(api, ben, "expo", "ExponentPushToken[ben]")
    await add_device(api, ana, "expo", "ExponentPushToken[ana]")
    convo = await api.post("/direct-conversations", {"participant_user_id": ben.id}, token=ana.token)
    assert convo.status in (200, 201), convo
    path = f"/direct-conversations/{convo.json['data']['id']}/messages"
    assert (await api.post(path, {"content": "lunch?"}, token=ana.token)).status == 201
    await server.app.jobs.run_once("push.deliver")
    assert providers.sent() == [("expo", "ExponentPushToken[ben]", "Ana", "lunch?")]
    # Ben connected over the realtime WebSocket: the app shows it live, no push.
    ws_conn = await websocket_connect(f"ws://127.0.0.1:{server.port}/api/v1/realtime?access_token={ben.token}")
    try:
        assert json.loads(await ws_conn.read_message())["type"] == "hello"
        assert server.app.hub.is_online(ben.id)
        assert (await api.post(path, {"content": "still there?"}, token=ana.token)).status == 201
        assert await server.app.jobs.run_once("push.deliver") == 0
    finally:
        ws_conn.close()
    assert len(providers.sent()) == 1


@pytest.mark.gen_test(timeout=60)
async def test_unregistered_tokens_remove_the_device(api, server, peer, providers):
    owen, mia = await register(api, "Owen"), await register(api, "Mia")
    ws = await workspace_with(api, owen, mia)
    ntfy_url = f"{peer.url}/ntfy/old"
    providers.dead |= {"ExponentPushToken[old]", ntfy_url, "fcm-old"}
    for provider, token in (("expo", "ExponentPushToken[old]"), ("ntfy", ntfy_url), ("fcm", "fcm-old"),
                            ("expo", "ExponentPushToken[live]")):
        await add_device(api, mia, provider, token)
    await say(api, owen, ws, "@mia ping")
    await server.app.jobs.run_once("push.deliver")
    left = (await api.get("/me/devices", token=mia.token)).json["data"]
    assert [d["provider"] for d in left] == ["expo"] and len(left) == 1
    assert [s[1] for s in providers.sent()] == ["ExponentPushToken[live]"]


@pytest.mark.gen_test(timeout=60)
async def test_provider_trouble_retries_with_backoff(api, server, providers, clock):
    owen, mia = await register(api, "Owen"), await register(api, "Mia")
    ws = await workspace_with(api, owen, mia)
    await add_device(api, mia, "expo", "ExponentPushToken[mia]")
    providers.fail_next.append(EXPO_PATH)
    await say(api, owen, ws, "@mia retry me")
    await server.app.jobs.run_once("push.deliver")
    assert providers.sent() == []  # the 500 answer is not a delivery
    assert await server.app.jobs.run_once("push.deliver") == 0  # not due before the backoff
    clock.advance(seconds=backoff_s(1) + 1)
    assert await server.app.jobs.run_once("push.deliver") == 1
    assert providers.sent() == [("expo", "ExponentPushToken[mia]", "Owen mentioned you", "@mia retry me")]


@pytest.mark.gen_test(timeout=60)
async def test_a_transferred_device_gets_nothing_queued_for_its_previous_owner(api, server, providers):
    owen, mia, otto = await register(api, "Owen"), await register(api, "Mia"), await register(api, "Otto")
    ws = await workspace_with(api, owen, mia)
    await add_device(api, mia, "expo", "ExponentPushToken[shared]")
    await say(api, owen, ws, "@mia private note")
    await add_device(api, otto, "expo", "ExponentPushToken[shared]")  # the phone now signs in as Otto
    assert await server.app.jobs.run_once("push.deliver") == 0
    assert providers.sent() == []


@pytest.mark.gen_test(timeout=60)
async def test_an_unexpected_sender_error_counts_as_an_attempt_and_ends_failed(api, server, clock):
    # A credentials file that is not JSON makes google-auth raise (JSONDecodeError) inside the FCM sender: that
    # row must not stay due forever with its attempts unchanged (a retry loop without a cap).
    Path(server.app.config.push.fcm_credentials_file).write_text("not json")  # noqa: ASYNC240 - tiny test file
    owen, mia = await register(api, "Owen"), await register(api, "Mia")
    ws = await workspace_with(api, owen, mia)
    await add_device(api, mia, "fcm", "fcm-mia")
    await say(api, owen, ws, "@mia are you there")
    max_attempts = server.app.config.push.max_attempts
    for attempt in range(1, max_attempts + 1):
        assert await server.app.jobs.run_once("push.deliver") == 1
        [row] = await push_store.for_user(server.app.db.reader, mia.id)
        assert row["attempts"] == attempt and "unexpected error" in row["last_error"]
        clock.advance(seconds=backoff_s(attempt) + 1)
    assert row["status"] == "failed"
    assert await server.app.jobs.run_once("push.deliver") == 0
    # A failed push is kept a week (to answer "why did I get nothing?"), then trimmed by the hourly job.
    clock.advance(days=6)
    await say(api, owen, ws, "@mia still there?")
    assert await server.app.jobs.run_once("push.deliver") == 1
    assert await server.app.jobs.run_once("push.trim") == 0
    clock.advance(days=2)
    assert await server.app.jobs.run_once("push.trim") == 1
    [row] = await push_store.for_user(server.app.db.reader, mia.id)
    assert row["attempts"] == 1  # only the new one is left


@pytest.mark.gen_test(timeout=60)
async def test_a_reader_removed_before_delivery_gets_no_push(api, server, providers):
    # Who may see the message is decided again at send time, as the hub does for events: a member
    # removed between the mention and the push job must not get the text on their lock screen.
    owen, mia = await register(api, "Owen"), await register(api, "Mia")
    ws = await workspace_with(api, owen, mia)
    await add_device(api, mia, "expo", "ExponentPushToken[mia]")
    await say(api, owen, ws, "@mia the new salary table")
    members = (await api.get(f"/workspaces/{ws['id']}/members", token=owen.token)).json["data"]
    [member] = [m for m in members if m["user"]["id"] == mia.id]
    assert (await api.delete(f"/workspaces/{ws['id']}/members/{member['id']}", token=owen.token)).status == 204
    await server.app.jobs.run_once("push.deliver")
    assert providers.sent() == []
    assert await push_store.for_user(server.app.db.reader, mia.id) == []
