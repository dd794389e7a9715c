"""Temporary rooms, the developer's side: create, list, usage, extend; plans, quotas, abilities."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from tornado import gen

from tests.support import register

ROOM_KEYS = {"room_id", "workspace_id", "channel_id", "name", "kind", "status", "external_reference", "expires_at",
             "max_expires_at", "extension_count", "join"}
ALL_ROOM_ABILITIES = ["temporary-rooms:create", "temporary-rooms:read", "temporary-rooms:extend"]


async def personal_token(api, user, abilities):
    made = await api.post("/me/tokens", {"name": "rooms", "abilities": abilities}, token=user.token)
    assert made.status == 201, made
    return made.json["data"]["token"]


async def developer(api, name="Dev", abilities=None):
    user = await register(api, name)
    return user, await personal_token(api, user, abilities or ALL_ROOM_ABILITIES)


@pytest.mark.gen_test
async def test_create_room_shape_and_its_workspace_and_channel(api, server, clock):
    user, token = await developer(api)
    made = await api.post("/external/rooms", {"name": "Customer Support Room", "external_reference": "customer-123",
                                              "ttl_hours": 12}, token=token)
    assert made.status == 201, made
    room = made.json["data"]
    assert set(room) == ROOM_KEYS
    assert room["name"] == "Customer Support Room" and room["kind"] == "temporary_room"
    assert room["status"] == "active" and room["external_reference"] == "customer-123"
    assert room["extension_count"] == 0
    assert room["expires_at"] == "2026-11-22T00:00:00.000000+00:00"  # START 12:00 + 12 h
    assert room["max_expires_at"] == "2026-11-22T12:00:00.000000+00:00"  # free plan: 24 h lifetime
    base = server.config.server.base_url()
    assert room["join"] == {"method": "POST", "endpoint": f"{base}/api/v1/external/rooms/{room['room_id']}/guests"}
    assert len({room["room_id"], room["workspace_id"], room["channel_id"]}) == 3
    # The room is a workspace with one temporary_room channel, owned by the developer (login token).
    channels = await api.get(f"/workspaces/{room['workspace_id']}/channels", token=user.token)
    assert channels.status == 200, channels
    assert [(c["id"], c["kind"]) for c in channels.json["data"]] == [(room["channel_id"], "temporary_room")]
    # ... but it is not listed among the developer's workspaces.
    listed = await api.get("/workspaces", token=user.token)
    assert room["workspace_id"] not in [w["id"] for w in listed.json["data"]]


@pytest.mark.gen_test
async def test_fractional_ttl_and_public_url_in_join(api, server):
    _, token = await developer(api)
    made = await api.post("/external/rooms", {"name": "Quick", "ttl_hours": 0.5}, token=token)
    assert made.status == 201, made
    assert made.json["data"]["expires_at"] == "2026-11-21T12:30:00.000000+00:00"
    assert made.json["data"]["external_reference"] is None


@pytest.mark.gen_test
@pytest.mark.parametrize("server_overrides", [{"server": {"public_url": "https://api.example.test/"}}])
async def test_join_endpoint_uses_public_url(api):
    _, token = await developer(api)
    made = await api.post("/external/rooms", {"name": "R", "ttl_hours": 1}, token=token)
    rid = made.json["data"]["room_id"]
    assert made.json["data"]["join"]["endpoint"] == f"https://api.example.test/api/v1/external/rooms/{rid}/guests"


@pytest.mark.gen_test
async def test_create_validation(api):
    _, token = await developer(api)
    over = await api.post("/external/rooms", {"name": "R", "ttl_hours": 24.5}, token=token)
    assert over.status == 422
    assert over.json == {"message": "The given data was invalid.", "errors": {"ttl_hours": ["ttl_hours_exceeds_limit"]}}
    exactly = await api.post("/external/rooms", {"name": "R", "ttl_hours": 24}, token=token)
    assert exactly.status == 201, exactly
    for bad in ({}, {"name": "", "ttl_hours": "12"}, {"name": "R", "ttl_hours": 0.001},
                {"name": "R", "ttl_hours": True}, {"name": ["x"], "ttl_hours": -1}):
        refused = await api.post("/external/rooms", bad, token=token)
        assert refused.status == 422, (bad, refused)
        assert "ttl_hours" in refused.json["errors"]
    missing_name = await api.post("/external/rooms", {"ttl_hours": 1}, token=token)
    assert missing_name.status == 422 and set(missing_name.json["errors"]) == {"name"}
    for huge in (b"1e300", b"1" + b"0" * 400):  # the integer is beyond any float: float() raised, a 500
        refused = await api.post("/external/rooms", raw=b'{"name": "R", "ttl_hours": ' + huge + b"}",
                                  headers={"Content-Type": "application/json"}, token=token)
        assert refused.status == 422 and refused.json["errors"] == {"ttl_hours": ["ttl_hours_exceeds_limit"]}
    below = await api.post("/external/rooms", raw=b'{"name": "R", "ttl_hours": -1' + b"0" * 400 + b"}",
                           headers={"Content-Type": "application/json"}, token=token)
    assert below.status == 422 and list(below.json["errors"]) == ["ttl_hours"]
    malformed = await api.post("/external/rooms", raw=b"{nope", headers={"Content-Type": "application/json"},
                               token=token)
    assert malformed.status == 400


@pytest.mark.gen_test
async def test_abilities_and_auth(api):
    user = await register(api, "Dev")
    read_only = await personal_token(api, user, ["temporary-rooms:read"])
    create_only = await personal_token(api, user, ["temporary-rooms:create"])
    automation = await personal_token(api, user, ["automation"])
    body = {"name": "R", "ttl_hours": 1}
    assert (await api.post("/external/rooms", body)).status == 401
    assert (await api.post("/external/rooms", body, token=read_only)).status == 403
    assert (await api.post("/external/rooms", body, token=automation)).status == 403
    made = await api.post("/external/rooms", body, token=create_only)
    assert made.status == 201
    room_id = made.json["data"]["room_id"]
    assert (await api.get("/external/rooms", token=create_only)).status == 403
    assert (await api.get("/external/rooms/usage", token=create_only)).status == 403
    assert (await api.get("/external/rooms", token=read_only)).status == 200
    assert (await api.post(f"/external/rooms/{room_id}/extend", {"extension_hours": 1}, token=read_only)).status == 403
    # Login tokens carry every ability.
    assert (await api.get("/external/rooms/usage", token=user.token)).status == 200


@pytest.mark.gen_test
async def test_list_only_my_rooms_with_status(api, clock):
    _, token = await developer(api, "Dev")
    _, other = await developer(api, "Eve")
    first = (await api.post("/external/rooms", {"name": "One", "ttl_hours": 1}, token=token)).json["data"]
    second = (await api.post("/external/rooms", {"name": "Two", "ttl_hours": 5}, token=token)).json["data"]
    await api.post("/external/rooms", {"name": "Theirs", "ttl_hours": 1}, token=other)
    listed = await api.get("/external/rooms", token=token)
    assert listed.status == 200
    assert [r["room_id"] for r in listed.json["data"]] == [second["room_id"], first["room_id"]]
    assert all(set(r) == ROOM_KEYS for r in listed.json["data"])
    assert listed.json["meta"]["total"] == 2
    # ?sort= as on every page list (api.md §1): it was ignored here, an unknown field included.
    by_end = await api.get("/external/rooms?sort=-expires_at", token=token)
    assert [r["name"] for r in by_end.json["data"]] == ["Two", "One"]
    by_name = await api.get("/external/rooms?sort=name&per_page=1&page=2", token=token)
    assert [r["name"] for r in by_name.json["data"]] == ["Two"] and "sort=name" in by_name.json["links"]["first"]
    oldest = await api.get("/external/rooms?sort=created_at", token=token)
    assert [r["name"] for r in oldest.json["data"]] == ["One", "Two"]
    unknown = await api.get("/external/rooms?sort=secret", token=token)
    assert unknown.status == 422 and list(unknown.json["errors"]) == ["sort"]
    clock.advance(hours=2)  # the first ended; status says so even before the sweep ran
    statuses = {r["name"]: r["status"] for r in (await api.get("/external/rooms", token=token)).json["data"]}
    assert statuses == {"One": "expired", "Two": "active"}


@pytest.mark.gen_test
async def test_usage_shape_and_active_quota_message(api, clock):
    _, token = await developer(api)
    usage = await api.get("/external/rooms/usage", token=token)
    assert usage.status == 200
    assert usage.json == {"data": {
        "limits": {"active_limit": 3, "monthly_creation_limit": 10},
        "usage": {"active_room_count": 0, "monthly_creation_count": 0},
        "abuse_signals": {"active_limit_reached": False, "monthly_creation_limit_reached": False},
    }}
    for index in range(3):
        made = await api.post("/external/rooms", {"name": f"R{index}", "ttl_hours": 1}, token=token)
        assert made.status == 201
    refused = await api.post("/external/rooms", {"name": "R4", "ttl_hours": 1}, token=token)
    assert refused.status == 403
    assert refused.json == {"message": "Temporary Room active room limit exceeded.",
                            "errors": {"code": ["temporary_room_quota_exceeded"]}}
    usage = (await api.get("/external/rooms/usage", token=token)).json["data"]
    assert usage["usage"] == {"active_room_count": 3, "monthly_creation_count": 3}
    assert usage["abuse_signals"] == {"active_limit_reached": True, "monthly_creation_limit_reached": False}
    clock.advance(hours=1)  # all three ended: active slots free up, the monthly count stays
    again = await api.post("/external/rooms", {"name": "R5", "ttl_hours": 1}, token=token)
    assert again.status == 201
    usage = (await api.get("/external/rooms/usage", token=token)).json["data"]
    assert usage["usage"] == {"active_room_count": 1, "monthly_creation_count": 4}


@pytest.mark.gen_test
@pytest.mark.parametrize("server_overrides", [{"temporary_rooms": {"active_limit": 3, "monthly_creation_limit": 2}}])
async def test_quota_across_a_month_boundary(api, clock):
    _, token = await developer(api)
    clock.set(datetime(2026, 11, 30, 23, 0, tzinfo=UTC))
    for name in ("A", "B"):
        assert (await api.post("/external/rooms", {"name": name, "ttl_hours": 24}, token=token)).status == 201
    refused = await api.post("/external/rooms", {"name": "C", "ttl_hours": 24}, token=token)
    assert refused.status == 403
    assert refused.json == {"message": "Temporary Room monthly creation limit exceeded.",
                            "errors": {"code": ["temporary_room_quota_exceeded"]}}
    usage = (await api.get("/external/rooms/usage", token=token)).json["data"]
    assert usage["abuse_signals"]["monthly_creation_limit_reached"] is True
    clock.set(datetime(2026, 12, 1, 0, 30, tzinfo=UTC))  # a new calendar month (UTC)
    usage = (await api.get("/external/rooms/usage", token=token)).json["data"]
    assert usage["usage"] == {"active_room_count": 2, "monthly_creation_count": 0}
    assert (await api.post("/external/rooms", {"name": "D", "ttl_hours": 24}, token=token)).status == 201
    # The monthly count reset, but the rooms from November still count as active.
    refused = await api.post("/external/rooms", {"name": "E", "ttl_hours": 24}, token=token)
    assert refused.status == 403
    assert refused.json["message"] == "Temporary Room active room limit exceeded."


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("server_overrides", [{"temporary_rooms": {"active_limit": 3, "monthly_creation_limit": 100}}])
async def test_quota_holds_under_concurrent_creates(api, server):
    _, token = await developer(api)
    responses = await gen.multi([api.post("/external/rooms", {"name": f"R{i}", "ttl_hours": 1}, token=token)
                                 for i in range(12)])
    statuses = sorted(r.status for r in responses)
    assert statuses == [201] * 3 + [403] * 9
    listed = await api.get("/external/rooms", token=token)
    assert listed.json["meta"]["total"] == 3


@pytest.mark.gen_test
async def test_free_plan_cannot_extend(api):
    _, token = await developer(api)
    room = (await api.post("/external/rooms", {"name": "R", "ttl_hours": 1}, token=token)).json["data"]
    refused = await api.post(f"/external/rooms/{room['room_id']}/extend", {"extension_hours": 1}, token=token)
    assert refused.status == 403
    assert refused.json == {"message": "Temporary Room extension is not allowed.",
                            "errors": {"code": ["temporary_room_extension_not_allowed"]}}


@pytest.mark.gen_test
@pytest.mark.parametrize("server_overrides", [{"temporary_rooms": {"default_plan": "developer"}}])
async def test_developer_plan_extends_within_limits(api, clock):
    _, token = await developer(api)
    _, other = await developer(api, "Eve")
    over_ttl = await api.post("/external/rooms", {"name": "R", "ttl_hours": 721}, token=token)
    assert over_ttl.json["errors"] == {"ttl_hours": ["ttl_hours_exceeds_limit"]}
    room = (await api.post("/external/rooms", {"name": "R", "ttl_hours": 700}, token=token)).json["data"]
    assert room["max_expires_at"] == "2026-12-21T12:00:00.000000+00:00"  # 720 h after creation
    path = f"/external/rooms/{room['room_id']}/extend"
    extended = await api.post(path, {"extension_hours": 12.5}, token=token)
    assert extended.status == 200, extended
    assert extended.json == {"data": {"room_id": room["room_id"], "expires_at": "2026-12-21T04:30:00.000000+00:00",
                                      "max_expires_at": room["max_expires_at"], "extension_count": 1}}
    past_max = await api.post(path, {"extension_hours": 8}, token=token)
    assert past_max.status == 422
    assert past_max.json == {"message": "The given data was invalid.",
                             "errors": {"extension_hours": ["extension_hours_exceeds_limit"]}}
    assert (await api.post(path, {"extension_hours": "8"}, token=token)).status == 422
    assert (await api.post(path, {"extension_hours": 0}, token=token)).status == 422
    assert (await api.post(path, {}, token=token)).json["errors"]["extension_hours"]
    # Another developer's room, or no room at all: 404.
    assert (await api.post(path, {"extension_hours": 1}, token=other)).status == 404
    assert (await api.post("/external/rooms/nope/extend", {"extension_hours": 1}, token=token)).status == 404
    short = (await api.post("/external/rooms", {"name": "S", "ttl_hours": 1}, token=token)).json["data"]
    too_long = await api.post(f"/external/rooms/{short['room_id']}/extend", {"extension_hours": 169}, token=token)
    assert too_long.json["errors"] == {"extension_hours": ["extension_hours_exceeds_limit"]}
    clock.advance(hours=2)  # it ended: no extension brings it back
    gone = await api.post(f"/external/rooms/{short['room_id']}/extend", {"extension_hours": 1}, token=token)
    assert gone.status == 410 and gone.json["errors"] == {"code": ["temporary_room_expired"]}
    listed = {r["room_id"]: r for r in (await api.get("/external/rooms", token=token)).json["data"]}
    assert listed[room["room_id"]]["extension_count"] == 1


@pytest.mark.gen_test
async def test_plan_assigned_per_user(api, server):
    from rosetta.services.operators import OperatorService  # what `rosetta user plan` runs

    user, token = await developer(api)
    assert (await api.post("/external/rooms", {"name": "R", "ttl_hours": 48}, token=token)).status == 422
    await OperatorService(server.app.ctx, server.app.accounts).set_room_plan(user.email, "developer")
    made = await api.post("/external/rooms", {"name": "R", "ttl_hours": 48}, token=token)
    assert made.status == 201, made
    extended = await api.post(f"/external/rooms/{made.json['data']['room_id']}/extend", {"extension_hours": 1},
                              token=token)
    assert extended.status == 200 and extended.json["data"]["extension_count"] == 1


@pytest.mark.gen_test
@pytest.mark.parametrize("server_overrides", [{"temporary_rooms": {"active_limit": 0, "monthly_creation_limit": 0}}])
async def test_zero_limits_mean_no_limit(api):
    _, token = await developer(api)
    for index in range(5):
        assert (await api.post("/external/rooms", {"name": f"R{index}", "ttl_hours": 1}, token=token)).status == 201
    usage = (await api.get("/external/rooms/usage", token=token)).json["data"]
    assert usage["usage"] == {"active_room_count": 5, "monthly_creation_count": 5}
    assert usage["abuse_signals"] == {"active_limit_reached": False, "monthly_creation_limit_reached": False}
