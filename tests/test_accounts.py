"""The current user and its tokens: sign-in shapes, PATCH /me refusals, token ownership, secrets at rest, health."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from pathlib import Path

import pytest

from rosetta import __version__
from tests.support import Api, Server, User, register

ACCESS_TOKEN_RE = re.compile(r"^[0-9a-z]{26}\|[0-9a-f]{40}$")  # <ULID>|<20 random bytes in hex>
USER_KEYS = {"id", "name", "email", "preferred_language", "avatar_url", "email_verified_at", "is_active",
             "last_login_at", "created_at", "updated_at"}


def database(server: Server) -> Path:
    return Path(server.config.data_dir) / "rosetta.sqlite3"


def dump(server: Server) -> str:
    """Every row of the server's database as SQL text, read from the file by a connection of our own."""
    with sqlite3.connect(database(server)) as raw:
        return "\n".join(raw.iterdump())


async def personal_token(api: Api, user: User, abilities: list[str]) -> dict:
    created = await api.post("/me/tokens", {"name": "script", "abilities": abilities}, token=user.token)
    assert created.status == 201, created
    return created.json["data"]


# Shapes ----------------------------------------------------------------------------------------------

@pytest.mark.gen_test(timeout=30)
async def test_register_and_login_answer_the_token_shape(api):
    registered = await api.post("/auth/app/register", {
        "name": "Ana", "email": "Ana@Example.test", "password": "correct-horse-1",
        "password_confirmation": "correct-horse-1", "preferred_language": "es", "device_name": "phone"})
    assert registered.status == 200, registered
    body = registered.json
    assert set(body) == {"access_token", "token_type", "user"}
    assert body["token_type"] == "Bearer"
    assert ACCESS_TOKEN_RE.match(body["access_token"]), body["access_token"]
    user = body["user"]
    assert set(user) == USER_KEYS
    assert user["name"] == "Ana" and user["email"] == "ana@example.test" and user["preferred_language"] == "es"
    assert user["is_active"] is True and user["avatar_url"] is None and user["email_verified_at"] is None
    assert len(user["id"]) == 26 and user["id"] == user["id"].lower()
    me = await api.get("/me", token=body["access_token"])
    assert me.status == 200 and me.json == user  # GET /me answers the same bare user object

    logged_in = await api.post("/auth/app/login", {"email": "ana@example.test", "password": "correct-horse-1"})
    assert logged_in.status == 200, logged_in
    again = logged_in.json
    assert set(again) == {"access_token", "token_type", "user"} and again["token_type"] == "Bearer"
    assert ACCESS_TOKEN_RE.match(again["access_token"]) and again["access_token"] != body["access_token"]
    assert set(again["user"]) == USER_KEYS and again["user"]["id"] == user["id"]
    assert again["user"]["last_login_at"] is not None
    assert (await api.get("/me", token=again["access_token"])).status == 200


@pytest.mark.gen_test
async def test_health_body(api):
    health = await api.get("/health")  # public: no credential
    assert health.status == 200
    assert health.json == {"status": "ok", "version": __version__}
    assert health.headers["Content-Type"].startswith("application/json")


# PATCH /me ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("body, fields", [
    ({"preferred_language": "not a language"}, {"preferred_language"}),
    ({"preferred_language": 7}, {"preferred_language"}),
    ({"preferred_language": None}, {"preferred_language"}),
    ({"name": ""}, {"name"}),
    ({"name": "   "}, {"name"}),
    ({"name": None}, {"name"}),
    ({"name": "x" * 256}, {"name"}),
    ({"name": ["Ana"]}, {"name"}),
    ({"name": "a\x00b"}, {"name"}),
    ({"avatar_url": "javascript:alert(1)"}, {"avatar_url"}),
    ({"avatar_url": 42}, {"avatar_url"}),
    ({"avatar_url": "https://example.test/" + "a" * 2048}, {"avatar_url"}),
    ({"name": "", "preferred_language": "??", "avatar_url": False}, {"name", "preferred_language", "avatar_url"}),
], ids=["language-format", "language-type", "language-null", "name-empty", "name-blank", "name-null",
        "name-long", "name-type", "name-nul", "avatar-scheme", "avatar-type", "avatar-long", "all-three"])
@pytest.mark.gen_test
async def test_patch_me_refuses_bad_input_naming_every_field(api, body, fields):
    ana = await register(api, "Ana", "en")
    before = (await api.get("/me", token=ana.token)).json
    # A good field beside the bad ones: nothing of the request is applied.
    refused = await api.patch("/me", {"name": "Changed", **body}, token=ana.token)
    assert refused.status == 422, refused
    assert refused.json["message"] == "The given data was invalid."
    assert set(refused.json["errors"]) == fields
    assert (await api.get("/me", token=ana.token)).json == before


