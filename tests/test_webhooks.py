"""Incoming workspace webhooks: management by admins, posting by secret (header or bearer)."""

import hashlib
import sqlite3
from pathlib import Path

import pytest

from rosetta.services.fresh import ANY_WRITE
from tests.rest_support import make_team, member_id
from tests.support import register, workspace_with
from tests.test_realtime import barrier, drain_to_fence, until


async def make_webhook(api, owner, ws, name="Uptime Kuma", channel_id=None):
    created = await api.post(f"/workspaces/{ws['id']}/webhooks",
                             {"name": name, "default_channel_id": channel_id or ws["general"]["id"]},
                             token=owner.token)
    assert created.status == 201, created
    return created.json["data"]


async def messages_in(api, user, ws, channel_id):
    listed = await api.get(f"/workspaces/{ws['id']}/channels/{channel_id}/messages", token=user.token)
    assert listed.status == 200, listed
    return listed.json["data"]


@pytest.mark.gen_test(timeout=30)
async def test_management_by_admins_only_and_secret_shown_once(api):
    owner, member, outsider = await register(api, "Owen"), await register(api, "Mia"), await register(api, "Otto")
    ws = await workspace_with(api, owner, member)
    hook = await make_webhook(api, owner, ws)
    assert hook["secret"].isalnum() and len(hook["secret"]) >= 40
    assert set(hook) == {"id", "workspace_id", "name", "default_channel_id", "is_active", "last_used_at",
                         "created_at", "secret"}
    listed = await api.get(f"/workspaces/{ws['id']}/webhooks", token=owner.token)
    assert listed.status == 200 and [w["id"] for w in listed.json["data"]] == [hook["id"]]
    assert "secret" not in listed.json["data"][0]
    # Members may not manage (403); outsiders do not learn the workspace exists (404).
    for path, method in ((f"/workspaces/{ws['id']}/webhooks", "GET"), (f"/workspaces/{ws['id']}/webhooks", "POST"),
                         (f"/workspaces/{ws['id']}/webhooks/{hook['id']}", "PUT"),
                         (f"/workspaces/{ws['id']}/webhooks/{hook['id']}", "DELETE")):
        body = {"name": "x", "default_channel_id": ws["general"]["id"]} if method in ("POST", "PUT") else None
        assert (await api.request(method, path, body, token=member.token)).status == 403
        assert (await api.request(method, path, body, token=outsider.token)).status == 404
    # A default channel from elsewhere is refused, naming the field.
    other = await workspace_with(api, outsider, name="Elsewhere")
    bad = await api.post(f"/workspaces/{ws['id']}/webhooks",
                         {"name": "x", "default_channel_id": other["general"]["id"]}, token=owner.token)
    assert bad.status == 422 and "default_channel_id" in bad.json["errors"]
    # Rename without regenerating: no secret; regenerate: a new one, and the old stops working.
    renamed = await api.put(f"/workspaces/{ws['id']}/webhooks/{hook['id']}", {"name": "Kuma"}, token=owner.token)
    assert renamed.status == 200 and renamed.json["data"]["name"] == "Kuma" and "secret" not in renamed.json["data"]
    regenerated = await api.put(f"/workspaces/{ws['id']}/webhooks/{hook['id']}", {"regenerate_secret": True},
                                token=owner.token)
    new_secret = regenerated.json["data"]["secret"]
    assert new_secret != hook["secret"]
    post = f"/webhooks/{hook['id']}/messages"
    assert (await api.post(post, {"content": "x"}, headers={"X-Rosetta-Webhook-Secret": hook["secret"]})).status == 401
    ok = await api.post(post, {"content": "x"}, headers={"X-Rosetta-Webhook-Secret": new_secret})
    assert ok.status == 201, ok


