"""Invites: issue, list, revoke, public preview (rate limited), accept, and max_uses under a race."""

from __future__ import annotations

import asyncio

import pytest

from tests.rest_support import events, make_team
from tests.support import register, workspace_with

INVALID = {"message": "This invite link is not valid."}


async def new_invite(api, team, token=None, **body):
    body = {"expires_in_days": 1, **body}
    created = await api.post(f"/workspaces/{team.id}/invites", body, token=token or team.owner.token)
    assert created.status == 201, created
    return created.json["data"]


@pytest.mark.gen_test(timeout=30)
async def test_create_list_and_shape(api, server, clock):
    team = await make_team(api)
    invite = await new_invite(api, team, token=team.admin.token, expires_in_days=3, max_uses=4)
    assert set(invite) == {"id", "workspace_id", "code", "url", "expires_at", "max_uses", "uses", "created_by",
                           "created_at"}
    assert invite["workspace_id"] == team.id and invite["max_uses"] == 4 and invite["uses"] == 0
    assert invite["created_by"] == team.admin.id
    assert invite["expires_at"] == "2026-11-24T12:00:00.000000+00:00"
    assert invite["url"] == f"{server.config.server.base_url()}/api/v1/invites/{invite['code']}"
    listed = await api.get(f"/workspaces/{team.id}/invites", token=team.owner.token)
    assert listed.status == 200
    assert invite["id"] in [i["id"] for i in listed.json["data"]]
    created = await events(server, "invite.created")
    assert created[-1]["audience_id"] == team.id and "code" not in created[-1]["payload"]


@pytest.mark.parametrize("server_overrides", [{"auth": {"frontend_url": "https://chat.example.test/"}}])
@pytest.mark.gen_test
async def test_url_uses_frontend_when_configured(api):
    owner = await register(api, "Olga")
    ws = await workspace_with(api, owner)
    created = await api.post(f"/workspaces/{ws['id']}/invites", {"expires_in_days": 1}, token=owner.token)
    data = created.json["data"]
    assert data["url"] == f"https://chat.example.test/invites/{data['code']}"


@pytest.mark.parametrize("body, field", [
    ({}, "expires_in_days"),
    ({"expires_in_days": 0}, "expires_in_days"),
    ({"expires_in_days": 31}, "expires_in_days"),
    ({"expires_in_days": "7"}, "expires_in_days"),
    ({"expires_in_days": 1.5}, "expires_in_days"),
    ({"expires_in_days": 1, "max_uses": 0}, "max_uses"),
    ({"expires_in_days": 1, "max_uses": "5"}, "max_uses"),
])
@pytest.mark.gen_test
async def test_create_validation(api, body, field):
    owner = await register(api, "Olga")
    ws = await workspace_with(api, owner)
    response = await api.post(f"/workspaces/{ws['id']}/invites", body, token=owner.token)
    assert response.status == 422, response
    assert field in response.json["errors"]


@pytest.mark.gen_test(timeout=30)
async def test_preview_is_public_and_shows_only_the_preview(api):
    team = await make_team(api)
    invite = await new_invite(api, team)
    preview = await api.get(f"/invites/{invite['code']}")
    assert preview.status == 200, preview
    assert preview.json == {"data": {
        "workspace": {"name": "Team", "slug": team.workspace["slug"], "member_count": 3},
        "inviter": {"name": "Olga"},
        "expires_at": invite["expires_at"],
    }}
    assert preview.headers["X-RateLimit-Limit"] == "30"
    assert preview.headers["X-RateLimit-Remaining"] == "29"


@pytest.mark.gen_test
async def test_unknown_code_is_404_with_rate_limit_headers(api):
    response = await api.get("/invites/nope")
    assert response.status == 404 and response.json == INVALID
    assert response.headers["X-RateLimit-Limit"] == "30"
    assert response.headers["X-RateLimit-Remaining"] == "29"
    long_code = await api.get("/invites/" + "x" * 500)
    assert long_code.status == 404 and long_code.json == INVALID


@pytest.mark.parametrize("server_overrides", [{"limits": {"invite_preview_per_minute": 3}}])
@pytest.mark.gen_test
async def test_preview_rate_limited_per_address(api, clock):
    for _ in range(3):
        assert (await api.get("/invites/whatever")).status == 404
    limited = await api.get("/invites/whatever")
    assert limited.status == 429 and limited.json == {"message": "Too Many Attempts."}
    assert int(limited.headers["Retry-After"]) > 0
    assert limited.headers["X-RateLimit-Limit"] == "3" and limited.headers["X-RateLimit-Remaining"] == "0"
    clock.advance(seconds=61)
    assert (await api.get("/invites/whatever")).status == 404


