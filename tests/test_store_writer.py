"""The writer on a real database file: group commit, a failing unit rolling back alone, one trip per
batch (units run to their end on the writer's thread), and the freshness stamp cached reads rely on.
"""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from rosetta.store.connections import Tx
from rosetta.store.db import Database


@pytest.fixture
def db(io_loop, tmp_path):
    database = Database(tmp_path / "writer.sqlite3", synchronous="NORMAL")
    io_loop.run_sync(database.open)
    io_loop.run_sync(lambda: database.write(lambda tx: tx.execute("CREATE TABLE t (x INTEGER UNIQUE)")))
    yield database
    io_loop.run_sync(database.close)


async def values(db: Database) -> list[int]:
    return [row[0] for row in await db.reader.fetch_all("SELECT x FROM t ORDER BY x")]


def insert(x: int):
    async def unit(tx: Tx) -> int:
        return await tx.execute("INSERT INTO t VALUES (?)", (x,))
    return unit


@pytest.mark.gen_test(timeout=30)
async def test_concurrent_units_share_one_commit_and_a_failing_one_rolls_back_alone(db):
    await db.write(insert(2))
    commits = db.commits
    results = await asyncio.gather(*(db.write(insert(x)) for x in (1, 2, 3, 4)), return_exceptions=True)
    assert results[0] == results[2] == results[3] == 1
    assert isinstance(results[1], sqlite3.IntegrityError)  # 2 is taken: only this unit is refused
    assert await values(db) == [1, 2, 3, 4]
    assert db.commits == commits + 1  # the four were one batch: one COMMIT


@pytest.mark.gen_test(timeout=30)
async def test_a_lone_background_unit_waits_briefly_for_a_send_to_commit_with(db):
    commits = db.commits
    background = asyncio.ensure_future(db.write(insert(1), background=True))
    await asyncio.sleep(0)  # the drain starts and lingers: nothing else is queued
    assert not background.done()
    await db.write(insert(2))  # a send arrives within the linger: one COMMIT carries both
    assert await background == 1
    assert db.commits == commits + 1 and await values(db) == [1, 2]


@pytest.mark.gen_test(timeout=30)
async def test_a_lone_background_unit_commits_alone_when_no_send_comes(db):
    commits = db.commits
    began = asyncio.get_running_loop().time()
    assert await db.write(insert(1), background=True) == 1
    assert asyncio.get_running_loop().time() - began >= db.background_linger_s * 0.9  # timer resolution
    assert db.commits == commits + 1


@pytest.mark.gen_test(timeout=30)
async def test_a_batch_takes_at_most_one_background_unit_and_sends_go_with_the_first(db):
    committed_with: dict[int, int] = {}  # x -> the commit count its unit saw on the writer's thread

    def noting(x: int):
        async def unit(tx: Tx) -> None:
            committed_with[x] = db.commits
            await tx.execute("INSERT INTO t VALUES (?)", (x,))
        return unit

    commits = db.commits
    # Queued in one loop turn: background 1, 2, 3 (say a translation round's chunks), then two sends.
    await asyncio.gather(*(db.write(noting(x), background=True) for x in (1, 2, 3)),
                         db.write(noting(10)), db.write(noting(11)))
    assert await values(db) == [1, 2, 3, 10, 11]
    assert db.commits == commits + 3
    # The sends did not wait behind all three: they shared the first commit, with background 1.
    assert committed_with == {1: commits, 10: commits, 11: commits, 2: commits + 1, 3: commits + 2}


@pytest.mark.gen_test(timeout=30)
async def test_a_unit_that_awaits_anything_else_fails_and_writes_nothing(db):
    async def sleepy(tx: Tx) -> None:
        await tx.execute("INSERT INTO t VALUES (7)")
        await asyncio.sleep(0)  # not a statement: it would hold the writer while the loop runs on

    with pytest.raises(RuntimeError, match="awaited something other than its own statements"):
        await db.write(sleepy)
    assert await values(db) == []
    assert await db.write(insert(8)) == 1  # the writer goes on
    assert await values(db) == [8]


@pytest.mark.gen_test(timeout=30)
async def test_a_unit_reading_through_db_reader_sees_its_own_batch(db):
    async def unit(tx: Tx) -> list[int]:
        await tx.execute("INSERT INTO t VALUES (5)")
        rows = await db.reader.fetch_all("SELECT x FROM t")  # on the writer's thread: the writer itself
        return [row[0] for row in rows]

    assert await db.write(unit) == [5]


@pytest.mark.gen_test(timeout=30)
async def test_freshness_moves_after_commit_for_the_declared_scope_or_for_all(db):
    a, b = db.freshness("a"), db.freshness("b")

    async def narrow(tx: Tx) -> None:
        tx.affects_only("a")
        await tx.execute("INSERT INTO t VALUES (1)")
        assert db.freshness("a") == a  # not yet committed: a page read now must keep its old stamp

    await db.write(narrow)
    assert db.freshness("a") != a and db.freshness("b") == b
    a = db.freshness("a")

    with pytest.raises(sqlite3.IntegrityError):
        await db.write(insert(1))
    assert (db.freshness("a"), db.freshness("b")) == (a, b)  # rolled back: nothing to forget

    await db.write(insert(3))  # declares nothing
    assert db.freshness("a") != a and db.freshness("b") != b


@pytest.mark.gen_test(timeout=60)
async def test_commits_leave_checkpoints_to_the_checkpoint_job(db):
    # SQLite's default would checkpoint inside the COMMIT that crosses 1,000 WAL pages, holding the
    # writer for the copy; here the WAL keeps growing until checkpoint() (the db.checkpoint job) runs.
    await db.write(lambda tx: tx.execute("CREATE TABLE blobs (b BLOB)"))
    for _ in range(30):
        await db.write(lambda tx: tx.executemany("INSERT INTO blobs VALUES (?)", [(b"x" * 4000,)] * 50))
    busy, frames, copied = await db.checkpoint()
    assert frames > 1000  # no COMMIT checkpointed (and so reset) the WAL on its way here
    assert (busy, copied) == (0, frames)  # no reader holds a snapshot: everything was copied
    assert await db.reader.fetch_value("SELECT count(*) FROM blobs") == 1500
    await db.write(insert(1))  # the first write after a complete checkpoint starts the WAL over
    _, frames, _ = await db.checkpoint()
    assert frames < 10
