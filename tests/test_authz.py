"""Who may do what: the authorization matrix of every workspace route, token revocation, and the auth routes."""

from __future__ import annotations

from typing import Any

import pytest

from rosetta.store.tokens import MAX_PERSONAL
from tests.rest_support import Team, make_team, member_id
from tests.support import Api, register, workspace_with

ROLES = ("anonymous", "outsider", "member", "admin", "owner")


def expect(outsider: int, member: int, admin: int, owner: int) -> dict[str, int]:
    return {"anonymous": 401, "outsider": outsider, "member": member, "admin": admin, "owner": owner}


# route name, method, path, body, expected status per role.
# {w} workspace, {c} general, {x} a spare channel, {m} a message by a plain member in general,
# {t} that member's member id, {i} an invite, {h} an incoming webhook, {o} an outgoing webhook.
# Placeholders in the body's strings are filled the same way.
OUTGOING = {"name": "receiver", "url": "https://hooks.example.test/in", "event_types": ["channel.deleted"]}
MATRIX = [
    ("workspace.show", "GET", "/workspaces/{w}", None, expect(404, 200, 200, 200)),
    ("channels.index", "GET", "/workspaces/{w}/channels", None, expect(404, 200, 200, 200)),
    ("channels.store", "POST", "/workspaces/{w}/channels", {"name": "new"}, expect(404, 403, 201, 201)),
    ("channels.show", "GET", "/workspaces/{w}/channels/{x}", None, expect(404, 200, 200, 200)),
    ("channels.update", "PUT", "/workspaces/{w}/channels/{x}", {"name": "renamed"}, expect(404, 403, 200, 200)),
    ("channels.destroy", "DELETE", "/workspaces/{w}/channels/{x}", None, expect(404, 403, 204, 204)),
    ("channels.join", "POST", "/workspaces/{w}/channels/{x}/join", {}, expect(404, 200, 200, 200)),
    ("messages.index", "GET", "/workspaces/{w}/channels/{c}/messages", None, expect(404, 200, 200, 200)),
    ("messages.store", "POST", "/workspaces/{w}/channels/{c}/messages", {"content": "hi"},
     expect(404, 201, 201, 201)),
    ("messages.update", "PATCH", "/workspaces/{w}/channels/{c}/messages/{m}", {"content": "edited"},
     expect(404, 403, 403, 403)),
    ("messages.destroy", "DELETE", "/workspaces/{w}/channels/{c}/messages/{m}", None, expect(404, 403, 204, 204)),
    ("members.index", "GET", "/workspaces/{w}/members", None, expect(404, 200, 200, 200)),
    ("members.update", "PUT", "/workspaces/{w}/members/{t}", {"role": "admin"}, expect(404, 403, 200, 200)),
    ("members.destroy", "DELETE", "/workspaces/{w}/members/{t}", None, expect(404, 403, 204, 204)),
    ("invites.index", "GET", "/workspaces/{w}/invites", None, expect(404, 403, 200, 200)),
    ("invites.store", "POST", "/workspaces/{w}/invites", {"expires_in_days": 1}, expect(404, 403, 201, 201)),
    ("invites.destroy", "DELETE", "/workspaces/{w}/invites/{i}", None, expect(404, 403, 204, 204)),
    ("webhooks.index", "GET", "/workspaces/{w}/webhooks", None, expect(404, 403, 200, 200)),
    ("webhooks.store", "POST", "/workspaces/{w}/webhooks", {"name": "CI", "default_channel_id": "{c}"},
     expect(404, 403, 201, 201)),
    ("webhooks.update", "PUT", "/workspaces/{w}/webhooks/{h}", {"name": "renamed", "is_active": False},
     expect(404, 403, 200, 200)),
    ("webhooks.destroy", "DELETE", "/workspaces/{w}/webhooks/{h}", None, expect(404, 403, 204, 204)),
    ("outgoing.index", "GET", "/workspaces/{w}/outgoing-webhooks", None, expect(404, 403, 200, 200)),
    ("outgoing.store", "POST", "/workspaces/{w}/outgoing-webhooks", OUTGOING, expect(404, 403, 201, 201)),
    ("outgoing.show", "GET", "/workspaces/{w}/outgoing-webhooks/{o}", None, expect(404, 403, 200, 200)),
    ("outgoing.update", "PUT", "/workspaces/{w}/outgoing-webhooks/{o}", {"name": "renamed"},
     expect(404, 403, 200, 200)),
    ("outgoing.destroy", "DELETE", "/workspaces/{w}/outgoing-webhooks/{o}", None, expect(404, 403, 204, 204)),
    ("outgoing.deliveries", "GET", "/workspaces/{w}/outgoing-webhooks/{o}/deliveries", None,
     expect(404, 403, 200, 200)),
    ("glossary.show", "GET", "/workspaces/{w}/glossary", None, expect(404, 200, 200, 200)),
    ("glossary.update", "PUT", "/workspaces/{w}/glossary", {"terms": ["Rosetta"]}, expect(404, 403, 200, 200)),
    ("messages.translate", "POST", "/workspaces/{w}/channels/{c}/messages/{m}/translate", {"target_language": "de"},
     expect(404, 200, 200, 200)),
]


