"""Automation posts: a token with the automation ability whose owner is a workspace member."""

import pytest

from tests.support import register, workspace_with
from tests.test_webhooks import messages_in


async def personal_token(api, user, abilities):
    created = await api.post("/me/tokens", {"name": "script", "abilities": abilities}, token=user.token)
    assert created.status == 201, created
    return created.json["data"]["token"]


@pytest.mark.gen_test(timeout=30)
async def test_automation_token_posts_as_automation(api):
    owner, member = await register(api, "Owen"), await register(api, "Mia", "de")
    ws = await workspace_with(api, owner, member)
    token = await personal_token(api, member, ["automation"])
    path = f"/automation/workspaces/{ws['id']}/channels/{ws['general']['id']}/messages"
    sent = await api.post(path, {"content": "Nightly backup ok", "skip_translation": True}, token=token)
    assert sent.status == 201, sent
    data = sent.json["data"]
    assert data["author"]["kind"] == "automation" and data["author"]["id"] == member.id
    assert data["author"]["name"] == "Mia"
    listed = await messages_in(api, owner, ws, ws["general"]["id"])
    assert [(m["original_content"], m["author"]["kind"]) for m in listed] == [("Nightly backup ok", "automation")]
    # A login token carries "*", which includes automation.
    assert (await api.post(path, {"content": "by login token"}, token=member.token)).status == 201
    # Validation still names the field.
    empty = await api.post(path, {"content": ""}, token=token)
    assert empty.status == 422 and "content" in empty.json["errors"]


@pytest.mark.gen_test(timeout=30)
async def test_automation_refusals(api):
    owner, outsider = await register(api, "Owen"), await register(api, "Otto")
    ws = await workspace_with(api, owner)
    path = f"/automation/workspaces/{ws['id']}/channels/{ws['general']['id']}/messages"
    # A token without the automation ability: 403.
    rooms_only = await personal_token(api, owner, ["temporary-rooms:read"])
    assert (await api.post(path, {"content": "x"}, token=rooms_only)).status == 403
    # A token whose owner is not a member of the workspace: 403 (not 404).
    outsider_token = await personal_token(api, outsider, ["automation"])
    refused = await api.post(path, {"content": "x"}, token=outsider_token)
    assert refused.status == 403, refused
    # No token: 401. A channel that is not in the workspace: 404.
    assert (await api.post(path, {"content": "x"})).status == 401
    other = await workspace_with(api, owner, name="Other")
    owner_token = await personal_token(api, owner, ["automation"])
    cross = f"/automation/workspaces/{ws['id']}/channels/{other['general']['id']}/messages"
    assert (await api.post(cross, {"content": "x"}, token=owner_token)).status == 404
    assert await messages_in(api, owner, ws, ws["general"]["id"]) == []
    assert await messages_in(api, owner, other, other["general"]["id"]) == []