@pytest.mark.gen_test(timeout=30)
async def test_accept_joins_as_member_once(api, server):
    team = await make_team(api)
    invite = await new_invite(api, team)
    newcomer = await register(api, "Nia")
    accepted = await api.post(f"/invites/{invite['code']}/accept", token=newcomer.token)
    assert accepted.status == 200, accepted
    assert accepted.json["data"]["id"] == team.id and accepted.json["data"]["my_role"] == "member"
    assert accepted.json["data"]["member_count"] == 4
    again = await api.post(f"/invites/{invite['code']}/accept", token=newcomer.token)
    assert again.status == 200 and again.json["data"]["id"] == team.id
    listed = await api.get(f"/workspaces/{team.id}/invites", token=team.owner.token)
    uses = next(i["uses"] for i in listed.json["data"] if i["id"] == invite["id"])
    assert uses == 1  # the second accept did not count
    joined = [e for e in await events(server, "member.joined") if e["payload"]["user"]["id"] == newcomer.id]
    assert len(joined) == 1 and joined[0]["audience_kind"] == "workspace" and joined[0]["audience_id"] == team.id
    assert (await api.get(f"/workspaces/{team.id}", token=newcomer.token)).status == 200


@pytest.mark.gen_test
async def test_accept_needs_authentication(api):
    response = await api.post("/invites/anything/accept")
    assert response.status == 401 and response.json == {"message": "Unauthenticated."}


@pytest.mark.gen_test(timeout=30)
async def test_expired_invite_is_invalid(api, clock):
    team = await make_team(api)
    invite = await new_invite(api, team, expires_in_days=1)
    clock.advance(days=1, seconds=1)
    late = await register(api, "Late")
    assert (await api.get(f"/invites/{invite['code']}")).json == INVALID
    accepted = await api.post(f"/invites/{invite['code']}/accept", token=late.token)
    assert accepted.status == 404 and accepted.json == INVALID


@pytest.mark.gen_test(timeout=30)
async def test_revoked_invite_is_invalid(api, server):
    team = await make_team(api)
    invite = await new_invite(api, team)
    revoked = await api.delete(f"/workspaces/{team.id}/invites/{invite['id']}", token=team.admin.token)
    assert revoked.status == 204 and revoked.body == b""
    assert (await api.get(f"/invites/{invite['code']}")).status == 404
    late = await register(api, "Late")
    accepted = await api.post(f"/invites/{invite['code']}/accept", token=late.token)
    assert accepted.status == 404 and accepted.json == INVALID
    again = await api.delete(f"/workspaces/{team.id}/invites/{invite['id']}", token=team.admin.token)
    assert again.status == 404
    listed = await api.get(f"/workspaces/{team.id}/invites", token=team.owner.token)
    assert invite["id"] not in [i["id"] for i in listed.json["data"]]
    assert (await events(server, "invite.revoked"))[-1]["payload"]["id"] == invite["id"]


@pytest.mark.gen_test(timeout=30)
async def test_exhausted_invite_is_invalid(api):
    team = await make_team(api)
    invite = await new_invite(api, team, max_uses=1)
    first, second = await register(api, "First"), await register(api, "Second")
    assert (await api.post(f"/invites/{invite['code']}/accept", token=first.token)).status == 200
    refused = await api.post(f"/invites/{invite['code']}/accept", token=second.token)
    assert refused.status == 404 and refused.json == INVALID
    assert (await api.get(f"/invites/{invite['code']}")).status == 404


@pytest.mark.gen_test
async def test_revoke_unknown_or_other_workspace_invite_is_404(api):
    owner = await register(api, "Olga")
    other = await register(api, "Oleg")
    mine = await workspace_with(api, owner, name="Mine")
    theirs = await workspace_with(api, other, name="Theirs")
    invite = await api.post(f"/workspaces/{theirs['id']}/invites", {"expires_in_days": 1}, token=other.token)
    cross = await api.delete(f"/workspaces/{mine['id']}/invites/{invite.json['data']['id']}", token=owner.token)
    assert cross.status == 404
    assert (await api.delete(f"/workspaces/{mine['id']}/invites/not-an-id", token=owner.token)).status == 404


@pytest.mark.parametrize("server_overrides", [{"limits": {"register_per_minute": 0}}])
@pytest.mark.gen_test(timeout=60)
async def test_fifty_simultaneous_accepts_of_a_five_use_invite_admit_five(api, server):
    owner = await register(api, "Olga")
    ws = await workspace_with(api, owner)
    created = await api.post(f"/workspaces/{ws['id']}/invites", {"expires_in_days": 1, "max_uses": 5},
                             token=owner.token)
    code = created.json["data"]["code"]
    users = [await register(api, f"Racer {n}") for n in range(50)]
    results = await asyncio.gather(*(api.post(f"/invites/{code}/accept", token=u.token) for u in users))
    statuses = sorted(r.status for r in results)
    assert statuses == [200] * 5 + [404] * 45
    listed = await api.get(f"/workspaces/{ws['id']}/invites", token=owner.token)
    assert listed.json["data"][0]["uses"] == 5
    members = await api.get(f"/workspaces/{ws['id']}/members", token=owner.token)
    assert members.json["meta"]["total"] == 6