@pytest.mark.gen_test(timeout=30)
async def test_native_post_lands_with_webhook_author(api):
    owner = await register(api, "Owen")
    ws = await workspace_with(api, owner)
    hook = await make_webhook(api, owner, ws, name="CI")
    sent = await api.post(f"/webhooks/{hook['id']}/messages", {"content": "Build #42 passed"},
                          headers={"X-Rosetta-Webhook-Secret": hook["secret"]})
    assert sent.status == 201, sent
    assert sent.json["data"]["author"] == {"id": hook["id"], "name": "CI", "avatar_url": None, "kind": "webhook"}
    # Authorization: Bearer <secret> works the same.
    bearer = await api.post(f"/webhooks/{hook['id']}/messages", {"content": "deployed", "skip_translation": True},
                            token=hook["secret"])
    assert bearer.status == 201 and bearer.json["data"]["translation_status"] == "skipped"
    listed = await messages_in(api, owner, ws, ws["general"]["id"])
    assert [(m["original_content"], m["author"]["kind"], m["author"]["name"]) for m in listed] == [
        ("deployed", "webhook", "CI"), ("Build #42 passed", "webhook", "CI")]
    hooks = await api.get(f"/workspaces/{ws['id']}/webhooks", token=owner.token)
    assert hooks.json["data"][0]["last_used_at"] is not None


@pytest.mark.gen_test(timeout=30)
async def test_a_webhook_post_moves_only_its_channels_cached_reads(api, server):
    """Stamping the webhook's last use changes no cached read: only the message's own channel moves."""
    owner = await register(api, "Owen")
    ws = await workspace_with(api, owner)
    hook = await make_webhook(api, owner, ws, name="CI")
    await api.post(f"/webhooks/{hook['id']}/messages", {"content": "warm up"}, token=hook["secret"])
    stamp = server.app.db.freshness(ANY_WRITE)
    sent = await api.post(f"/webhooks/{hook['id']}/messages", {"content": "Build #43 passed"}, token=hook["secret"])
    assert sent.status == 201, sent
    assert server.app.db.freshness(ANY_WRITE) == stamp


@pytest.mark.gen_test(timeout=30)
async def test_wrong_secret_cross_workspace_channel_inactive_and_deleted(api):
    owner = await register(api, "Owen")
    ws = await workspace_with(api, owner)
    other = await workspace_with(api, owner, name="Other")
    ops = await api.post(f"/workspaces/{ws['id']}/channels", {"name": "ops"}, token=owner.token)
    hook = await make_webhook(api, owner, ws)
    path = f"/webhooks/{hook['id']}/messages"
    auth = {"X-Rosetta-Webhook-Secret": hook["secret"]}
    assert (await api.post(path, {"content": "x"})).status == 401
    assert (await api.post(path, {"content": "x"}, headers={"X-Rosetta-Webhook-Secret": "nope"})).status == 401
    assert (await api.post(path, {"content": "x"}, token=owner.token)).status == 401  # a user token is not the secret
    # A channel of another workspace is refused (422 channel_id) and nothing is written there.
    cross = await api.post(path, {"content": "leak", "channel_id": other["general"]["id"]}, headers=auth)
    assert cross.status == 422 and "channel_id" in cross.json["errors"]
    assert await messages_in(api, owner, other, other["general"]["id"]) == []
    # A channel of its own workspace is used instead of the default.
    to_ops = await api.post(path, {"content": "to ops", "channel_id": ops.json["data"]["id"]}, headers=auth)
    assert to_ops.status == 201 and to_ops.json["data"]["channel_id"] == ops.json["data"]["id"]
    # Validation names the field.
    empty = await api.post(path, {"content": "  "}, headers=auth)
    assert empty.status == 422 and "content" in empty.json["errors"]
    # Inactive: 403 webhook_inactive; active again: accepted.
    await api.put(f"/workspaces/{ws['id']}/webhooks/{hook['id']}", {"is_active": False}, token=owner.token)
    refused = await api.post(path, {"content": "x"}, headers=auth)
    assert refused.status == 403 and refused.json["errors"]["code"] == ["webhook_inactive"]
    await api.put(f"/workspaces/{ws['id']}/webhooks/{hook['id']}", {"is_active": True}, token=owner.token)
    assert (await api.post(path, {"content": "x"}, headers=auth)).status == 201
    # Deleted: 404, and gone from the list.
    assert (await api.delete(f"/workspaces/{ws['id']}/webhooks/{hook['id']}", token=owner.token)).status == 204
    assert (await api.post(path, {"content": "x"}, headers=auth)).status == 404
    assert (await api.get(f"/workspaces/{ws['id']}/webhooks", token=owner.token)).json["data"] == []


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("server_overrides", [{"limits": {"api_per_minute": 4}}])
async def test_rate_limited_per_webhook(api, server_overrides):
    owner = await register(api, "Owen")
    ws = await workspace_with(api, owner)
    hook = await make_webhook(api, owner, ws)
    auth = {"X-Rosetta-Webhook-Secret": hook["secret"]}
    path = f"/webhooks/{hook['id']}/messages"
    first = await api.post(path, {"content": "1"}, headers=auth)
    assert first.status == 201 and first.headers["X-RateLimit-Limit"] == "4"
    for n in range(3):
        assert (await api.post(path, {"content": str(n)}, headers=auth)).status == 201
    over = await api.post(path, {"content": "5"}, headers=auth)
    assert over.status == 429 and "Retry-After" in over.headers


