"""Deleting what a retention setting no longer keeps, a bounded chunk per write unit.

A trim may find a large backlog (the first run after an upgrade, or after the server was down for
weeks). One DELETE for all of it would hold the shared writer, and every send queued behind it, for
as long as it takes; a unit per chunk gives the writer back between chunks. The units are queued as
background work (``Database.write``): a send waits for at most one of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from rosetta.services.fresh import uncached
from rosetta.store.connections import Tx
from rosetta.store.db import Database

DeleteChunk = Callable[[Tx, int], Awaitable[int]]
CHUNK = 1000  # rows per unit: a few ms of the writer
TRIM_EVERY_S = 3600.0  # how often the retention jobs look: they keep rows for days, so hourly is plenty


async def delete_in_chunks(db: Database, delete_chunk: DeleteChunk, chunk: int = CHUNK) -> int:
    """Run ``delete_chunk(tx, chunk)`` (it deletes at most ``chunk`` rows and says how many) in one
    write unit after another, until one deletes fewer; how many rows went in all.

    Only for rows no cached read shows: the units declare ``UNCACHED``.
    """
    unit = uncached(lambda tx: delete_chunk(tx, chunk))
    return await until_short(lambda: db.write(unit, background=True), chunk)


async def until_short(delete_one: Callable[[], Awaitable[int]], chunk: int) -> int:
    """Await ``delete_one()`` (it deletes at most ``chunk`` rows and says how many) until it deletes
    fewer; how many rows went in all. For stores with a writer of their own (the translation memory)."""
    deleted_in_all = 0
    while True:
        deleted = await delete_one()
        deleted_in_all += deleted
        if deleted < chunk:
            return deleted_in_all
