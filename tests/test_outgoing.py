"""Outgoing webhooks: signed delivery from the outbox, retries with backoff, and the SSRF guard."""

import asyncio
import hashlib
import hmac
import json
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import ip_address

import pytest

from rosetta.services import ssrf
from rosetta.services.fresh import ANY_WRITE
from rosetta.services.outgoing import backoff_s
from rosetta.store.dbfile import apply_migrations
from tests.peers import Answer
from tests.rest_support import events, make_team, member_id
from tests.support import register, workspace_with


@pytest.fixture
def server_overrides(peer):
    # The receiver runs on loopback, so the admin allows exactly that address (and nothing else).
    return {"webhooks": {"allowed_hosts": ["127.0.0.1"]}}


async def subscribe(api, owner, ws, url, event_types=("message.created",)):
    created = await api.post(f"/workspaces/{ws['id']}/outgoing-webhooks",
                             {"name": "receiver", "url": url, "event_types": list(event_types)}, token=owner.token)
    assert created.status == 201, created
    return created.json["data"]


async def say(api, user, ws, text):
    sent = await api.post(f"/workspaces/{ws['id']}/channels/{ws['general']['id']}/messages", {"content": text},
                          token=user.token)
    assert sent.status == 201, sent
    return sent.json["data"]


async def deliveries(api, owner, ws, hook):
    listed = await api.get(f"/workspaces/{ws['id']}/outgoing-webhooks/{hook['id']}/deliveries", token=owner.token)
    assert listed.status == 200, listed
    return listed.json["data"]


def verify(secret, call):
    """What a receiver does: recompute the HMAC of "<timestamp>.<body>" and compare in constant time."""
    timestamp = call.headers["X-Rosetta-Timestamp"]
    expected = "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + call.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, call.headers["X-Rosetta-Signature"])


@pytest.mark.gen_test(timeout=30)
async def test_signed_delivery_to_a_local_receiver(api, server, peer, clock):
    owner, member, outsider = await register(api, "Owen"), await register(api, "Mia"), await register(api, "Otto")
    ws = await workspace_with(api, owner, member)
    hook = await subscribe(api, owner, ws, f"{peer.url}/hook")
    assert hook["secret"] and hook["event_types"] == ["message.created"]
    # Admins only: members 403, outsiders 404.
    assert (await api.get(f"/workspaces/{ws['id']}/outgoing-webhooks", token=member.token)).status == 403
    assert (await api.get(f"/workspaces/{ws['id']}/outgoing-webhooks", token=outsider.token)).status == 404
    listed = await api.get(f"/workspaces/{ws['id']}/outgoing-webhooks", token=owner.token)
    assert [h["id"] for h in listed.json["data"]] == [hook["id"]] and "secret" not in listed.json["data"][0]

    message = await say(api, member, ws, "ship it")
    assert peer.calls == []  # nothing leaves before the job runs
    assert await server.app.jobs.run_once("webhooks.deliver") == 1
    [call] = peer.to("/hook")
    assert verify(hook["secret"], call)
    assert not verify("another-secret", call)
    assert call.headers["X-Rosetta-Event"] == "message.created"
    assert int(call.headers["X-Rosetta-Timestamp"]) == int(clock.now().timestamp())
    body = call.json
    assert body["event"] == "message.created" and body["workspace_id"] == ws["id"]
    assert body["data"]["id"] == message["id"] and body["data"]["original_content"] == "ship it"
    assert call.headers["X-Rosetta-Delivery"] == body["id"]
    [row] = await deliveries(api, owner, ws, hook)
    assert row["status"] == "delivered" and row["attempts"] == 1 and row["response_status"] == 200
    # Delivered once: another run sends nothing more.
    assert await server.app.jobs.run_once("webhooks.deliver") == 0
    assert len(peer.calls) == 1