def webhook_events(seen):
    return [(e["event"], e["data"]) for e in seen if e["event"].startswith("webhook.")]


@pytest.mark.gen_test(timeout=30)
async def test_webhook_changes_reach_the_workspace_admins_only_and_never_the_secret(api, rt):
    team = await make_team(api)
    sockets = {name: (await rt.hello(team.role(name).token))[0] for name in ("owner", "admin", "member", "outsider")}
    hook = await make_webhook(api, team.owner, team.workspace)
    path = f"/workspaces/{team.id}/webhooks/{hook['id']}"
    renamed = await api.put(path, {"name": "Kuma", "regenerate_secret": True}, token=team.admin.token)
    assert renamed.status == 200 and renamed.json["data"]["secret"]
    assert (await api.delete(path, token=team.owner.token)).status == 204
    for name in ("owner", "admin"):
        changes = webhook_events(await until(sockets[name], "webhook.deleted"))
        assert [event for event, _ in changes] == ["webhook.created", "webhook.updated", "webhook.deleted"]
        assert changes[0][1]["id"] == hook["id"] and changes[1][1]["name"] == "Kuma"
        assert all("secret" not in data for _, data in changes)
        assert changes[2][1] == {"id": hook["id"], "workspace_id": team.id}  # a delete carries no content
    for name in ("member", "outsider"):
        assert webhook_events(await drain_to_fence(sockets[name], await barrier(api, team.role(name)))) == []
    # Once demoted, the former admin hears of webhooks no more.
    adam = await member_id(api, team.id, team.admin, team.owner.token)
    demoted = await api.put(f"/workspaces/{team.id}/members/{adam}", {"role": "member"}, token=team.owner.token)
    assert demoted.status == 200, demoted
    later = await make_webhook(api, team.owner, team.workspace, name="Later")
    assert webhook_events(await until(sockets["owner"], "webhook.created"))[-1][1]["id"] == later["id"]
    assert webhook_events(await drain_to_fence(sockets["admin"], await barrier(api, team.admin))) == []


def stored_webhooks(server) -> tuple[list[dict], str]:
    """The webhooks table's rows and the whole database as SQL text, read from the file directly."""
    with sqlite3.connect(Path(server.config.data_dir) / "rosetta.sqlite3") as raw:
        raw.row_factory = sqlite3.Row
        rows = [dict(row) for row in raw.execute("SELECT * FROM webhooks")]
        return rows, "\n".join(raw.iterdump())


@pytest.mark.gen_test(timeout=30)
async def test_webhook_secrets_are_stored_only_as_sha256(api, server):
    owner = await register(api, "Owen")
    ws = await workspace_with(api, owner)
    hook = await make_webhook(api, owner, ws)
    regenerated = await api.put(f"/workspaces/{ws['id']}/webhooks/{hook['id']}", {"regenerate_secret": True},
                                token=owner.token)
    other = await make_webhook(api, owner, ws, name="Other")  # its secret as created, never regenerated
    posted = await api.post(f"/webhooks/{hook['id']}/messages", {"content": "stored hashed"},
                            token=regenerated.json["data"]["secret"])
    assert posted.status == 201, posted
    rows, everything = stored_webhooks(server)
    by_id = {row["id"]: row for row in rows}
    for hook_id, secret in ((hook["id"], regenerated.json["data"]["secret"]), (other["id"], other["secret"])):
        assert by_id[hook_id]["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    for secret in (hook["secret"], regenerated.json["data"]["secret"], other["secret"]):
        assert all(secret not in str(value) for row in rows for value in row.values())
        assert secret not in everything  # not in the events about them either, nor anywhere else
