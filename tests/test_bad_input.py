"""Bad input across routes: 400 for broken JSON, 413 for big bodies, 422 naming the field, 404 for unknown ids.

Never a 500, and never a half-written row: after every refusal the data is as it was.
"""

from __future__ import annotations

import json

import pytest

from tests.rest_support import make_team

Z = "01arz3ndektsv4rrffq69g5fav"  # a well-formed id that names nothing

# method, path, a valid body for that route (used to send it broken, wrapped or with a bad string)
WRITE_ROUTES = [
    ("POST", "/workspaces", {"name": "New"}, "name"),
    ("POST", "/workspaces/{w}/channels", {"name": "new"}, "name"),
    ("PUT", "/workspaces/{w}/channels/{c}", {"name": "renamed"}, "name"),
    ("POST", "/workspaces/{w}/channels/{c}/messages", {"content": "hi"}, "content"),
    ("PATCH", "/workspaces/{w}/channels/{c}/messages/{m}", {"content": "hi"}, "content"),
    ("POST", "/workspaces/{w}/invites", {"expires_in_days": 1}, None),
    ("PUT", "/workspaces/{w}/members/{t}", {"role": "admin"}, "role"),
    ("POST", "/direct-conversations", {"participant_user_id": Z}, "participant_user_id"),
    ("POST", "/direct-recipients/resolve", {"email": "a@b.test"}, "email"),
    ("POST", "/direct-conversations/{d}/messages", {"content": "hi"}, "content"),
    ("PATCH", "/direct-conversations/{d}/messages/{dm}", {"content": "hi"}, "content"),
    ("POST", "/auth/app/register", {"name": "X", "email": "x@example.test"}, "name"),
    ("POST", "/auth/app/login", {"email": "x@example.test", "password": "whatever-1"}, "email"),
]
IDS = [f"{method} {path}" for method, path, _, _ in WRITE_ROUTES]


async def fixture_paths(api):
    team = await make_team(api)
    sent = await api.post(f"/workspaces/{team.id}/channels/{team.general['id']}/messages", {"content": "x"},
                          token=team.owner.token)
    members = await api.get(f"/workspaces/{team.id}/members", token=team.owner.token)
    mia = next(m["id"] for m in members.json["data"] if m["user"]["id"] == team.member.id)
    dm = await api.post("/direct-conversations", {"participant_user_id": team.member.id}, token=team.owner.token)
    dm_message = await api.post(f"/direct-conversations/{dm.json['data']['id']}/messages", {"content": "x"},
                                token=team.owner.token)
    values = {"w": team.id, "c": team.general["id"], "m": sent.json["data"]["id"], "t": mia,
              "d": dm.json["data"]["id"], "dm": dm_message.json["data"]["id"]}
    return team, values


@pytest.mark.parametrize("method, path, body, field", WRITE_ROUTES, ids=IDS)
@pytest.mark.gen_test(timeout=30)
async def test_malformed_and_wrapped_json_is_400(api, method, path, body, field):
    team, values = await fixture_paths(api)
    url = path.format(**values)
    headers = {"Content-Type": "application/json"}
    for raw in (b"{not json", b'{"name": ', b"\xff\xfe{}", b"[]", b'[{"name": "x"}]', b'"text"', b"42", b"null"):
        response = await api.request(method, url, raw=raw, headers=headers, token=team.owner.token)
        assert response.status == 400, (raw, response)
        assert response.json == {"message": "Malformed JSON body."}  # api.md §1, for arrays and scalars too


@pytest.mark.parametrize("method, path, body, field", [r for r in WRITE_ROUTES if r[3]], ids=[i for i, r in
                         zip(IDS, WRITE_ROUTES, strict=True) if r[3]])
@pytest.mark.gen_test(timeout=30)
async def test_wrong_types_nul_and_lone_surrogates_are_422_naming_the_field(api, method, path, body, field):
    team, values = await fixture_paths(api)
    url = path.format(**values)
    for bad in (123, ["x"], {"x": 1}, True):
        response = await api.request(method, url, {**body, field: bad}, token=team.owner.token)
        assert response.status == 422 and field in response.json["errors"], (bad, response)
    for escaped in ('"a\\u0000b"', '"\\ud800"', '"x\\udfffy"'):  # JSON escapes: NUL, lone surrogates
        payload = "{" + ", ".join(f'"{k}": {escaped if k == field else json.dumps(v)}' for k, v in body.items()) + "}"
        response = await api.request(method, url, raw=payload.encode(), headers={"Content-Type": "application/json"},
                                     token=team.owner.token)
        assert response.status == 422 and field in response.json["errors"], (payload, response)


@pytest.mark.parametrize("server_overrides", [{"server": {"max_body_mb": 0.01}}])
@pytest.mark.gen_test(timeout=30)
async def test_body_over_the_limit_is_413(api):
    team, values = await fixture_paths(api)
    big = "x" * 20_000  # 0.01 MB is ~10 KB
    for method, path, _, _ in WRITE_ROUTES[:5]:
        response = await api.request(method, path.format(**values), {"name": big, "content": big},
                                     token=team.owner.token)
        assert response.status == 413, (path, response)
    listed = await api.get(f"/workspaces/{values['w']}/channels/{values['c']}/messages", token=team.owner.token)
    assert [m["original_content"] for m in listed.json["data"]] == ["x"]  # nothing half-written


