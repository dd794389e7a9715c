"""Read results kept while no committed write could have changed them.

The store stamps every scope with write generations (``Database.freshness``): a unit that declared a
scope moves only that scope's stamp; any other unit moves every stamp. A result cached with the stamp
taken *before* it was read is valid exactly while the stamp is unchanged, so a cache hit never
serves what a committed write changed. Entries are bounded (least recently used go first).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from rosetta.store.connections import Tx
from rosetta.store.db import Database

T = TypeVar("T")
V = TypeVar("V")
Stamp = tuple[int, int]
ANY_WRITE = ""  # a scope no unit declares: its stamp moves with every write but the narrow ones
# A scope no cached read is kept under. A unit that changes only rows no cache reads (the mail
# outbox, a token's last use) declares it, so that its commit keeps every cached read.
UNCACHED = "uncached"


def uncached(change: Callable[[Tx], Awaitable[T]]) -> Callable[[Tx], Awaitable[T]]:
    """``change`` as a write unit that declares UNCACHED: for rows no cached read shows (outboxes, the
    stamps of a credential's last use), whose commits should keep every cached read."""

    async def unit(tx: Tx) -> T:
        tx.affects_only(UNCACHED)
        return await change(tx)

    return unit


class FreshCache(Generic[V]):
    def __init__(self, db: Database, max_entries: int) -> None:
        self.db = db
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[Stamp, V]] = OrderedDict()

    async def load(self, key: Hashable, read: Callable[[], Awaitable[V]], scope: str = ANY_WRITE,
                   keep: Callable[[V], bool] | None = None) -> V:
        """The value kept under ``key`` while ``scope``'s stamp is unchanged, else ``read()`` (kept too,
        None included: an absence is as much a read result as a row), unless ``keep`` says otherwise."""
        stamp = self.db.freshness(scope)  # before reading: a commit during the read moves it
        found = self._entries.get(key)
        if found is not None and found[0] == stamp:
            self._entries.move_to_end(key)
            return found[1]
        value = await read()
        if keep is not None and not keep(value):
            return value
        self._entries[key] = (stamp, value)
        self._entries.move_to_end(key)
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return value