@pytest.mark.gen_test(timeout=30)
async def test_delivering_keeps_the_cached_reads(api, server, peer):
    """Recording a delivery changes no cached read: its commit must keep them (and the hook list)."""
    owner = await register(api, "Owen")
    ws = await workspace_with(api, owner)
    await subscribe(api, owner, ws, f"{peer.url}/hook")
    await say(api, owner, ws, "deployed")
    stamp = server.app.db.freshness(ANY_WRITE)
    assert await server.app.jobs.run_once("webhooks.deliver") == 1
    assert len(peer.to("/hook")) == 1
    assert server.app.db.freshness(ANY_WRITE) == stamp


async def bodies(server):
    rows = await server.app.db.reader.fetch_all("SELECT event_name, status, body FROM webhook_deliveries ORDER BY id")
    return [(row["event_name"], row["status"], row["body"]) for row in rows]


@pytest.mark.gen_test(timeout=30)
async def test_deleting_a_message_cancels_its_deliveries_not_yet_made(api, server, peer, clock):
    """A receiver that is down when a message is deleted never gets its text afterwards; it gets the
    deletion, and other messages' deliveries go on."""
    owner = await register(api, "Owen")
    ws = await workspace_with(api, owner)
    hook = await subscribe(api, owner, ws, f"{peer.url}/down", ("message.created", "message.deleted"))
    peer.respond = lambda call: Answer(503, "down")
    regret = await say(api, owner, ws, "oops, wrong channel: the salary table")
    await say(api, owner, ws, "standup in 5")
    await server.app.jobs.run_once("webhooks.deliver")
    path = f"/workspaces/{ws['id']}/channels/{ws['general']['id']}/messages/{regret['id']}"
    assert (await api.delete(path, token=owner.token)).status == 204
    listed = {d["event_name"]: d for d in await deliveries(api, owner, ws, hook) if d["status"] == "failed"}
    assert listed["message.created"]["last_error"] == "the message was deleted before it was delivered"
    peer.respond = lambda call: Answer(200, "ok")
    clock.advance(seconds=backoff_s(1) + 1)
    assert await server.app.jobs.run_once("webhooks.deliver") == 2  # the other message, and the deletion
    sent = [call.json for call in peer.calls[2:]]
    assert sorted(body["event"] for body in sent) == ["message.created", "message.deleted"]
    assert all("salary" not in json.dumps(body) for body in sent)
    assert not any("salary" in body for _, _, body in await bodies(server))


@pytest.mark.gen_test(timeout=30)
async def test_deleting_a_channel_cancels_its_messages_deliveries_not_yet_made(api, server, peer, clock):
    owner = await register(api, "Owen")
    ws = await workspace_with(api, owner)
    hook = await subscribe(api, owner, ws, f"{peer.url}/down", ("message.created", "channel.deleted"))
    peer.respond = lambda call: Answer(503, "down")
    ops = (await api.post(f"/workspaces/{ws['id']}/channels", {"name": "ops"}, token=owner.token)).json["data"]
    sent = await api.post(f"/workspaces/{ws['id']}/channels/{ops['id']}/messages", {"content": "root pw: hunter2"},
                          token=owner.token)
    assert sent.status == 201, sent
    await say(api, owner, ws, "standup in 5")  # in general: its delivery goes on
    await server.app.jobs.run_once("webhooks.deliver")
    assert (await api.delete(f"/workspaces/{ws['id']}/channels/{ops['id']}", token=owner.token)).status == 204
    failed = [d for d in await deliveries(api, owner, ws, hook) if d["status"] == "failed"]
    assert [d["last_error"] for d in failed] == ["the message was deleted before it was delivered"]
    peer.respond = lambda call: Answer(200, "ok")
    clock.advance(seconds=backoff_s(1) + 1)
    assert await server.app.jobs.run_once("webhooks.deliver") == 2  # the other message, and the deletion
    assert sorted(call.json["event"] for call in peer.calls[2:]) == ["channel.deleted", "message.created"]
    assert not any("hunter2" in call.body.decode() for call in peer.calls[2:])