def fill(value: Any, names: dict[str, str]) -> Any:
    """``value`` with the placeholders in its strings (a body's, or a path) replaced by ``names``."""
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, dict):
        return {key: fill(item, names) for key, item in value.items()}
    if isinstance(value, list):
        return [fill(item, names) for item in value]
    return value


async def webhook_targets(api: Api, team: Team, template: str) -> dict[str, str]:
    """A fresh incoming ({h}) and outgoing ({o}) webhook, made only for the rows that name them."""
    made: dict[str, str] = {}
    if "{h}" in template:
        hook = await api.post(f"/workspaces/{team.id}/webhooks", {"name": "hook", "default_channel_id":
                                                                  team.general["id"]}, token=team.owner.token)
        assert hook.status == 201, hook
        made["h"] = hook.json["data"]["id"]
    if "{o}" in template:
        out = await api.post(f"/workspaces/{team.id}/outgoing-webhooks", OUTGOING, token=team.owner.token)
        assert out.status == 201, out
        made["o"] = out.json["data"]["id"]
    return made


@pytest.mark.parametrize("route, method, template, body, expected", MATRIX, ids=[row[0] for row in MATRIX])
@pytest.mark.gen_test(timeout=60)
async def test_authorization_matrix(api, route, method, template, body, expected):
    team = await make_team(api)
    seen: dict[str, int] = {}
    for number, role in enumerate(ROLES):
        # Fresh targets for every caller, so that one role's delete does not decide the next role's answer.
        target = await register(api, f"Target {number}")
        invite = await api.post(f"/workspaces/{team.id}/invites", {"expires_in_days": 1}, token=team.owner.token)
        assert (await api.post(f"/invites/{invite.json['data']['code']}/accept", token=target.token)).status == 200
        spare = await api.post(f"/workspaces/{team.id}/channels", {"name": f"spare {number}"}, token=team.owner.token)
        message = await api.post(f"/workspaces/{team.id}/channels/{team.general['id']}/messages",
                                 {"content": "target"}, token=target.token)
        names = {"w": team.id, "c": team.general["id"], "x": spare.json["data"]["id"], "m": message.json["data"]["id"],
                 "t": await member_id(api, team.id, target, team.owner.token), "i": invite.json["data"]["id"],
                 **await webhook_targets(api, team, template)}
        token = None if role == "anonymous" else team.role(role).token
        response = await api.request(method, fill(template, names), fill(body, names), token=token)
        assert response.status != 500, response
        seen[role] = response.status
    assert seen == expected, route


