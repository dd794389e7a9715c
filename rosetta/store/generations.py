"""Write generations: counters that move after each COMMIT, shared by every worker process.

Cached reads are kept under a stamp taken before the read (``Database.freshness``) and dropped
when the stamp moves. A unit that declared its scope moves that scope's counter; any other unit
moves the global one, which every stamp includes.

The counters live in one shared anonymous memory map created before the workers are forked, so a
commit in one worker invalidates what the others cached. Each worker owns a region and only ever
writes there (no two processes increment the same word, so nothing needs a lock); a stamp is the
sum over all regions, which never goes backwards. Scopes are hashed into a fixed number of slots
with a stable hash (``hash()`` differs per process): two scopes sharing a slot only cost each other
cache hits, never correctness, and memory stays bounded however many places exist.
"""

from __future__ import annotations

import mmap
import zlib

SLOTS = 4096  # per-scope counters per worker (a slot is 8 bytes: 32 KiB per worker)
_WORD = 8


class Generations:
    def __init__(self, workers: int = 1, memory: mmap.mmap | None = None) -> None:
        self.workers = workers
        self._stride = SLOTS + 1  # word 0 of a region is the global counter, then the scope slots
        self._memory = memory if memory is not None else self.allocate(workers)
        self._words = memoryview(self._memory).cast("Q")
        self._region = 0

    @staticmethod
    def allocate(workers: int) -> mmap.mmap:
        """Shared memory for ``workers`` processes; allocate before forking so each child inherits it."""
        return mmap.mmap(-1, workers * (SLOTS + 1) * _WORD)  # anonymous maps are MAP_SHARED

    def for_worker(self, index: int) -> Generations:
        """The same counters, writing in worker ``index``'s region (called in that worker after fork)."""
        view = Generations(self.workers, self._memory)
        view._region = index * self._stride
        return view

    def stamp(self, scope: str) -> tuple[int, int]:
        """(every worker's global counter, every worker's counter of the slot ``scope`` hashes to)."""
        words, stride = self._words, self._stride
        slot = 1 + zlib.crc32(scope.encode()) % SLOTS
        if self.workers == 1:
            return words[0], words[slot]
        total_global = total_slot = 0
        for region in range(0, self.workers * stride, stride):
            total_global += words[region]
            total_slot += words[region + slot]
        return total_global, total_slot

    def bump(self, scopes: set[str] | None) -> None:
        """After a COMMIT: move the declared scopes' counters, or the global one when ``scopes`` is empty."""
        words, region = self._words, self._region
        if not scopes:
            words[region] += 1
            return
        for scope in scopes:
            words[region + 1 + zlib.crc32(scope.encode()) % SLOTS] += 1