@pytest.mark.gen_test
async def test_patch_me_changes_and_answers_the_bare_user(api):
    ana = await register(api, "Ana", "en")
    patched = await api.patch("/me", {"name": " Ana María ", "preferred_language": "ES-mx",
                                      "avatar_url": "https://example.test/a.png"}, token=ana.token)
    assert patched.status == 200, patched
    assert set(patched.json) == USER_KEYS
    assert patched.json["name"] == "Ana María" and patched.json["preferred_language"] == "es-MX"
    assert patched.json["avatar_url"] == "https://example.test/a.png"
    assert (await api.get("/me", token=ana.token)).json == patched.json
    cleared = await api.patch("/me", {"avatar_url": None}, token=ana.token)
    assert cleared.status == 200 and cleared.json["avatar_url"] is None


# Personal access tokens ---------------------------------------------------------------------------------

@pytest.mark.gen_test(timeout=30)
async def test_deleting_another_users_token_is_404_and_it_keeps_working(api):
    ana, bea = await register(api, "Ana"), await register(api, "Bea")
    beas = await personal_token(api, bea, ["automation"])
    bea_login_id = bea.token.split("|", 1)[0]
    for token_id in (beas["id"], bea_login_id, beas["id"].upper()):
        refused = await api.delete(f"/me/tokens/{token_id}", token=ana.token)
        assert refused.status == 404 and refused.json == {"message": "Not found."}, (token_id, refused)
    # Bea's tokens still work: the personal one where its ability reaches, the login one everywhere.
    assert (await api.get("/translation/languages", token=beas["token"])).status == 200
    assert (await api.get("/me", token=bea.token)).json["id"] == bea.id
    assert [t["id"] for t in (await api.get("/me/tokens", token=bea.token)).json["data"]] == [beas["id"]]
    assert (await api.get("/me/tokens", token=ana.token)).json["data"] == []
    # And Bea herself may revoke it.
    assert (await api.delete(f"/me/tokens/{beas['id']}", token=bea.token)).status == 204
    assert (await api.get("/translation/languages", token=beas["token"])).status == 401


@pytest.mark.parametrize("body, fields", [
    ({"name": "bot", "abilities": ["automation", "admin"]}, {"abilities"}),
    ({"name": "bot", "abilities": ["*"]}, {"abilities"}),  # full access is for sign-in tokens only
    ({"name": "bot", "abilities": []}, {"abilities"}),
    ({"name": "bot"}, {"abilities"}),
    ({"name": "bot", "abilities": "automation"}, {"abilities"}),
    ({"abilities": ["automation"]}, {"name"}),
    ({"name": "bot", "abilities": ["automation"], "expires_at": "next tuesday"}, {"expires_at"}),
    ({"name": "bot", "abilities": ["automation"], "expires_at": "2020-01-01T00:00:00+00:00"}, {"expires_at"}),
], ids=["unknown", "star", "empty", "missing", "not-a-list", "no-name", "bad-date", "past-date"])
@pytest.mark.gen_test
async def test_create_token_refuses_bad_input_naming_the_field(api, body, fields):
    ana = await register(api, "Ana")
    refused = await api.post("/me/tokens", body, token=ana.token)
    assert refused.status == 422, refused
    assert refused.json["message"] == "The given data was invalid."
    assert {field.split(".")[0] for field in refused.json["errors"]} == fields
    assert (await api.get("/me/tokens", token=ana.token)).json["data"] == []  # nothing was made


@pytest.mark.gen_test
async def test_token_create_shape(api):
    ana = await register(api, "Ana")
    created = await api.post("/me/tokens", {"name": "bot", "abilities": ["temporary-rooms:read", "automation"],
                                            "expires_at": "2027-01-01T00:00:00Z"}, token=ana.token)
    assert created.status == 201, created
    data = created.json["data"]
    assert set(data) == {"id", "name", "abilities", "expires_at", "last_used_at", "created_at", "token"}
    assert ACCESS_TOKEN_RE.match(data["token"]) and data["token"].split("|")[0] == data["id"]
    assert sorted(data["abilities"]) == ["automation", "temporary-rooms:read"]
    assert data["expires_at"] == "2027-01-01T00:00:00.000000+00:00"
    listed = (await api.get("/me/tokens", token=ana.token)).json["data"]
    assert [t["id"] for t in listed] == [data["id"]] and "token" not in listed[0]


# Secrets at rest ---------------------------------------------------------------------------------------

@pytest.mark.gen_test(timeout=30)
async def test_access_token_secrets_are_stored_only_as_sha256(api, server):
    ana = await register(api, "Ana")
    login = ana.token
    personal = (await personal_token(api, ana, ["automation"]))["token"]
    with sqlite3.connect(database(server)) as raw:
        rows = raw.execute("SELECT * FROM access_tokens").fetchall()
        columns = [c[1] for c in raw.execute("PRAGMA table_info(access_tokens)")]
    stored = {row[columns.index("id")]: row[columns.index("secret_hash")] for row in rows}
    for plain in (login, personal):
        token_id, secret = plain.split("|")
        assert stored[token_id] == hashlib.sha256(secret.encode()).hexdigest()
        assert all(secret not in str(value) for row in rows for value in row)
    everything = dump(server)
    for plain in (login, personal):
        assert plain.split("|")[1] not in everything  # nor anywhere else in the database
