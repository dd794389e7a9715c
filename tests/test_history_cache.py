"""Cached reads (history pages, channels as members see them) never outlive a change to them.

Through the real server, each change made right after the same read was made (and so cached); the
store's freshness stamp itself is tested in test_store_writer.py.
"""

from __future__ import annotations

import pytest

from tests.rest_support import make_team, member_id


def general(team):
    return f"/workspaces/{team.id}/channels/{team.general['id']}/messages"


@pytest.mark.gen_test(timeout=30)
async def test_a_read_page_shows_each_later_change(api):
    team = await make_team(api)
    path = general(team)
    sent = await api.post(path, {"content": "first"}, token=team.member.token)
    assert sent.status == 201
    message_id = sent.json["data"]["id"]

    async def latest() -> list[dict]:
        page = await api.get(path, token=team.owner.token)
        assert page.status == 200
        return page.json["data"]

    assert [m["original_content"] for m in await latest()] == ["first"]
    await api.post(path, {"content": "second"}, token=team.admin.token)
    assert [m["original_content"] for m in await latest()] == ["second", "first"]

    edited = await api.patch(f"{path}/{message_id}", {"content": "first, edited"}, token=team.member.token)
    assert edited.status == 200
    assert (await latest())[1]["original_content"] == "first, edited"

    renamed = await api.patch("/me", {"name": "Mia Renamed"}, token=team.member.token)
    assert renamed.status == 200
    assert (await latest())[1]["author"]["name"] == "Mia Renamed"

    assert (await api.delete(f"{path}/{message_id}", token=team.member.token)).status == 204
    assert (await latest())[1]["deleted_at"] is not None

    again = await api.post(path, {"content": "third"}, token=team.member.token)  # she had posted before
    assert again.json["data"]["author"]["name"] == "Mia Renamed"


@pytest.mark.gen_test(timeout=30)
async def test_pages_differ_by_reader_language_and_cursor(api):
    team = await make_team(api)
    path = general(team)
    for i in range(3):
        assert (await api.post(path, {"content": f"m{i}"}, token=team.owner.token)).status == 201
    newest_two = (await api.get(f"{path}?limit=2", token=team.owner.token)).json
    assert [m["original_content"] for m in newest_two["data"]] == ["m2", "m1"]
    older = (await api.get(f"{path}?limit=2&before={newest_two['meta']['next_cursor']}", token=team.owner.token))
    assert [m["original_content"] for m in older.json["data"]] == ["m0"]
    # The French member reads the same channel as a French reader: another page, not the owner's
    # (no provider is set up here, so French readers see "skipped" where the English owner sees
    # "not_needed").
    french = (await api.get(f"{path}?limit=2", token=team.member.token)).json["data"]
    assert [(m["original_content"], m["translation_status"]) for m in french] == [("m2", "skipped"),
                                                                                 ("m1", "skipped")]
    assert {m["translation_status"] for m in newest_two["data"]} == {"not_needed"}


@pytest.mark.gen_test(timeout=30)
async def test_an_unchanged_page_keeps_its_etag_and_answers_304(api):
    team = await make_team(api)
    path = general(team)
    await api.post(path, {"content": "hello"}, token=team.owner.token)
    first = await api.get(path, token=team.owner.token)
    same = await api.get(path, token=team.owner.token)
    etag = first.headers["ETag"]
    assert same.headers["ETag"] == etag and same.body == first.body
    unchanged = await api.get(path, token=team.owner.token, headers={"If-None-Match": etag})
    assert unchanged.status == 304
    await api.post(path, {"content": "news"}, token=team.admin.token)
    changed = await api.get(path, token=team.owner.token, headers={"If-None-Match": etag})
    assert changed.status == 200 and changed.headers["ETag"] != etag


@pytest.mark.gen_test(timeout=30)
async def test_channel_access_follows_membership_and_language(api):
    team = await make_team(api)
    path = general(team)
    await api.post(path, {"content": "hello"}, token=team.owner.token)
    seen = await api.get(path, token=team.member.token)
    assert seen.status == 200 and seen.json["data"][0]["translation_status"] == "skipped"  # a French reader

    assert (await api.patch("/me", {"preferred_language": "en"}, token=team.member.token)).status == 200
    seen = await api.get(path, token=team.member.token)
    assert seen.json["data"][0]["translation_status"] == "not_needed"  # now an English reader

    mia = await member_id(api, team.id, team.member, team.owner.token)
    removed = await api.delete(f"/workspaces/{team.id}/members/{mia}", token=team.owner.token)
    assert removed.status == 204, removed
    assert (await api.get(path, token=team.member.token)).status == 404
    assert (await api.post(path, {"content": "still here?"}, token=team.member.token)).status == 404


@pytest.mark.gen_test(timeout=30)
async def test_bookkeeping_writes_keep_the_cached_reads(server, api, clock):
    """Sending the outbox's mail and stamping a token's last use change no cached read, so their
    commits must not throw every cache away: after a burst of sign-ups that happened once per mail
    run, and each worker read a 1,000-member channel's readers again."""
    team = await make_team(api)
    db = server.app.db
    channel = team.general["id"]
    await api.get(general(team), token=team.owner.token)
    stamp = db.freshness(channel)

    assert await db.reader.fetch_value("SELECT count(*) FROM mail_outbox WHERE status = 'pending'") > 0
    assert await server.app.jobs.run_once("mail.send")  # the sign-ups' verification mails
    assert await db.reader.fetch_value("SELECT count(*) FROM mail_outbox WHERE status = 'pending'") == 0
    clock.advance(minutes=5)
    assert (await api.get(general(team), token=team.owner.token)).status == 200  # the token is stamped again
    assert await db.reader.fetch_value("SELECT last_used_at FROM access_tokens WHERE id = ?",
                                       (team.owner.token.split("|")[0],)) == server.app.ctx.now()
    assert db.freshness(channel) == stamp

    # A write that may change what the page shows still moves it.
    assert (await api.patch("/me", {"name": "Mia Renamed"}, token=team.member.token)).status == 200
    assert db.freshness(channel) != stamp