@pytest.mark.gen_test(timeout=30)
async def test_out_of_range_query_parameters_are_422(api):
    team, values = await fixture_paths(api)
    cases = [
        (f"/workspaces/{values['w']}/channels/{values['c']}/messages?limit=100000", "limit"),
        (f"/workspaces/{values['w']}/channels/{values['c']}/messages?limit=0", "limit"),
        (f"/workspaces/{values['w']}/channels/{values['c']}/messages?limit=ten", "limit"),
        (f"/direct-conversations/{values['d']}/messages?limit=100000", "limit"),
        (f"/direct-conversations/{values['d']}/messages?after=zzz", "after"),
        (f"/workspaces/{values['w']}/members?per_page=100000", "per_page"),
        (f"/workspaces/{values['w']}/members?page=0", "page"),
    ]
    for path, field in cases:
        response = await api.get(path, token=team.owner.token)
        assert response.status == 422 and field in response.json["errors"], (path, response)


@pytest.mark.gen_test(timeout=30)
async def test_unknown_ids_are_404(api):
    team, values = await fixture_paths(api)
    w, c = values["w"], values["c"]
    cases = [
        ("GET", f"/workspaces/{Z}"), ("GET", "/workspaces/not-an-id"),
        ("GET", f"/workspaces/{Z}/channels"), ("GET", f"/workspaces/{w}/channels/{Z}"),
        ("PUT", f"/workspaces/{w}/channels/{Z}"), ("DELETE", f"/workspaces/{w}/channels/{Z}"),
        ("POST", f"/workspaces/{w}/channels/{Z}/join"), ("GET", f"/workspaces/{w}/channels/{Z}/messages"),
        ("PATCH", f"/workspaces/{w}/channels/{c}/messages/{Z}"), ("DELETE", f"/workspaces/{w}/channels/{c}/messages/x"),
        ("PUT", f"/workspaces/{w}/members/{Z}"), ("DELETE", f"/workspaces/{w}/members/{Z}"),
        ("DELETE", f"/workspaces/{w}/invites/{Z}"), ("GET", f"/workspaces/{Z}/members"),
        ("GET", f"/direct-conversations/{Z}/messages"), ("POST", f"/direct-conversations/{Z}/messages"),
        ("PATCH", f"/direct-conversations/{values['d']}/messages/{Z}"),
        ("DELETE", f"/direct-conversations/{values['d']}/messages/{Z}"),
        ("DELETE", f"/me/tokens/{Z}"), ("GET", "/no/such/route"),
    ]
    for method, path in cases:
        body = {"name": "x", "content": "x", "role": "member"} if method in ("PUT", "PATCH", "POST") else None
        response = await api.request(method, path, body, token=team.owner.token)
        assert response.status == 404, (method, path, response)
        assert response.json["message"] == "Not found."


@pytest.mark.gen_test(timeout=30)
async def test_json_nested_past_the_parser_stack_is_400_not_500(api):
    # 100 KB of "[" (well under max_body_mb) makes json.loads raise RecursionError, not ValueError.
    for raw in (b"[" * 100_000, b'{"a":' * 50_000):
        response = await api.request("POST", "/auth/app/login", raw=raw, headers={"Content-Type": "application/json"})
        assert response.status == 400 and response.json == {"message": "Malformed JSON body."}, response


@pytest.mark.gen_test(timeout=30)
async def test_token_expiry_outside_utc_range_is_422_not_500(api):
    team, _ = await fixture_paths(api)
    for moment in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00"):
        response = await api.post("/me/tokens", {"name": "bot", "abilities": ["automation"], "expires_at": moment},
                                  token=team.owner.token)
        assert response.status == 422 and "expires_at" in response.json["errors"], (moment, response)
    listed = await api.get("/me/tokens", token=team.owner.token)
    assert listed.json["data"] == []  # nothing half-written


@pytest.mark.gen_test(timeout=30)
async def test_page_links_survive_a_query_that_is_not_utf8(api):
    """Page links copy the query; an argument the route never reads may still be any bytes."""
    team = await make_team(api)
    for path in (f"/workspaces/{team.id}/members?x=%ff&per_page=1", "/me/files?zz=%c3"):
        listed = await api.get(path, token=team.owner.token)
        assert listed.status == 200, (path, listed)
        assert "per_page" in listed.json["meta"] and listed.json["links"]["first"]


@pytest.mark.gen_test
async def test_error_answers_keep_the_seeds_headers(api):
    """The seed's 401 and 404 examples carry content-type, cache-control and access-control-allow-origin."""
    for path in ("/workspaces", "/invites/not-a-code"):
        answer = await api.get(path)
        assert answer.status in (401, 404), answer
        assert answer.headers["Content-Type"] == "application/json; charset=utf-8"
        assert answer.headers["Cache-Control"] == "no-cache, private"
        assert answer.headers["Access-Control-Allow-Origin"] == "*"