@contextmanager
def database_before(tmp_path, version: int, undo: str = "") -> Iterator[sqlite3.Connection]:
    """A database as it was before migration ``version``: ``undo`` (SQL) takes back what the migration
    made, and it is marked not applied. Foreign keys are off: rows alone (no workspace, user or hook)
    test a migration."""
    raw = sqlite3.connect(tmp_path / "old.sqlite3", isolation_level=None)
    try:
        apply_migrations(raw)
        raw.executescript(f"{undo} DELETE FROM schema_migrations WHERE version = {version}; PRAGMA foreign_keys = OFF;")
        yield raw
    finally:
        raw.close()


def test_upgrading_drops_the_bodies_of_finished_deliveries(tmp_path):
    with database_before(tmp_path, 10) as raw:  # finished deliveries with their bodies
        for delivery_id, status in (("d1", "delivered"), ("d2", "failed"), ("d3", "pending")):
            raw.execute("INSERT INTO webhook_deliveries (id, outgoing_webhook_id, event_name, event_seq, body, status,"
                        " next_attempt_at, created_at) VALUES (?, 'h', 'message.created', 1, '{\"text\"}', ?, '', '')",
                        (delivery_id, status))
        assert apply_migrations(raw) == [10]
        kept = dict(raw.execute("SELECT id, body FROM webhook_deliveries").fetchall())
        assert kept == {"d1": "", "d2": "", "d3": '{"text"}'}  # a pending delivery still has to go out


def test_upgrading_indexes_the_message_of_each_pending_delivery(tmp_path):
    # No message_id column yet: deliveries with their bodies.
    with database_before(tmp_path, 11, "DROP INDEX webhook_deliveries_message;"
                                       " ALTER TABLE webhook_deliveries DROP COLUMN message_id;") as raw:
        rows = (("d1", "message.created", "pending", "m1"), ("d2", "message.translated", "pending", "m1"),
                ("d3", "message.created", "delivered", "m2"), ("d4", "channel.created", "pending", "c1"))
        for delivery_id, name, status, data_id in rows:
            raw.execute("INSERT INTO webhook_deliveries (id, outgoing_webhook_id, event_name, event_seq, body, status,"
                        " next_attempt_at, created_at) VALUES (?, 'h', ?, 1, ?, ?, '', '')",
                        (delivery_id, name, json.dumps({"data": {"id": data_id}}), status))
        assert apply_migrations(raw) == [11]
        found = dict(raw.execute("SELECT id, message_id FROM webhook_deliveries").fetchall())
        assert found == {"d1": "m1", "d2": "m1", "d3": None, "d4": None}  # what a deletion must still cancel


@pytest.mark.gen_test(timeout=30)
async def test_finished_deliveries_are_forgotten_after_seven_days(api, server, peer, clock):
    owner = await register(api, "Owen")
    ws = await workspace_with(api, owner)
    hook = await subscribe(api, owner, ws, f"{peer.url}/hook")
    await say(api, owner, ws, "first")
    assert await server.app.jobs.run_once("webhooks.deliver") == 1
    clock.advance(days=6)
    await say(api, owner, ws, "second")
    assert await server.app.jobs.run_once("webhooks.deliver") == 1
    assert len(await deliveries(api, owner, ws, hook)) == 2
    clock.advance(days=2)  # the first finished 8 days ago, the second 2
    assert await server.app.jobs.run_once("webhooks.deliver") == 0  # nothing is being delivered: the trim runs anyway
    assert await server.app.jobs.run_once("webhooks.trim") == 1
    assert [d["status"] for d in await deliveries(api, owner, ws, hook)] == ["delivered"]
    assert await server.app.jobs.run_once("webhooks.trim") == 0
    assert len(peer.to("/hook")) == 2


