"""Temporary rooms, the guests' side: joining, the guest token and its scope, room messages, expiry."""

from __future__ import annotations

import pytest

from tests.support import register

GUEST = "X-Rosetta-Guest-Token"


async def make_room(api, ttl_hours=2, name="Customer Support Room"):
    dev = await register(api, "Dev")
    made = await api.post("/external/rooms", {"name": name, "ttl_hours": ttl_hours}, token=dev.token)
    assert made.status == 201, made
    return dev, made.json["data"]


async def join(api, room, nickname="Mei", language="zh-CN"):
    joined = await api.post(f"/external/rooms/{room['room_id']}/guests",
                            {"nickname": nickname, "preferred_language": language})
    assert joined.status == 201, joined
    return joined.json["data"]


def as_guest(session):
    return {GUEST: session["session"]["token"]}


@pytest.mark.gen_test
async def test_join_shape(api):
    _, room = await make_room(api)
    data = await join(api, room)
    assert set(data) == {"guest", "session", "room"}
    assert data["guest"]["nickname"] == "Mei" and data["guest"]["preferred_language"] == "zh-CN"
    assert len(data["guest"]["id"]) == 26
    session = data["session"]
    assert session["token"].startswith("grst_") and session["token_type"] == "guest"
    assert session["header"] == "X-Rosetta-Guest-Token" and session["expires_at"] == room["expires_at"]
    assert data["room"] == {"room_id": room["room_id"], "workspace_id": room["workspace_id"],
                            "channel_id": room["channel_id"], "name": "Customer Support Room", "status": "active",
                            "expires_at": room["expires_at"]}


@pytest.mark.gen_test
async def test_join_token_is_stored_hashed(api, server):
    _, room = await make_room(api)
    token = (await join(api, room))["session"]["token"]
    secret = token.split("_", 2)[2]
    rows = await server.app.db.reader.fetch_all("SELECT secret_hash FROM guest_tokens")
    assert len(rows) == 1 and secret not in rows[0]["secret_hash"] and len(rows[0]["secret_hash"]) == 64


@pytest.mark.parametrize("server_overrides", [{"temporary_rooms": {"max_guests": 2}}])
@pytest.mark.gen_test
async def test_a_room_lets_in_at_most_max_guests(api, server):
    dev, room = await make_room(api)
    other = (await api.post("/external/rooms", {"name": "Another", "ttl_hours": 2}, token=dev.token)).json["data"]
    await join(api, room, "Mei")
    await join(api, room, "Ana")
    full = await api.post(f"/external/rooms/{room['room_id']}/guests", {"nickname": "Max", "preferred_language": "en"})
    assert full.status == 403
    assert full.json == {"message": "Temporary Room guest limit reached.", "errors": {"code": ["temporary_room_full"]}}
    guests = await server.app.db.reader.fetch_all("SELECT name FROM users WHERE kind = 'guest' ORDER BY name")
    assert [row["name"] for row in guests] == ["Ana", "Mei"]  # the refused join left no user behind
    assert (await join(api, other, "Max"))["guest"]["nickname"] == "Max"  # a room's limit is its own


@pytest.mark.gen_test
async def test_join_validation_and_unknown_room(api):
    _, room = await make_room(api)
    path = f"/external/rooms/{room['room_id']}/guests"
    missing = await api.post(path, {"preferred_language": "fr"})
    assert missing.status == 422 and set(missing.json["errors"]) == {"nickname"}
    bad_language = await api.post(path, {"nickname": "X", "preferred_language": "not a language"})
    assert bad_language.status == 422 and set(bad_language.json["errors"]) == {"preferred_language"}
    too_long = await api.post(path, {"nickname": "x" * 65})
    assert too_long.status == 422
    assert (await api.post("/external/rooms/01aaaaaaaaaaaaaaaaaaaaaaaa/guests", {"nickname": "X"})).status == 404
    assert (await api.post("/external/rooms/nope/guests", {"nickname": "X"})).status == 404
    defaulted = await api.post(path, {"nickname": "X"})
    assert defaulted.status == 201 and defaulted.json["data"]["guest"]["preferred_language"] == "en"


