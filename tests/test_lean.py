"""The lean path (rosetta/handlers/lean.py): plain history reads answered without a RequestHandler.

Each test reads the real server's ``lean_stats`` to know which path answered: the lean path must
answer exactly what the normal handler answers, and hand every other case to it. Every test runs
twice: with the fast lane (rosetta/fastlane.py), which answers a connection's plain reads before
Tornado sees them, and without it, when ``LeanGet`` inside Tornado answers them.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

import pytest

from tests.rest_support import make_team
from tests.support import register, workspace_with

# Headers that differ between two answers to the same read made a moment apart.
VARYING = {"Date", "X-Ratelimit-Remaining"}


@pytest.fixture(params=[True, False], ids=["fast-lane", "tornado"])
def fast_lane(request):
    return request.param


@pytest.fixture
def settings():
    """A test's own configuration; ``server_overrides`` adds the fast lane's switch to it."""
    return {}


@pytest.fixture
def server_overrides(fast_lane, settings):
    return {**settings, "server": {**settings.get("server", {}), "fast_lane": fast_lane}}


def stats(server):
    return server.app.http.lean_stats


def history(team, channel_id=None):
    return f"/workspaces/{team.id}/channels/{channel_id or team.general['id']}/messages"


def comparable(response):
    return {name: value for name, value in response.headers.get_all() if name not in VARYING}


@pytest.mark.gen_test(timeout=30)
async def test_a_plain_read_is_answered_lean_exactly_as_the_handler_answers_it(api, server, fast_lane):
    team = await make_team(api)
    path = history(team)
    for i in range(3):
        assert (await api.post(path, {"content": f"m{i}"}, token=team.member.token)).status == 201

    lean = await api.get(f"{path}?limit=2", token=team.owner.token)
    assert (stats(server).answered, stats(server).handed_on) == (1, 0)
    assert stats(server).in_fast_lane == (1 if fast_lane else 0)
    # An argument the route does not read makes the request not plain: the normal handler answers it.
    normal = await api.get(f"{path}?limit=2&unread=1", token=team.owner.token)
    assert (stats(server).answered, stats(server).handed_on) == (1, 0)

    assert lean.status == normal.status == 200
    assert lean.body == normal.body
    assert [m["original_content"] for m in lean.json["data"]] == ["m2", "m1"]
    assert comparable(lean) == comparable(normal)
    assert lean.headers["Etag"] and lean.headers["Server"].startswith("TornadoServer/")
    assert lean.headers["Date"].endswith(" GMT")

    older = await api.get(f"{path}?limit=2&before={lean.json['meta']['next_cursor']}", token=team.owner.token)
    assert [m["original_content"] for m in older.json["data"]] == ["m0"]
    assert stats(server).answered == 2


@pytest.mark.parametrize("settings", [{"limits": {"api_per_minute": 3}}])
@pytest.mark.gen_test(timeout=30)
async def test_the_rate_limit_counts_each_read_once_and_the_handler_answers_429(api, server):
    ana = await register(api, "Ana")
    workspace = await workspace_with(api, ana)  # two of ana's three requests this minute
    path = f"/workspaces/{workspace['id']}/channels/{workspace['general']['id']}/messages"
    login = await api.post("/auth/app/login", {"email": ana.email, "password": ana.password, "device_name": "t"})
    assert login.status == 200, login
    token = login.json["access_token"]  # a new token: a new window
    left = []
    for _ in range(3):
        answer = await api.get(path, token=token)
        assert answer.status == 200
        left.append(answer.headers["X-RateLimit-Remaining"])
    assert left == ["2", "1", "0"]
    assert {answer.headers["X-RateLimit-Limit"]} == {"3"}
    refused = await api.get(path, token=token)
    assert refused.status == 429 and refused.headers["Retry-After"]
    assert (stats(server).answered, stats(server).handed_on) == (3, 1)


@pytest.mark.gen_test(timeout=30)
async def test_every_refusal_is_handed_to_the_handler(api, server):
    team = await make_team(api)
    path = history(team)
    locked = await api.post(f"/workspaces/{team.id}/channels", {"name": "Vault", "password": "open-sesame"},
                            token=team.owner.token)
    robot = await api.post("/me/tokens", {"name": "bot", "abilities": ["automation"]}, token=team.owner.token)
    cases = [
        (path, "01arz3ndektsv4rrffq69g5fav|nope", 401, {"message": "Unauthenticated."}),
        (path, robot.json["data"]["token"], 403, None),  # a valid token without the ability
        (path, team.outsider.token, 404, None),  # not in the workspace: it does not exist for him
        (history(team, locked.json["data"]["id"]), team.member.token, 403,
         {"code": ["channel_password_required"]}),
        (f"{path}?before=zzz", team.owner.token, 422, {"before": ["The before field must be a message id."]}),
        (f"{path}?limit=0", team.owner.token, 422, None),
    ]
    for number, (url, token, status, detail) in enumerate(cases, start=1):
        answer = await api.get(url, token=token)
        assert answer.status == status, (url, answer)
        if detail is not None:
            assert detail.items() <= answer.json.items() or answer.json.get("errors") == detail, answer
        assert (stats(server).answered, stats(server).handed_on) == (0, number)


@pytest.mark.gen_test(timeout=30)
async def test_what_is_not_plain_never_reaches_the_lean_path(api, server):
    team = await make_team(api)
    path = history(team)
    first = await api.get(path, token=team.owner.token)
    assert stats(server).answered == 1
    not_plain = [
        dict(path=path, headers={"If-None-Match": first.headers["Etag"]}),  # the handler answers 304
        dict(path=path, headers={"X-Rosetta-Guest-Token": "x"}),  # mixed credentials: 401
        dict(path=f"{path}?limit=2&limit=3"),
        dict(path=f"{path}?limit=%C3%A9"),
        dict(path=path, token=None),
    ]
    statuses = []
    for case in not_plain:
        answer = await api.get(case["path"], token=case.get("token", team.owner.token), headers=case.get("headers"))
        statuses.append(answer.status)
    assert statuses == [304, 401, 200, 422, 401]
    assert (stats(server).answered, stats(server).handed_on) == (1, 0)


@pytest.mark.gen_test(timeout=30)
async def test_a_path_that_is_not_utf8_is_the_handlers_400(api, server):
    team = await make_team(api)
    not_utf8 = quote(bytes([0xFF]))
    answer = await api.get(f"/workspaces/{team.id}/channels/{not_utf8}/messages", token=team.owner.token)
    assert answer.status == 400
    assert stats(server).handed_on == 1


@pytest.mark.gen_test(timeout=30)
async def test_direct_history_is_lean_too(api, server):
    team = await make_team(api)
    opened = await api.post("/direct-conversations", {"participant_user_id": team.member.id}, token=team.owner.token)
    path = f"/direct-conversations/{opened.json['data']['id']}/messages"
    assert (await api.post(path, {"content": "hola"}, token=team.owner.token)).status == 201
    read = await api.get(path, token=team.member.token)
    assert [m["original_content"] for m in read.json["data"]] == ["hola"]
    assert (await api.get(path, token=team.admin.token)).status == 404  # not one of the two
    assert (stats(server).answered, stats(server).handed_on) == (1, 1)


@pytest.mark.parametrize("settings", [{"server": {"cors_origins": ["https://app.example.test"],
                                                  "access_log": "all"}}])
@pytest.mark.gen_test(timeout=30)
async def test_lean_answers_carry_cors_and_reach_the_access_log(api, server, caplog):
    caplog.set_level(logging.INFO, logger="tornado.access")
    team = await make_team(api)
    path = history(team)
    mine = await api.get(path, token=team.owner.token, headers={"Origin": "https://app.example.test"})
    other = await api.get(path, token=team.owner.token, headers={"Origin": "https://elsewhere.test"})
    assert stats(server).answered == 2
    assert mine.headers["Access-Control-Allow-Origin"] == "https://app.example.test"
    assert mine.headers["Access-Control-Allow-Credentials"] == "true" and mine.headers["Vary"] == "Origin"
    assert other.headers["Access-Control-Allow-Origin"] == "*" and "Vary" not in other.headers
    logged = [r.getMessage() for r in caplog.records if r.name == "tornado.access" and "/messages" in r.getMessage()]
    assert len(logged) == 2 and all(line.startswith(f"200 GET /api/v1{path} (127.0.0.1)") for line in logged)