@pytest.mark.gen_test(timeout=30)
async def test_only_subscribed_events_and_active_hooks(api, server, peer):
    owner = await register(api, "Owen")
    ws = await workspace_with(api, owner)
    hook = await subscribe(api, owner, ws, f"{peer.url}/channels", event_types=["channel.created"])
    await say(api, owner, ws, "not subscribed")
    created = await api.post(f"/workspaces/{ws['id']}/channels", {"name": "ops"}, token=owner.token)
    assert created.status == 201
    await server.app.jobs.run_once("webhooks.deliver")
    assert [c.json["event"] for c in peer.to("/channels")] == ["channel.created"]
    # Paused: events are not queued for it.
    paused = await api.put(f"/workspaces/{ws['id']}/outgoing-webhooks/{hook['id']}", {"is_active": False},
                           token=owner.token)
    assert paused.status == 200 and paused.json["data"]["is_active"] is False
    await api.post(f"/workspaces/{ws['id']}/channels", {"name": "ops2"}, token=owner.token)
    await server.app.jobs.run_once("webhooks.deliver")
    assert len(peer.to("/channels")) == 1
    assert (await api.delete(f"/workspaces/{ws['id']}/outgoing-webhooks/{hook['id']}", token=owner.token)).status == 204
    assert (await api.get(f"/workspaces/{ws['id']}/outgoing-webhooks/{hook['id']}", token=owner.token)).status == 404


@pytest.mark.gen_test(timeout=30)
async def test_member_removed_is_offered_and_webhook_changes_stay_inside(api, server, peer):
    """The type offered is the one emitted (it was "member.left", which never came); a subscription to
    everything gets the removal but none of the admins' webhook changes, which never leave the server."""
    team = await make_team(api)
    refused = await api.post(f"/workspaces/{team.id}/outgoing-webhooks",
                             {"name": "old", "url": f"{peer.url}/old", "event_types": ["member.left"]},
                             token=team.owner.token)
    assert refused.status == 422 and "event_types" in refused.json["errors"]
    await subscribe(api, team.owner, team.workspace, f"{peer.url}/removed", ["member.removed"])
    everything = await subscribe(api, team.owner, team.workspace, f"{peer.url}/all", ["*"])
    created = [e for e in await events(server, "outgoing_webhook.created") if e["payload"]["id"] == everything["id"]]
    assert sorted((e["audience_kind"], e["audience_id"]) for e in created) == sorted(
        ("user", admin.id) for admin in (team.owner, team.admin))  # its admins only, Mia not
    assert all("secret" not in e["payload"] for e in created)
    incoming = await api.post(f"/workspaces/{team.id}/webhooks",
                              {"name": "CI", "default_channel_id": team.general["id"]}, token=team.owner.token)
    assert incoming.status == 201
    mia = await member_id(api, team.id, team.member, team.owner.token)
    assert (await api.delete(f"/workspaces/{team.id}/members/{mia}", token=team.owner.token)).status == 204
    await server.app.jobs.run_once("webhooks.deliver")
    assert [c.json["event"] for c in peer.to("/removed")] == ["member.removed"]
    assert [c.json["event"] for c in peer.to("/all")] == ["member.removed"]
    assert peer.to("/removed")[0].json["data"]["user"]["id"] == team.member.id


def test_upgrading_renames_member_left_subscriptions(tmp_path):
    with database_before(tmp_path, 12) as raw:
        for hook_id, types in (("h1", '["member.joined","member.left"]'), ("h2", '["message.created"]')):
            raw.execute("INSERT INTO outgoing_webhooks (id, workspace_id, name, url, event_types, secret, created_by,"
                        " created_at, updated_at) VALUES (?, 'w', 'n', 'https://x.test/', ?, 's', 'u', '', '')",
                        (hook_id, types))
        assert apply_migrations(raw) == [12]
        kept = dict(raw.execute("SELECT id, event_types FROM outgoing_webhooks").fetchall())
        assert kept == {"h1": '["member.joined","member.removed"]', "h2": '["message.created"]'}


