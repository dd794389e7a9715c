"""Channels: update (name, slug, password), delete (general stays), join password channels (rate limited)."""

from __future__ import annotations

import asyncio

import pytest

from rosetta.errors import NotFound
from rosetta.services.auth import Principal
from tests.rest_support import events, make_team


def channel_path(team, channel_id, suffix=""):
    return f"/workspaces/{team.id}/channels/{channel_id}{suffix}"


async def new_channel(api, team, **body):
    created = await api.post(f"/workspaces/{team.id}/channels", {"name": "Random", **body}, token=team.owner.token)
    assert created.status == 201, created
    return created.json["data"]


@pytest.mark.gen_test(timeout=30)
async def test_update_name_and_slug(api, server, clock):
    team = await make_team(api)
    channel = await new_channel(api, team)
    clock.advance(minutes=5)
    updated = await api.put(channel_path(team, channel["id"]), {"name": "Off topic", "slug": "off-topic"},
                            token=team.admin.token)
    assert updated.status == 200, updated
    data = updated.json["data"]
    assert data["name"] == "Off topic" and data["slug"] == "off-topic" and data["updated_at"] > data["created_at"]
    taken = await api.put(channel_path(team, channel["id"]), {"name": "x", "slug": "general"}, token=team.owner.token)
    assert taken.status == 422 and "slug" in taken.json["errors"]
    same = await api.put(channel_path(team, channel["id"]), {"name": "Off topic 2", "slug": "off-topic"},
                         token=team.owner.token)
    assert same.status == 200  # keeping its own slug is not a conflict
    missing = await api.put(channel_path(team, channel["id"]), {"slug": "abc"}, token=team.owner.token)
    assert missing.status == 422 and "name" in missing.json["errors"]
    event = (await events(server, "channel.updated"))[-1]
    assert event["audience_id"] == team.id and event["payload"]["name"] == "Off topic 2"


@pytest.mark.gen_test(timeout=30)
async def test_general_keeps_its_slug_and_cannot_be_deleted(api):
    team = await make_team(api)
    general = team.general["id"]
    renamed = await api.put(channel_path(team, general), {"name": "Lobby"}, token=team.owner.token)
    assert renamed.status == 200 and renamed.json["data"]["slug"] == "general"
    moved = await api.put(channel_path(team, general), {"name": "Lobby", "slug": "lobby"}, token=team.owner.token)
    assert moved.status == 422 and "slug" in moved.json["errors"]
    deleted = await api.delete(channel_path(team, general), token=team.owner.token)
    assert deleted.status == 403 and deleted.json["errors"] == {"code": ["general_channel_undeletable"]}


@pytest.mark.gen_test(timeout=30)
async def test_delete_channel_removes_it_and_its_messages(api, server):
    team = await make_team(api)
    channel = await new_channel(api, team)
    sent = await api.post(channel_path(team, channel["id"], "/messages"), {"content": "bye"}, token=team.member.token)
    assert sent.status == 201
    deleted = await api.delete(channel_path(team, channel["id"]), token=team.admin.token)
    assert deleted.status == 204 and deleted.body == b""
    assert (await api.get(channel_path(team, channel["id"]), token=team.owner.token)).status == 404
    assert (await api.get(channel_path(team, channel["id"], "/messages"), token=team.owner.token)).status == 404
    assert (await api.delete(channel_path(team, channel["id"]), token=team.admin.token)).status == 404
    event = (await events(server, "channel.deleted"))[-1]
    assert event["audience_id"] == team.id and event["payload"]["id"] == channel["id"]


@pytest.mark.gen_test(timeout=30)
async def test_password_channel_join_flow(api, server):
    team = await make_team(api)
    channel = await new_channel(api, team, password="open-sesame")
    assert channel["has_password"] is True
    seen = await api.get(channel_path(team, channel["id"]), token=team.member.token)
    assert seen.status == 200 and seen.json["data"]["is_member"] is False
    blocked = await api.get(channel_path(team, channel["id"], "/messages"), token=team.member.token)
    assert blocked.status == 403 and blocked.json["errors"] == {"code": ["channel_password_required"]}
    posted = await api.post(channel_path(team, channel["id"], "/messages"), {"content": "x"}, token=team.member.token)
    assert posted.status == 403
    missing = await api.post(channel_path(team, channel["id"], "/join"), {}, token=team.member.token)
    assert missing.status == 422 and "password" in missing.json["errors"]
    wrong = await api.post(channel_path(team, channel["id"], "/join"), {"password": "nope-nope"},
                           token=team.member.token)
    assert wrong.status == 422 and list(wrong.json["errors"]) == ["password"]
    right = await api.post(channel_path(team, channel["id"], "/join"), {"password": "open-sesame"},
                           token=team.member.token)
    assert right.status == 200 and right.json["data"]["is_member"] is True and right.json["data"]["id"] == channel["id"]
    assert (await api.get(channel_path(team, channel["id"], "/messages"), token=team.member.token)).status == 200
    joined = (await events(server, "channel.joined"))[-1]
    assert (joined["audience_kind"], joined["audience_id"]) == ("user", team.member.id)
    # Admins and the owner need no password; joining an open channel is a no-op success.
    assert (await api.get(channel_path(team, channel["id"], "/messages"), token=team.admin.token)).status == 200
    admin_join = await api.post(channel_path(team, channel["id"], "/join"), token=team.admin.token)
    assert admin_join.status == 200 and admin_join.json["data"]["is_member"] is True
    open_join = await api.post(channel_path(team, team.general["id"], "/join"), {}, token=team.member.token)
    assert open_join.status == 200 and open_join.json["data"]["is_member"] is True


