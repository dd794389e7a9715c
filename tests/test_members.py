"""Members: paged list, role changes with the owner/admin rules, own reading language, remove and leave."""

from __future__ import annotations

import asyncio

import pytest

from rosetta.errors import Forbidden
from rosetta.services.auth import Principal
from tests.rest_support import events, make_team, member_id
from tests.support import register, workspace_with


def path(team, mid=None):
    base = f"/workspaces/{team.id}/members"
    return base if mid is None else f"{base}/{mid}"


@pytest.mark.gen_test(timeout=30)
async def test_list_shape_and_page_meta(api):
    team = await make_team(api)
    full = await api.get(path(team), token=team.member.token)
    assert full.status == 200
    assert [m["user"]["name"] for m in full.json["data"]] == ["Olga", "Adam", "Mia"]
    olga = full.json["data"][0]
    assert set(olga) == {"id", "workspace_id", "user", "role", "preferred_language", "joined_at"}
    assert olga["user"] == {"id": team.owner.id, "name": "Olga", "avatar_url": None}
    assert [m["role"] for m in full.json["data"]] == ["owner", "admin", "member"]
    paged = await api.get(path(team) + "?per_page=2&page=2", token=team.member.token)
    assert paged.status == 200
    assert [m["user"]["name"] for m in paged.json["data"]] == ["Mia"]
    assert paged.json["meta"] == {"current_page": 2, "per_page": 2, "total": 3, "last_page": 2}
    assert paged.json["links"]["next"] is None and "page=1" in paged.json["links"]["prev"]
    assert "per_page=2" in paged.json["links"]["first"]
    # ?sort= as on every page list (api.md §1): it was ignored here, an unknown field included.
    for sort, names in (("name", ["Adam", "Mia", "Olga"]), ("-name", ["Olga", "Mia", "Adam"]),
                        ("role", ["Adam", "Mia", "Olga"]), ("-joined_at", ["Mia", "Adam", "Olga"])):
        sorted_ = await api.get(path(team) + f"?sort={sort}", token=team.member.token)
        assert [m["user"]["name"] for m in sorted_.json["data"]] == names, sort
    unknown = await api.get(path(team) + "?sort=email", token=team.member.token)
    assert unknown.status == 422 and list(unknown.json["errors"]) == ["sort"]


@pytest.mark.gen_test(timeout=30)
async def test_owner_and_admin_role_rules(api, server):
    team = await make_team(api)
    extra = await register(api, "Ed")
    invite = await api.post(f"/workspaces/{team.id}/invites", {"expires_in_days": 1}, token=team.owner.token)
    await api.post(f"/invites/{invite.json['data']['code']}/accept", token=extra.token)
    mia = await member_id(api, team.id, team.member, team.owner.token)
    adam = await member_id(api, team.id, team.admin, team.owner.token)
    olga = await member_id(api, team.id, team.owner, team.owner.token)
    ed = await member_id(api, team.id, extra, team.owner.token)
    # An admin promotes a member to admin, but touches neither owners nor another admin.
    promoted = await api.put(path(team, mia), {"role": "admin"}, token=team.admin.token)
    assert promoted.status == 200 and promoted.json["data"]["role"] == "admin"
    assert (await api.put(path(team, mia), {"role": "member"}, token=team.admin.token)).status == 403
    assert (await api.put(path(team, ed), {"role": "owner"}, token=team.admin.token)).status == 403
    assert (await api.put(path(team, olga), {"role": "member"}, token=team.admin.token)).status == 403
    # A member changes no roles, not even their own.
    assert (await api.put(path(team, ed), {"role": "admin"}, token=extra.token)).status == 403
    # An admin may step down; an owner may make owners and demote admins.
    assert (await api.put(path(team, adam), {"role": "member"}, token=team.admin.token)).json["data"]["role"] \
        == "member"
    made_owner = await api.put(path(team, mia), {"role": "owner"}, token=team.owner.token)
    assert made_owner.status == 200 and made_owner.json["data"]["role"] == "owner"
    updated = [e for e in await events(server, "member.updated") if e["payload"]["id"] == mia]
    assert updated[-1]["audience_kind"] == "workspace" and updated[-1]["payload"]["role"] == "owner"