@pytest.mark.gen_test(timeout=30)
async def test_retry_after_a_500_with_backoff(api, server, peer, clock):
    """The same signed body is sent again after the backoff; once delivered, the body (the message's
    text) is dropped: nothing sends or shows it again."""
    owner = await register(api, "Owen")
    ws = await workspace_with(api, owner)
    hook = await subscribe(api, owner, ws, f"{peer.url}/flaky")
    answers = [Answer(500, "boom"), Answer(200, "ok")]
    peer.respond = lambda call: answers.pop(0)
    await say(api, owner, ws, "hello")
    await server.app.jobs.run_once("webhooks.deliver")
    [row] = await deliveries(api, owner, ws, hook)
    assert (row["status"], row["attempts"], row["response_status"], row["last_error"]) == ("pending", 1, 500,
                                                                                           "HTTP 500")
    [(_, _, kept)] = await bodies(server)
    assert json.loads(kept)["data"]["original_content"] == "hello"  # still to be retried
    # Not due yet: the job leaves it alone until the backoff has passed.
    await server.app.jobs.run_once("webhooks.deliver")
    assert len(peer.calls) == 1
    clock.advance(seconds=backoff_s(1) + 1)
    await server.app.jobs.run_once("webhooks.deliver")
    assert len(peer.calls) == 2
    assert peer.calls[0].body == peer.calls[1].body  # the same delivery, re-signed
    assert verify(hook["secret"], peer.calls[1])
    [row] = await deliveries(api, owner, ws, hook)
    assert (row["status"], row["attempts"], row["response_status"]) == ("delivered", 2, 200)
    assert await bodies(server) == [("message.created", "delivered", "")]


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("server_overrides", [{"webhooks": {"allowed_hosts": ["127.0.0.1"], "max_attempts": 2}}])
async def test_gives_up_after_max_attempts(api, server, peer, clock, server_overrides):
    owner = await register(api, "Owen")
    ws = await workspace_with(api, owner)
    hook = await subscribe(api, owner, ws, f"{peer.url}/down")
    peer.respond = lambda call: Answer(503, "down")
    await say(api, owner, ws, "hello")
    await server.app.jobs.run_once("webhooks.deliver")
    clock.advance(seconds=backoff_s(1) + 1)
    await server.app.jobs.run_once("webhooks.deliver")
    [row] = await deliveries(api, owner, ws, hook)
    assert (row["status"], row["attempts"], row["response_status"]) == ("failed", 2, 503)
    assert await bodies(server) == [("message.created", "failed", "")]  # given up on: the body goes too
    clock.advance(hours=24)
    await server.app.jobs.run_once("webhooks.deliver")
    assert len(peer.calls) == 2


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("server_overrides", [{"webhooks": {"allowed_hosts": []}}])
async def test_loopback_refused_unless_allowed(api, server, peer, server_overrides):
    owner = await register(api, "Owen")
    ws = await workspace_with(api, owner)
    refused = await api.post(f"/workspaces/{ws['id']}/outgoing-webhooks",
                             {"name": "r", "url": f"{peer.url}/x", "event_types": ["*"]}, token=owner.token)
    assert refused.status == 422 and "loopback" in refused.json["errors"]["url"][0]


def test_backoff_grows_and_is_capped():
    assert [backoff_s(n) for n in (1, 2, 3)] == [30.0, 60.0, 120.0]
    assert backoff_s(50) == 6 * 3600


@pytest.mark.parametrize("address, reason", [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"),
    ("169.254.169.254", "metadata"), ("::ffff:169.254.169.254", "metadata"), ("64:ff9b::a9fe:a9fe", "metadata"),
    ("10.1.2.3", "private"), ("192.168.1.10", "private"), ("fd00::1", "private"), ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"), ("100.64.0.1", "non-public"), ("240.0.0.1", "reserved"),
    ("0.0.0.0", "unspecified"),  # noqa: S104 - an address under test, not a bind
])
def test_forbidden_addresses(address, reason):
    found = ssrf.forbidden_reason(ip_address(address))
    assert found is not None and reason in found, found


def test_public_addresses_pass():
    for address in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "1.1.1.1"):
        assert ssrf.forbidden_reason(ip_address(address)) is None