@pytest.mark.gen_test(timeout=30)
async def test_a_password_channel_refuses_members_until_joined(api):
    team = await make_team(api)
    created = await api.post(f"/workspaces/{team.id}/channels", {"name": "vault", "password": "open-sesame"},
                             token=team.owner.token)
    messages = f"/workspaces/{team.id}/channels/{created.json['data']['id']}/messages"
    statuses = {role: (await api.get(messages, token=team.role(role).token)).status
                for role in ("outsider", "member", "admin", "owner")}
    assert statuses == {"outsider": 404, "member": 403, "admin": 200, "owner": 200}


@pytest.mark.parametrize("kind", ["webhooks", "outgoing-webhooks"])
@pytest.mark.gen_test(timeout=30)
async def test_an_admin_reaches_no_webhook_of_another_workspace_through_their_own(api, kind):
    """The webhook id is looked up inside the path's workspace: another workspace's is 404 and untouched."""
    team = await make_team(api)
    theirs = await workspace_with(api, team.outsider, name="Theirs")
    body = OUTGOING if kind == "outgoing-webhooks" else {"name": "hook", "default_channel_id": theirs["general"]["id"]}
    created = await api.post(f"/workspaces/{theirs['id']}/{kind}", body, token=team.outsider.token)
    assert created.status == 201, created
    hook = created.json["data"]
    mine = f"/workspaces/{team.id}/{kind}/{hook['id']}"
    attempts = [("PUT", mine, {"name": "hijacked", "is_active": False, "regenerate_secret": True}),
                ("DELETE", mine, None)]
    if kind == "outgoing-webhooks":
        attempts += [("GET", mine, None), ("GET", f"{mine}/deliveries", None)]
    for method, path, payload in attempts:
        refused = await api.request(method, path, payload, token=team.owner.token)
        assert refused.status == 404 and refused.json == {"message": "Not found."}, (method, path, refused)
    listed = await api.get(f"/workspaces/{theirs['id']}/{kind}", token=team.outsider.token)
    [still] = listed.json["data"]
    assert still["name"] == hook["name"] and still["is_active"] is True
    assert (await api.get(f"/workspaces/{team.id}/{kind}", token=team.owner.token)).json["data"] == []
    if kind == "webhooks":  # the secret was not regenerated: the original still posts
        posted = await api.post(f"/webhooks/{hook['id']}/messages", {"content": "still mine"}, token=hook["secret"])
        assert posted.status == 201, posted


# Token revocation ------------------------------------------------------------------------------------

async def login(api, user):
    response = await api.post("/auth/app/login", {"email": user.email, "password": user.password})
    assert response.status == 200, response
    return response.json["access_token"]


@pytest.mark.gen_test
async def test_logout_revokes_that_token_only(api):
    ana = await register(api, "Ana")
    second = await login(api, ana)
    out = await api.post("/auth/app/logout", token=ana.token)
    assert out.status == 200
    refused = await api.get("/me", token=ana.token)
    assert refused.status == 401 and refused.json == {"message": "Unauthenticated."}
    assert (await api.get("/me", token=second)).status == 200


@pytest.mark.gen_test
async def test_change_password_keeps_current_and_revokes_others(api):
    ana = await register(api, "Ana")
    other = await login(api, ana)
    changed = await api.post("/auth/app/change-password", {
        "current_password": ana.password, "password": "brand-new-pass", "password_confirmation": "brand-new-pass",
    }, token=ana.token)
    assert changed.status == 200, changed
    assert (await api.get("/me", token=ana.token)).status == 200
    assert (await api.get("/me", token=other)).status == 401
    old = await api.post("/auth/app/login", {"email": ana.email, "password": ana.password})
    assert old.status == 422