@pytest.mark.gen_test(timeout=30)
async def test_changing_or_removing_the_password(api):
    team = await make_team(api)
    channel = await new_channel(api, team, password="open-sesame")
    await api.post(channel_path(team, channel["id"], "/join"), {"password": "open-sesame"}, token=team.member.token)
    changed = await api.put(channel_path(team, channel["id"]), {"name": "Random", "password": "new-secret-1"},
                            token=team.owner.token)
    assert changed.status == 200 and changed.json["data"]["has_password"] is True
    # Whoever joined with the old password must join again with the new one.
    again = await api.get(channel_path(team, channel["id"], "/messages"), token=team.member.token)
    assert again.status == 403
    old = await api.post(channel_path(team, channel["id"], "/join"), {"password": "open-sesame"},
                         token=team.member.token)
    assert old.status == 422
    kept = await api.put(channel_path(team, channel["id"]), {"name": "Renamed"}, token=team.owner.token)
    assert kept.json["data"]["has_password"] is True  # absent password: unchanged
    short = await api.put(channel_path(team, channel["id"]), {"name": "Renamed", "password": "short"},
                          token=team.owner.token)
    assert short.status == 422 and "password" in short.json["errors"]
    removed = await api.put(channel_path(team, channel["id"]), {"name": "Renamed", "password": None},
                            token=team.owner.token)
    assert removed.status == 200 and removed.json["data"]["has_password"] is False
    assert (await api.get(channel_path(team, channel["id"], "/messages"), token=team.member.token)).status == 200
    blank = await api.put(channel_path(team, channel["id"]), {"name": "Renamed", "password": ""},
                          token=team.owner.token)
    assert blank.status == 200 and blank.json["data"]["has_password"] is False


@pytest.mark.parametrize("server_overrides", [{"limits": {"channel_password_per_minute": 2}}])
@pytest.mark.gen_test(timeout=30)
async def test_wrong_passwords_are_rate_limited_per_user_and_channel(api, clock):
    team = await make_team(api)
    channel = await new_channel(api, team, password="open-sesame")
    join = channel_path(team, channel["id"], "/join")
    first = await api.post(join, {"password": "wrong-one"}, token=team.member.token)
    assert first.status == 422 and first.headers["X-RateLimit-Limit"] == "2"
    assert first.headers["X-RateLimit-Remaining"] == "1"
    assert (await api.post(join, {"password": "wrong-two"}, token=team.member.token)).status == 422
    limited = await api.post(join, {"password": "open-sesame"}, token=team.member.token)
    assert limited.status == 429 and int(limited.headers["Retry-After"]) > 0
    other = await api.post(join, {"password": "wrong"}, token=team.outsider.token)
    assert other.status == 404  # an outsider does not even learn the channel exists
    clock.advance(seconds=61)
    assert (await api.post(join, {"password": "open-sesame"}, token=team.member.token)).status == 200


@pytest.mark.gen_test(timeout=30)
async def test_join_racing_a_channel_delete_is_404_not_500(api, server):
    team = await make_team(api)
    app = server.app
    assert app is not None
    channel = await new_channel(api, team, password="open-sesame")
    member = Principal("user", team.member.id)
    seen = await app.workspaces.require_channel(team.id, channel["id"], member)
    results = await asyncio.gather(
        app.workspaces.delete_channel(team.id, channel["id"], Principal("user", team.owner.id)),
        app.workspaces.join_channel(seen, member, "open-sesame"),
        return_exceptions=True,
    )
    assert results[0] is None and isinstance(results[1], NotFound), results
