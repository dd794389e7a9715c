"""The Slack/Mattermost-compatible hook (/api/v1/hooks/{secret}), its renderer, and apprise posting into it."""

import json
import logging
from urllib.parse import urlencode

import apprise
import pytest
from tornado.ioloop import IOLoop

from rosetta.errors import Invalid
from rosetta.services import slack_format
from tests.support import register, workspace_with
from tests.test_webhooks import make_webhook, messages_in

# Renderer (pure) -------------------------------------------------------------------------------


def test_render_text_links_and_entities():
    parsed = slack_format.parse({"text": "Deploy <https://ci.example/1|#1> done &amp; <!here> &lt;ok&gt;",
                                 "username": "CI", "icon_url": "https://x/i.png", "channel": "#ops"}, 10_000)
    assert parsed.text == "Deploy [#1](https://ci.example/1) done & @here <ok>"
    assert (parsed.username, parsed.icon_url, parsed.channel) == ("CI", "https://x/i.png", "ops")


def test_render_attachments_fields_colour_and_fallback():
    parsed = slack_format.parse({"attachments": [
        {"fallback": "ignored when richer content exists", "color": "danger", "pretext": "Alert firing",
         "title": "CPU high", "title_link": "https://grafana/d/1", "text": "host nas01",
         "fields": [{"title": "Value", "value": 97, "short": True}, {"title": "Severity", "value": "critical"}]},
        {"fallback": "Only the fallback", "color": "#36a64f"},
    ]}, 10_000)
    assert parsed.text == (
        "Alert firing\n"
        "> 🔴 **[CPU high](https://grafana/d/1)**\n"
        "> host nas01\n"
        "> **Value:** 97\n"
        "> **Severity:** critical\n"
        "\n"
        "> 🟢 Only the fallback"
    )


def test_render_refuses_empty_and_cuts_long():
    with pytest.raises(Invalid) as refused:
        slack_format.parse({"text": "  ", "attachments": [{"color": "good"}]}, 100)
    assert "text" in refused.value.errors
    with pytest.raises(Invalid):
        slack_format.parse(["not", "an", "object"], 100)
    cut = slack_format.parse({"text": "x" * 500}, 100)
    assert len(cut.text) == 100 and cut.text.endswith("…")


# Over HTTP -------------------------------------------------------------------------------------


async def post_hook(api, secret, body=None, raw=None, content_type="application/json"):
    return await api.post(f"/hooks/{secret}", raw=raw if raw is not None else json.dumps(body).encode(),
                          headers={"Content-Type": content_type})


@pytest.mark.gen_test(timeout=30)
async def test_slack_json_and_form_payloads_land_as_webhook_messages(api):
    owner = await register(api, "Owen")
    ws = await workspace_with(api, owner)
    ops = (await api.post(f"/workspaces/{ws['id']}/channels", {"name": "Ops Alerts"}, token=owner.token)).json["data"]
    hook = await make_webhook(api, owner, ws, name="Grafana")
    as_json = await post_hook(api, hook["secret"], {"text": "Disk *full* on nas01", "username": "Alertmanager",
                                                    "icon_url": "https://grafana.example/logo.png"})
    assert as_json.status == 200 and as_json.body == b"ok"
    assert as_json.headers["Content-Type"].startswith("text/plain")
    form = urlencode({"payload": json.dumps({"text": "from a form", "channel": "ops-alerts",
                                             "attachments": [{"title": "Gitea push", "text": "3 commits"}]})})
    as_form = await post_hook(api, hook["secret"], raw=form.encode(), content_type="application/x-www-form-urlencoded")
    assert as_form.status == 200 and as_form.body == b"ok"
    by_name = await post_hook(api, hook["secret"], {"text": "by channel name", "channel": "#Ops Alerts"})
    assert by_name.status == 200
    unknown_channel = await post_hook(api, hook["secret"], {"text": "falls back", "channel": "nope"})
    assert unknown_channel.status == 200
    general = await messages_in(api, owner, ws, ws["general"]["id"])
    assert [(m["original_content"], m["author"]) for m in general] == [
        ("falls back", {"id": hook["id"], "name": "Grafana", "avatar_url": None, "kind": "webhook"}),
        ("Disk *full* on nas01", {"id": hook["id"], "name": "Alertmanager",
                                  "avatar_url": "https://grafana.example/logo.png", "kind": "webhook"}),
    ]
    in_ops = await messages_in(api, owner, ws, ops["id"])
    assert [m["original_content"] for m in in_ops] == [
        "by channel name", "from a form\n\n> **Gitea push**\n> 3 commits"]
    assert all(m["author"]["kind"] == "webhook" for m in in_ops)