@pytest.mark.parametrize("role", ["guest", "superuser", 5, ""])
@pytest.mark.gen_test(timeout=30)
async def test_invalid_role_is_422(api, role):
    team = await make_team(api)
    mia = await member_id(api, team.id, team.member, team.owner.token)
    response = await api.put(path(team, mia), {"role": role}, token=team.owner.token)
    assert response.status == 422 and "role" in response.json["errors"], response


@pytest.mark.gen_test(timeout=30)
async def test_last_owner_can_neither_be_demoted_nor_leave(api, server):
    team = await make_team(api)
    olga = await member_id(api, team.id, team.owner, team.owner.token)
    demote = await api.put(path(team, olga), {"role": "admin"}, token=team.owner.token)
    assert demote.status == 403 and demote.json["errors"] == {"code": ["last_owner"]}
    leave = await api.delete(path(team, olga), token=team.owner.token)
    assert leave.status == 403 and leave.json["errors"] == {"code": ["last_owner"]}
    # With a second owner, the first may leave; ownership moves to the remaining owner.
    adam = await member_id(api, team.id, team.admin, team.owner.token)
    assert (await api.put(path(team, adam), {"role": "owner"}, token=team.owner.token)).status == 200
    assert (await api.delete(path(team, olga), token=team.owner.token)).status == 204
    workspace = await api.get(f"/workspaces/{team.id}", token=team.admin.token)
    assert workspace.json["data"]["owner_id"] == team.admin.id and workspace.json["data"]["member_count"] == 2
    assert (await api.get(f"/workspaces/{team.id}", token=team.owner.token)).status == 404
    again = await api.put(path(team, adam), {"role": "member"}, token=team.admin.token)
    assert again.status == 403 and again.json["errors"] == {"code": ["last_owner"]}


@pytest.mark.gen_test(timeout=30)
async def test_preferred_language_is_set_by_self_only(api):
    team = await make_team(api)
    mia = await member_id(api, team.id, team.member, team.owner.token)
    own = await api.put(path(team, mia), {"preferred_language": "pt-br"}, token=team.member.token)
    assert own.status == 200 and own.json["data"]["preferred_language"] == "pt-BR"
    by_owner = await api.put(path(team, mia), {"preferred_language": "de"}, token=team.owner.token)
    assert by_owner.status == 403
    bad = await api.put(path(team, mia), {"preferred_language": "not a language"}, token=team.member.token)
    assert bad.status == 422 and "preferred_language" in bad.json["errors"]
    cleared = await api.put(path(team, mia), {"preferred_language": None}, token=team.member.token)
    assert cleared.status == 200 and cleared.json["data"]["preferred_language"] is None


@pytest.mark.gen_test(timeout=30)
async def test_workspace_language_override_drives_the_reader_language(api):
    team = await make_team(api)
    mia = await member_id(api, team.id, team.member, team.owner.token)
    await api.put(path(team, mia), {"preferred_language": "en"}, token=team.member.token)
    sent = await api.post(f"/workspaces/{team.id}/channels/{team.general['id']}/messages", {"content": "hello"},
                          token=team.member.token)
    assert sent.status == 201 and sent.json["data"]["source_language"] == "en"


@pytest.mark.gen_test(timeout=30)
async def test_remove_and_leave(api, server):
    team = await make_team(api)
    mia = await member_id(api, team.id, team.member, team.owner.token)
    adam = await member_id(api, team.id, team.admin, team.owner.token)
    olga = await member_id(api, team.id, team.owner, team.owner.token)
    assert (await api.delete(path(team, olga), token=team.admin.token)).status == 403  # admins cannot remove owners
    assert (await api.delete(path(team, adam), token=team.member.token)).status == 403
    removed = await api.delete(path(team, mia), token=team.admin.token)
    assert removed.status == 204 and removed.body == b""
    assert (await api.get(f"/workspaces/{team.id}", token=team.member.token)).status == 404
    assert (await api.delete(path(team, mia), token=team.admin.token)).status == 404
    gone = [e for e in await events(server, "member.removed") if e["payload"]["id"] == mia]
    assert {(e["audience_kind"], e["audience_id"]) for e in gone} == {("workspace", team.id),
                                                                      ("user", team.member.id)}
    left = await api.delete(path(team, adam), token=team.admin.token)
    assert left.status == 204
    listed = await api.get(path(team), token=team.owner.token)
    assert [m["user"]["name"] for m in listed.json["data"]] == ["Olga"]