@pytest.mark.gen_test
@pytest.mark.parametrize("server_overrides", [{"limits": {"guest_join_per_minute": 2}}])
async def test_join_is_rate_limited_per_address(api, clock):
    _, room = await make_room(api)
    path = f"/external/rooms/{room['room_id']}/guests"
    first = await api.post(path, {"nickname": "A"})
    assert first.status == 201 and first.headers["X-RateLimit-Limit"] == "2"
    assert first.headers["X-RateLimit-Remaining"] == "1"
    assert (await api.post(path, {"nickname": "B"})).status == 201
    limited = await api.post(path, {"nickname": "C"})
    assert limited.status == 429 and limited.json == {"message": "Too Many Attempts."}
    assert int(limited.headers["Retry-After"]) >= 1
    clock.advance(seconds=61)
    assert (await api.post(path, {"nickname": "C"})).status == 201


@pytest.mark.gen_test
async def test_guests_read_and_post_with_reply_and_skip(api):
    dev, room = await make_room(api)
    mei = await join(api, room, "Mei", "zh-CN")
    path = f"/external/rooms/{room['room_id']}/messages"
    sent = await api.post(path, {"content": "Hello team", "skip_translation": False}, headers=as_guest(mei))
    assert sent.status == 201, sent
    message = sent.json["data"]
    assert message["original_content"] == "Hello team"
    assert message["author"] == {"id": mei["guest"]["id"], "name": "Mei", "avatar_url": None, "kind": "guest"}
    assert message["channel_id"] == room["channel_id"] and message["workspace_id"] == room["workspace_id"]
    reply = await api.post(path, {"content": "again", "parent_message_id": message["id"], "skip_translation": True},
                           headers=as_guest(mei))
    assert reply.status == 201 and reply.json["data"]["parent_message_id"] == message["id"]
    assert reply.json["data"]["translation_status"] == "skipped"
    bad_parent = await api.post(path, {"content": "x", "parent_message_id": "01aaaaaaaaaaaaaaaaaaaaaaaa"},
                                headers=as_guest(mei))
    assert bad_parent.status == 422 and set(bad_parent.json["errors"]) == {"parent_message_id"}
    empty = await api.post(path, {"content": "  "}, headers=as_guest(mei))
    assert empty.status == 422 and set(empty.json["errors"]) == {"content"}
    listed = await api.get(path, headers=as_guest(mei))
    assert listed.status == 200
    assert [m["original_content"] for m in listed.json["data"]] == ["again", "Hello team"]
    assert set(listed.json["meta"]) == {"per_page", "next_cursor", "prev_cursor"}
    paged = await api.get(f"{path}?limit=1", headers=as_guest(mei))
    assert len(paged.json["data"]) == 1 and paged.json["meta"]["next_cursor"] == paged.json["data"][0]["id"]
    # The developer reads the same room: through the room route and through the channel route.
    owner_view = await api.get(path, token=dev.token)
    assert [m["id"] for m in owner_view.json["data"]] == [m["id"] for m in listed.json["data"]]
    channel_path = f"/workspaces/{room['workspace_id']}/channels/{room['channel_id']}/messages"
    assert len((await api.get(channel_path, token=dev.token)).json["data"]) == 2
    answer = await api.post(path, {"content": "How can I help?"}, token=dev.token)
    assert answer.status == 201 and answer.json["data"]["author"]["kind"] == "user"