@pytest.mark.gen_test(timeout=30)
async def test_text_sqlite_cannot_store_is_shown_replaced_not_a_500(api):
    """A payload is shown as it comes; a lone surrogate (valid JSON, not storable UTF-8) becomes U+FFFD."""
    owner = await register(api, "Owen")
    ws = await workspace_with(api, owner)
    hook = await make_webhook(api, owner, ws)
    raw = b'{"text": "disk \\ud800 full", "username": "nas\\udfff", "attachments": [{"title": "\\ud83d"}]}'
    posted = await post_hook(api, hook["secret"], raw=raw)
    assert posted.status == 200, posted
    [message] = await messages_in(api, owner, ws, ws["general"]["id"])
    assert message["original_content"] == "disk \ufffd full\n\n> **\ufffd**"
    assert message["author"]["name"] == "nas\ufffd"


@pytest.mark.gen_test(timeout=30)
async def test_slack_hook_refusals(api):
    owner = await register(api, "Owen")
    ws = await workspace_with(api, owner)
    hook = await make_webhook(api, owner, ws)
    assert (await post_hook(api, "0" * 48, {"text": "x"})).status == 404
    assert (await post_hook(api, hook["secret"], raw=b"{not json")).status == 400
    for nested in (b"[" * 100_000, b"payload=" + b"%5B" * 100_000):  # json.loads raises RecursionError
        kind = "application/json" if nested.startswith(b"[") else "application/x-www-form-urlencoded"
        deep = await post_hook(api, hook["secret"], raw=nested, content_type=kind)
        assert deep.status == 400 and deep.json == {"message": "Malformed JSON body."}, deep
    no_payload = await post_hook(api, hook["secret"], raw=b"text=hi", content_type="application/x-www-form-urlencoded")
    assert no_payload.status == 422 and "payload" in no_payload.json["errors"]
    empty = await post_hook(api, hook["secret"], {"text": ""})
    assert empty.status == 422 and "text" in empty.json["errors"]
    await api.put(f"/workspaces/{ws['id']}/webhooks/{hook['id']}", {"is_active": False}, token=owner.token)
    inactive = await post_hook(api, hook["secret"], {"text": "x"})
    assert inactive.status == 403 and inactive.json["errors"]["code"] == ["webhook_inactive"]
    await api.delete(f"/workspaces/{ws['id']}/webhooks/{hook['id']}", token=owner.token)
    assert (await post_hook(api, hook["secret"], {"text": "x"})).status == 404
    assert await messages_in(api, owner, ws, ws["general"]["id"]) == []


@pytest.mark.gen_test(timeout=60)
# apprise loads all its plugins on first use; its PGP helper imports the stdlib's deprecated imghdr.
@pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")
async def test_apprise_mattermost_notifier_posts_into_the_hook(api, server, tmp_path):
    owner = await register(api, "Owen")
    ws = await workspace_with(api, owner)
    hook = await make_webhook(api, owner, ws, name="apprise")
    # apprise's mmost:// URL: host, port, a path prefix and the token; it POSTs to <prefix>/hooks/<token>.
    asset = apprise.AppriseAsset(storage_mode="memory")
    notifier = apprise.Apprise(asset=asset)
    assert notifier.add(f"mmost://127.0.0.1:{server.port}/api/v1/{hook['secret']}")
    # apprise is synchronous (requests): run it off the loop that serves Rosetta.
    delivered = await IOLoop.current().run_in_executor(
        None, lambda: notifier.notify(body="Backup finished on nas01", title="Restic"))
    assert bool(delivered), delivered
    general = await messages_in(api, owner, ws, ws["general"]["id"])
    assert len(general) == 1
    assert "Backup finished on nas01" in general[0]["original_content"]
    assert general[0]["author"]["kind"] == "webhook" and general[0]["author"]["id"] == hook["id"]
    assert general[0]["author"]["name"] == "Apprise"  # apprise sends username=<its app id>


@pytest.mark.gen_test(timeout=30)
async def test_the_secret_in_the_url_never_reaches_the_access_log(api, caplog):
    owner = await register(api, "Owen")
    ws = await workspace_with(api, owner)
    hook = await make_webhook(api, owner, ws, name="Grafana")
    caplog.set_level(logging.INFO, logger="tornado.access")
    assert (await post_hook(api, hook["secret"], {"text": "hello"})).status == 200
    assert (await post_hook(api, hook["secret"] + "x", {"text": "hello"})).status == 404
    logged = [record.getMessage() for record in caplog.records if record.name == "tornado.access"]
    assert any("/hooks/" in line for line in logged), logged
    assert not any(hook["secret"] in line for line in logged), logged