@pytest.mark.gen_test(timeout=30)
async def test_removed_member_loses_channel_password_access(api):
    team = await make_team(api)
    created = await api.post(f"/workspaces/{team.id}/channels", {"name": "vault", "password": "open-sesame"},
                             token=team.owner.token)
    vault = created.json["data"]["id"]
    joined = await api.post(f"/workspaces/{team.id}/channels/{vault}/join", {"password": "open-sesame"},
                            token=team.member.token)
    assert joined.status == 200
    mia = await member_id(api, team.id, team.member, team.owner.token)
    assert (await api.delete(path(team, mia), token=team.member.token)).status == 204
    invite = await api.post(f"/workspaces/{team.id}/invites", {"expires_in_days": 1}, token=team.owner.token)
    await api.post(f"/invites/{invite.json['data']['code']}/accept", token=team.member.token)
    read = await api.get(f"/workspaces/{team.id}/channels/{vault}/messages", token=team.member.token)
    assert read.status == 403 and read.json["errors"] == {"code": ["channel_password_required"]}


@pytest.mark.gen_test
async def test_member_of_another_workspace_is_404(api):
    owner = await register(api, "Olga")
    other = await register(api, "Oleg")
    mine = await workspace_with(api, owner, name="Mine")
    theirs = await workspace_with(api, other, name="Theirs")
    their_member = (await api.get(f"/workspaces/{theirs['id']}/members", token=other.token)).json["data"][0]["id"]
    cross = await api.put(f"/workspaces/{mine['id']}/members/{their_member}", {"role": "member"}, token=owner.token)
    assert cross.status == 404
    assert (await api.delete(f"/workspaces/{mine['id']}/members/{their_member}", token=owner.token)).status == 404
    assert (await api.delete(f"/workspaces/{mine['id']}/members/zzz", token=owner.token)).status == 404


async def race_on_member(api, server, calls):
    """Run the owner's and the admin's calls on the member Mia at once (straight on the service, so
    they really overlap); ``calls(members, workspace_id, mia, owner, admin)`` returns both awaitables.
    Returns the team and each call's result or exception."""
    team = await make_team(api)
    app = server.app
    assert app is not None
    mia = await member_id(api, team.id, team.member, team.owner.token)
    owner, admin = Principal("user", team.owner.id), Principal("user", team.admin.id)
    results = await asyncio.gather(*calls(app.members, team.id, mia, owner, admin), return_exceptions=True)
    return team, results


@pytest.mark.gen_test(timeout=30)
async def test_role_rules_hold_against_a_concurrent_promotion(api, server):
    """An admin demoting a member while the owner promotes that member to owner: the rules are
    checked against the roles as they are inside the write, so the admin cannot demote an owner."""
    team, results = await race_on_member(api, server, lambda members, w, mia, owner, admin: (
        members.update(w, mia, owner, role="owner"),
        members.update(w, mia, admin, role="member"),
    ))
    assert isinstance(results[1], Forbidden), results
    listed = await api.get(path(team), token=team.owner.token)
    assert [m["role"] for m in listed.json["data"]] == ["owner", "admin", "owner"]


@pytest.mark.gen_test(timeout=30)
async def test_removal_rules_hold_against_a_concurrent_promotion(api, server):
    team, results = await race_on_member(api, server, lambda members, w, mia, owner, admin: (
        members.update(w, mia, owner, role="admin"),
        members.remove(w, mia, admin),
    ))
    assert isinstance(results[1], Forbidden), results  # only owners remove admins
    listed = await api.get(path(team), token=team.owner.token)
    assert [m["role"] for m in listed.json["data"]] == ["owner", "admin", "admin"]