@pytest.mark.gen_test
async def test_guest_scope(api):
    dev, room_a = await make_room(api)
    room_b = (await api.post("/external/rooms", {"name": "B", "ttl_hours": 2}, token=dev.token)).json["data"]
    mei = await join(api, room_a)
    headers = as_guest(mei)
    # Room A's token on room B: as if room B did not exist.
    assert (await api.get(f"/external/rooms/{room_b['room_id']}/messages", headers=headers)).status == 404
    assert (await api.post(f"/external/rooms/{room_b['room_id']}/messages", {"content": "x"},
                           headers=headers)).status == 404
    # Nowhere else: not a user.
    for path in ("/me", "/workspaces", "/me/files", "/me/tokens", "/external/rooms", "/external/rooms/usage",
                 f"/workspaces/{room_a['workspace_id']}/channels",
                 f"/workspaces/{room_a['workspace_id']}/channels/{room_a['channel_id']}/messages"):
        refused = await api.get(path, headers=headers)
        assert refused.status == 401, (path, refused)
        assert refused.json == {"message": "Unauthenticated."}
    assert (await api.post("/workspaces", {"name": "Mine"}, headers=headers)).status == 401
    # A forged or unknown token is nothing.
    forged = mei["session"]["token"][:-4] + "0000"
    assert (await api.get(f"/external/rooms/{room_a['room_id']}/messages", headers={GUEST: forged})).status == 401
    assert (await api.get(f"/external/rooms/{room_a['room_id']}/messages", headers={GUEST: "grst_x"})).status == 401
    assert (await api.get(f"/external/rooms/{room_a['room_id']}/messages")).status == 401
    # The query form is for WebSocket and EventSource only (test_rooms_realtime), which cannot set
    # headers: elsewhere a token in a URL would end up in proxies' logs and browsers' histories.
    by_query = await api.get(f"/external/rooms/{room_a['room_id']}/messages?guest_token={mei['session']['token']}")
    assert by_query.status == 401
    # Another developer is not in the room.
    eve = await register(api, "Eve")
    assert (await api.get(f"/external/rooms/{room_a['room_id']}/messages", token=eve.token)).status == 404


@pytest.mark.gen_test
async def test_guest_token_never_combined_with_another_credential(api):
    dev, room = await make_room(api)
    mei = await join(api, room)
    path = f"/external/rooms/{room['room_id']}/messages"
    both = await api.get(path, headers=as_guest(mei), token=dev.token)
    assert both.status == 401
    assert (await api.get("/me", headers=as_guest(mei), token=dev.token)).status == 401
    cookie = await api.get(path, headers={**as_guest(mei), "Cookie": "rosetta_session=abc"})
    assert cookie.status == 401
    query = await api.get(f"{path}?access_token={dev.token}", headers=as_guest(mei))
    assert query.status == 401