@pytest.mark.gen_test(timeout=60)
async def test_personal_tokens_are_capped_so_the_list_shows_them_all(api, server):
    ana = await register(api, "Ana")
    # 499 made earlier (as the API makes them: the cap counts rows, however they came), one more here.
    rows = [(f"p{n:025d}", ana.id, f"bot {n}") for n in range(MAX_PERSONAL - 1)]
    await server.app.db.write(lambda tx: tx.executemany(
        "INSERT INTO access_tokens (id, user_id, kind, name, secret_hash, abilities, created_at)"
        " VALUES (?, ?, 'personal', ?, 'h', '[\"automation\"]', '2026-01-01T00:00:00.000000+00:00')", rows))
    last = await api.post("/me/tokens", {"name": "last", "abilities": ["automation"]}, token=ana.token)
    assert last.status == 201, last
    over = await api.post("/me/tokens", {"name": "over", "abilities": ["automation"]}, token=ana.token)
    assert over.status == 403 and over.json["errors"] == {"code": ["personal_token_limit"]}
    listed = await api.get("/me/tokens", token=ana.token)
    assert len(listed.json["data"]) == MAX_PERSONAL  # every one of them, to revoke any
    assert (await api.delete(f"/me/tokens/{last.json['data']['id']}", token=ana.token)).status == 204
    assert (await api.post("/me/tokens", {"name": "again", "abilities": ["automation"]}, token=ana.token)).status == 201


@pytest.mark.gen_test
async def test_deleting_a_personal_token_revokes_it(api):
    ana = await register(api, "Ana")
    created = await api.post("/me/tokens", {"name": "bot", "abilities": ["automation"]}, token=ana.token)
    assert created.status == 201, created
    plain = created.json["data"]["token"]
    assert (await api.get("/me", token=plain)).status == 403  # valid, but without the ability this route needs
    deleted = await api.delete(f"/me/tokens/{created.json['data']['id']}", token=ana.token)
    assert deleted.status == 204
    assert (await api.get("/me", token=plain)).status == 401
    assert (await api.delete(f"/me/tokens/{created.json['data']['id']}", token=ana.token)).status == 404


@pytest.mark.parametrize("token", ["garbage", "01arz3ndektsv4rrffq69g5fav|nope", "|", "a" * 5000])
@pytest.mark.gen_test
async def test_bad_tokens_are_401(api, token):
    response = await api.get("/workspaces", token=token)
    assert response.status == 401 and response.json == {"message": "Unauthenticated."}


# The foundation's auth routes ----------------------------------------------------------------------------

@pytest.mark.gen_test
async def test_register_refusals(api):
    await register(api, "Ana")
    duplicate = await api.post("/auth/app/register", {"name": "Ana", "email": "ANA@example.test",
                                                      "password": "correct-horse-1",
                                                      "password_confirmation": "correct-horse-1"})
    assert duplicate.status == 422 and "email" in duplicate.json["errors"]
    long_password = "é" * 37  # 37 characters, 74 bytes: bcrypt would silently drop the end
    too_long = await api.post("/auth/app/register", {"name": "Bo", "email": "bo@example.test",
                                                     "password": long_password,
                                                     "password_confirmation": long_password})
    assert too_long.status == 422 and "password" in too_long.json["errors"]


@pytest.mark.gen_test
async def test_login_wrong_password_is_422(api):
    ana = await register(api, "Ana")
    wrong = await api.post("/auth/app/login", {"email": ana.email, "password": "not-the-password"})
    assert wrong.status == 422 and wrong.json["message"] == "The given data was invalid."
    nobody = await api.post("/auth/app/login", {"email": "nobody@example.test", "password": "whatever-1"})
    assert nobody.status == 422


@pytest.mark.parametrize("server_overrides", [{"limits": {"login_per_minute": 2}}])
@pytest.mark.gen_test
async def test_login_rate_limited(api, clock):
    ana = await register(api, "Ana")
    for _ in range(2):
        attempt = await api.post("/auth/app/login", {"email": ana.email, "password": "wrong-password"})
        assert attempt.status == 422 and attempt.headers["X-RateLimit-Limit"] == "2"
    limited = await api.post("/auth/app/login", {"email": ana.email, "password": ana.password})
    assert limited.status == 429 and limited.json == {"message": "Too Many Attempts."}
    assert int(limited.headers["Retry-After"]) > 0 and limited.headers["X-RateLimit-Remaining"] == "0"
    clock.advance(seconds=61)
    assert (await api.post("/auth/app/login", {"email": ana.email, "password": ana.password})).status == 200


