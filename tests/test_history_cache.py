"""Rendered history pages are reused only while nothing they show has changed.

The store's freshness stamp is tested on a real database file; the pages through the real server,
each change made right after the page was read (and so cached).
"""

from __future__ import annotations

import sqlite3

import pytest

from rosetta.store.db import Database, Tx
from tests.rest_support import make_team


@pytest.mark.gen_test(timeout=30)
async def test_freshness_moves_after_commit_for_the_declared_scope_or_for_all(tmp_path):
    db = Database(tmp_path / "fresh.sqlite3", synchronous="NORMAL")
    await db.open()
    try:
        await db.write(lambda tx: tx.execute("CREATE TABLE t (x INTEGER)"))
        a, b = db.freshness("a"), db.freshness("b")

        async def narrow(tx: Tx) -> None:
            tx.affects_only("a")
            await tx.execute("INSERT INTO t VALUES (1)")
            assert db.freshness("a") == a  # not yet committed: a page read now must keep its old stamp

        await db.write(narrow)
        assert db.freshness("a") != a and db.freshness("b") == b
        a = db.freshness("a")

        async def failing(tx: Tx) -> None:
            await tx.execute("INSERT INTO t VALUES (2)")
            raise sqlite3.IntegrityError("refused")

        with pytest.raises(sqlite3.IntegrityError):
            await db.write(failing)
        assert (db.freshness("a"), db.freshness("b")) == (a, b)  # rolled back: nothing to forget

        await db.write(lambda tx: tx.execute("INSERT INTO t VALUES (3)"))  # declares nothing
        assert db.freshness("a") != a and db.freshness("b") != b
    finally:
        await db.close()


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