@pytest.mark.gen_test
async def test_room_expiry_with_a_moved_clock(api, server, clock):
    dev, room = await make_room(api, ttl_hours=1)
    mei = await join(api, room)
    path = f"/external/rooms/{room['room_id']}/messages"
    assert (await api.post(path, {"content": "hi"}, headers=as_guest(mei))).status == 201
    gone_body = {"message": "Temporary Room is not available.", "errors": {"code": ["temporary_room_expired"]}}
    clock.advance(hours=1)
    # Past expires_at, before the sweep: joins and the room's routes answer 410, other routes 401.
    late = await api.post(f"/external/rooms/{room['room_id']}/guests", {"nickname": "Late"})
    assert late.status == 410 and late.json == gone_body
    on_room = await api.get(path, headers=as_guest(mei))
    assert on_room.status == 410 and on_room.json == gone_body
    assert (await api.post(path, {"content": "x"}, headers=as_guest(mei))).status == 410
    assert (await api.get("/me", headers=as_guest(mei))).status == 401
    assert (await api.get(path, token=dev.token)).status == 410
    result = await server.app.jobs.run_once("rooms.expire")
    assert result == {"expired": 1, "purged": 0}
    assert await server.app.jobs.run_once("rooms.expire") == {"expired": 0, "purged": 0}  # idempotent
    room_row = await server.app.db.reader.fetch_one("SELECT * FROM temporary_rooms WHERE id = ?", (room["room_id"],))
    assert room_row["status"] == "expired" and room_row["expired_at"] is not None
    token_row = await server.app.db.reader.fetch_one("SELECT revoked_at FROM guest_tokens")
    assert token_row["revoked_at"] is not None
    event = await server.app.db.reader.fetch_one("SELECT * FROM events WHERE name = 'room.expired'")
    assert event["audience_kind"] == "room" and event["audience_id"] == room["room_id"]
    # After the sweep: the same answers.
    assert (await api.get(path, headers=as_guest(mei))).status == 410
    assert (await api.post(f"/external/rooms/{room['room_id']}/guests", {"nickname": "Late"})).status == 410
    assert (await api.get("/workspaces", headers=as_guest(mei))).status == 401
    listed = (await api.get("/external/rooms", token=dev.token)).json["data"]
    assert listed[0]["status"] == "expired"
    # Messages stay through the grace period, then are purged.
    channel_path = f"/workspaces/{room['workspace_id']}/channels/{room['channel_id']}/messages"
    assert len((await api.get(channel_path, token=dev.token)).json["data"]) == 1
    clock.advance(hours=23)
    assert await server.app.jobs.run_once("rooms.expire") == {"expired": 0, "purged": 0}
    clock.advance(hours=1, seconds=1)
    assert await server.app.jobs.run_once("rooms.expire") == {"expired": 0, "purged": 1}
    assert (await api.get(channel_path, token=dev.token)).json["data"] == []
    assert await server.app.db.reader.fetch_value("SELECT COUNT(*) FROM guest_tokens") == 0  # dead, and gone
    assert await server.app.db.reader.fetch_value("SELECT COUNT(*) FROM users WHERE kind = 'guest'") == 0
    members = await api.get(f"/workspaces/{room['workspace_id']}/members", token=dev.token)
    assert [m["user"]["id"] for m in members.json["data"]] == [dev.id]  # the developer stays, the guest went
    assert (await api.get("/me", headers=as_guest(mei))).status == 401
    assert await server.app.jobs.run_once("rooms.expire") == {"expired": 0, "purged": 0}
    listed = (await api.get("/external/rooms", token=dev.token)).json["data"]
    assert listed[0]["status"] == "expired"


@pytest.mark.gen_test
@pytest.mark.parametrize("server_overrides", [{"temporary_rooms": {"default_plan": "developer"}}])
async def test_extension_keeps_guests_in(api, server, clock):
    dev, room = await make_room(api, ttl_hours=1)
    mei = await join(api, room)
    extended = await api.post(f"/external/rooms/{room['room_id']}/extend", {"extension_hours": 2}, token=dev.token)
    assert extended.status == 200
    clock.advance(hours=2)
    await server.app.jobs.run_once("rooms.expire")
    assert (await api.get(f"/external/rooms/{room['room_id']}/messages", headers=as_guest(mei))).status == 200
    clock.advance(hours=1)
    assert (await api.get(f"/external/rooms/{room['room_id']}/messages", headers=as_guest(mei))).status == 410


@pytest.mark.gen_test
async def test_a_guests_role_cannot_be_changed(api):
    dev, room = await make_room(api)
    guest = await join(api, room)
    members = await api.get(f"/workspaces/{room['workspace_id']}/members", token=dev.token)
    assert members.status == 200, members
    [row] = [m for m in members.json["data"] if m["user"]["id"] == guest["guest"]["id"]]
    assert row["role"] == "guest"
    for role in ("member", "admin", "owner"):
        changed = await api.put(f"/workspaces/{room['workspace_id']}/members/{row['id']}", {"role": role},
                                token=dev.token)
        assert changed.status == 403 and changed.json["errors"]["code"] == ["guest_role_fixed"], changed
    again = await api.get(f"/workspaces/{room['workspace_id']}/members", token=dev.token)
    assert [m["role"] for m in again.json["data"] if m["id"] == row["id"]] == ["guest"]