@pytest.mark.gen_test(timeout=30)
async def test_guard_refuses_loopback_mapped_metadata_and_names_resolving_to_loopback(api, server, peer):
    owner = await register(api, "Owen")
    ws = await workspace_with(api, owner)
    # Literal addresses are refused when the hook is created, naming the field.
    for url in ("http://169.254.169.254/latest/meta-data/", f"http://[::ffff:127.0.0.1]:{peer.port}/x",
                f"http://127.0.0.2:{peer.port}/x", "file:///etc/passwd", "http://user:pw@example.com/"):
        refused = await api.post(f"/workspaces/{ws['id']}/outgoing-webhooks",
                                 {"name": "r", "url": url, "event_types": ["*"]}, token=owner.token)
        assert refused.status == 422 and "url" in refused.json["errors"], (url, refused)
    # A name is checked when it is resolved, at delivery: localhost resolves to loopback and is not allowed.
    by_name = await subscribe(api, owner, ws, f"http://localhost:{peer.port}/named")
    await say(api, owner, ws, "hi")
    await server.app.jobs.run_once("webhooks.deliver")
    [row] = await deliveries(api, owner, ws, by_name)
    assert row["status"] == "failed" and "SSRF" in row["last_error"] and "loopback" in row["last_error"]
    assert peer.to("/named") == []
    # The guard is also reachable directly: the mapped and metadata forms never pass.
    for url in (f"http://[::ffff:127.0.0.1]:{peer.port}/", "http://169.254.169.254/", "http://127.0.0.1/"):
        with pytest.raises(ssrf.Refused):
            await ssrf.guarded_fetch(url, allowed_hosts=())


@pytest.mark.gen_test(timeout=30)
async def test_redirect_to_loopback_is_refused_hop_by_hop(api, server, peer):
    owner = await register(api, "Owen")
    ws = await workspace_with(api, owner)
    # The allowed peer answers with a redirect to a loopback name that is not allowed.
    target = f"http://localhost:{peer.port}/inside"
    peer.respond = lambda call: (Answer(302, "", {"Location": target}) if call.path == "/redirect"
                                     else Answer(200, "reached"))
    hook = await subscribe(api, owner, ws, f"{peer.url}/redirect")
    await say(api, owner, ws, "hi")
    await server.app.jobs.run_once("webhooks.deliver")
    assert [c.path for c in peer.calls] == ["/redirect"]  # the second hop never happened
    [row] = await deliveries(api, owner, ws, hook)
    assert row["status"] == "failed" and "SSRF" in row["last_error"]
    # An allowed redirect hop is followed (and re-checked) fine.
    fetched = await ssrf.guarded_fetch(f"{peer.url}/redirect2", allowed_hosts=("127.0.0.1",), body=b"{}")
    assert fetched.status == 200
    peer.respond = lambda call: (Answer(307, "", {"Location": f"{peer.url}/final"})
                                     if call.path == "/hop" else Answer(200, json.dumps({"ok": True})))
    fetched = await ssrf.guarded_fetch(f"{peer.url}/hop", allowed_hosts=("127.0.0.1",), body=b"{}")
    assert (fetched.status, fetched.url) == (200, f"{peer.url}/final")
    assert peer.calls[-1].method == "POST" and peer.calls[-1].body == b"{}"  # 307 keeps method and body


@pytest.mark.gen_test(timeout=30)
async def test_connection_uses_the_checked_address_whatever_the_case_of_the_host(peer, monkeypatch):
    # The guard resolves the host once; the connection must reuse that answer. Tornado looks the
    # override up by the host as written in the URL (not lowercased): "REBIND.test" must still hit it,
    # or a second resolution (DNS rebinding to loopback) would decide where the request goes.
    loop = asyncio.get_running_loop()
    original = loop.getaddrinfo

    async def fake(host, *args, **kwargs):
        if host.lower() == "rebind.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", peer.port))]
        return await original(host, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", fake)
    fetched = await ssrf.guarded_fetch(f"http://REBIND.test:{peer.port}/case", allowed_hosts=("rebind.test",),
                                       body=b"{}")
    assert fetched.status == 200
    assert [c.path for c in peer.calls] == ["/case"]
