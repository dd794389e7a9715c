"""Files through the integration routes: the automation route claims the token owner's staged files (the
reference's automation body has ``attachment_ids``); the webhook route's body has none, and claims nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import Api, User, register, workspace_with
from tests.test_files import upload


async def automation_token(api: Api, user: User) -> str:
    made = await api.post("/me/tokens", {"name": "script", "abilities": ["automation"]}, token=user.token)
    assert made.status == 201, made
    return made.json["data"]["token"]


def automation_path(ws: dict[str, Any]) -> str:
    return f"/automation/workspaces/{ws['id']}/channels/{ws['general']['id']}/messages"


def history_path(ws: dict[str, Any]) -> str:
    return f"/workspaces/{ws['id']}/channels/{ws['general']['id']}/messages"


async def staged(api: Api, user: User, content: bytes, name: str) -> str:
    uploaded = await upload(api, user, content, name)
    assert uploaded.status == 201, uploaded
    return uploaded.json["data"]["id"]


async def automation_team(api: Api) -> tuple[User, User, dict[str, Any], str]:
    """Ana (owner, holding an automation token) and Bea in one workspace: (ana, bea, workspace, token)."""
    ana, bea = await register(api, "Ana"), await register(api, "Bea")
    ws = await workspace_with(api, ana, bea)
    return ana, bea, ws, await automation_token(api, ana)


@pytest.mark.gen_test(timeout=30)
async def test_automation_post_claims_the_token_owners_file_and_members_download_it(api):
    ana, bea, ws, token = await automation_team(api)
    file_id = await staged(api, ana, b"nightly report\n", "report.txt")
    sent = await api.post(automation_path(ws), {"content": "Nightly report", "attachment_ids": [file_id]},
                          token=token)
    assert sent.status == 201, sent
    [attachment] = sent.json["data"]["attachments"]
    assert attachment["file_id"] == file_id and attachment["client_name"] == "report.txt"
    assert attachment["size"] == len(b"nightly report\n")
    claimed = (await api.get(f"/files/{file_id}", token=ana.token)).json["data"]
    assert claimed["claimed"] is True and claimed["expires_at"] is None
    # A member reads the message with its attachment, and downloads it through the attachment route.
    listed = (await api.get(history_path(ws), token=bea.token)).json["data"]
    assert listed[0]["author"]["kind"] == "automation" and listed[0]["attachments"] == [attachment]
    download = await api.get(attachment["download_url"].split("/api/v1", 1)[1], token=bea.token)
    assert download.status == 200 and download.body == b"nightly report\n"
    # Attachments alone are a message too.
    second = await staged(api, ana, b"png-ish", "chart.bin")
    bare = await api.post(automation_path(ws), {"attachment_ids": [second]}, token=token)
    assert bare.status == 201 and [a["file_id"] for a in bare.json["data"]["attachments"]] == [second]


@pytest.mark.gen_test(timeout=30)
async def test_automation_post_refuses_someone_elses_file(api):
    ana, bea, ws, token = await automation_team(api)
    beas = await staged(api, bea, b"bea's private notes", "notes.txt")
    refused = await api.post(automation_path(ws), {"content": "look", "attachment_ids": [beas]}, token=token)
    assert refused.status == 422 and list(refused.json["errors"]) == ["attachment_ids"], refused
    assert (await api.get(history_path(ws), token=ana.token)).json["data"] == []
    still = (await api.get(f"/files/{beas}", token=bea.token)).json["data"]
    assert still["claimed"] is False and still["expires_at"] is not None


@pytest.mark.gen_test(timeout=30)
async def test_a_webhook_post_claims_no_file(api):
    """The contract's webhook body is ``{content, channel_id?, skip_translation}``: a webhook has no
    owner whose staged files it could attach, so an ``attachment_ids`` it sends is not acted on."""
    ana = await register(api, "Ana")
    ws = await workspace_with(api, ana)
    created = await api.post(f"/workspaces/{ws['id']}/webhooks",
                             {"name": "CI", "default_channel_id": ws["general"]["id"]}, token=ana.token)
    hook = created.json["data"]
    file_id = await staged(api, ana, b"admin's file", "secret.txt")
    sent = await api.post(f"/webhooks/{hook['id']}/messages", {"content": "build ok", "attachment_ids": [file_id]},
                          token=hook["secret"])
    assert sent.status == 201, sent
    assert sent.json["data"]["attachments"] == []
    still = (await api.get(f"/files/{file_id}", token=ana.token)).json["data"]
    assert still["claimed"] is False and still["expires_at"] is not None