@pytest.mark.parametrize("server_overrides", [{"limits": {"login_per_minute": 2},
                                               "server": {"trusted_proxies": ["127.0.0.1/32"]}}])
@pytest.mark.gen_test
async def test_login_limit_is_also_per_account(api):
    ana = await register(api, "Ana")
    for n in range(2):
        attempt = await api.post("/auth/app/login", {"email": ana.email, "password": "wrong-password"},
                                 headers={"X-Forwarded-For": f"203.0.113.{n}"})
        assert attempt.status == 422
    limited = await api.post("/auth/app/login", {"email": ana.email, "password": ana.password},
                             headers={"X-Forwarded-For": "203.0.113.99"})
    assert limited.status == 429  # a new address does not reset the account's budget


@pytest.mark.parametrize("server_overrides", [{"limits": {"login_per_minute": 2}}])
@pytest.mark.gen_test
async def test_change_password_guesses_are_rate_limited_per_user(api, clock):
    ana = await register(api, "Ana")
    new = "brand-new-pass"
    guess = {"current_password": "not-it-at-all", "password": new, "password_confirmation": new}
    for _ in range(2):
        assert (await api.post("/auth/app/change-password", guess, token=ana.token)).status == 422
    right = {**guess, "current_password": ana.password}
    limited = await api.post("/auth/app/change-password", right, token=ana.token)
    assert limited.status == 429 and "Retry-After" in limited.headers
    clock.advance(seconds=61)
    assert (await api.post("/auth/app/change-password", right, token=ana.token)).status == 200


async def register_from(api, n, address):
    return await api.post("/auth/app/register", {
        "name": f"U{n}", "email": f"u{n}@example.test", "password": "correct-horse-1",
        "password_confirmation": "correct-horse-1"}, headers={"X-Forwarded-For": address})


@pytest.mark.parametrize("server_overrides", [{"limits": {"register_per_minute": 2}}])
@pytest.mark.gen_test
async def test_forwarded_for_ignored_without_trusted_proxies(api):
    assert (await register_from(api, 1, "198.51.100.1")).status == 200
    assert (await register_from(api, 2, "198.51.100.2")).status == 200
    limited = await register_from(api, 3, "198.51.100.3")
    assert limited.status == 429 and limited.headers["X-RateLimit-Limit"] == "2" and "Retry-After" in limited.headers


@pytest.mark.parametrize("server_overrides", [{"limits": {"register_per_minute": 2},
                                               "server": {"trusted_proxies": ["127.0.0.1/32"]}}])
@pytest.mark.gen_test
async def test_forwarded_for_honoured_from_trusted_proxy(api):
    for n in range(4):
        assert (await register_from(api, n, f"198.51.100.{n}")).status == 200
    assert (await register_from(api, 10, "198.51.100.1")).status == 200
    assert (await register_from(api, 11, "198.51.100.1")).status == 429  # that client's third


@pytest.mark.parametrize("server_overrides", [{"limits": {"register_per_minute": 2},
                                               "server": {"trusted_proxies": ["127.0.0.1/32"]}}])
@pytest.mark.gen_test
async def test_an_ipv6_subscriber_counts_as_one_address(api):
    """Each address of one /64 (one subscriber's allocation) used to get an allowance of its own."""
    assert (await register_from(api, 1, "2001:db8:1:2::1")).status == 200
    assert (await register_from(api, 2, "2001:db8:1:2:ffff:ffff:ffff:ffff")).status == 200
    assert (await register_from(api, 3, "2001:db8:1:2::3")).status == 429
    assert (await register_from(api, 4, "2001:db8:1:3::1")).status == 200  # the next /64 is someone else
