"""In-memory rate limiting: fixed windows per (bucket, key), bounded in size.

Owns counting only; handlers turn a refusal into 429 with ``Retry-After`` and ``X-RateLimit-*``.
Memory is the right store: a restart forgets the counts, which only ever errs towards letting a
user back in. With several worker processes each counts every worker's attempts: a counted attempt
is told to the others (rosetta.cluster), so an attacker spreading connections across workers gets
no more tries than one connection would.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from rosetta.clock import Clock
from rosetta.cluster import Peers

MAX_KEYS = 100_000  # ~100 bytes each: at most ~10 MB however many addresses hammer us
EVICT_SHARE = 10  # a full table makes room for a tenth of MAX_KEYS at once: one scan per 10,000 new keys


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    retry_after_s: int


class RateLimiter:
    def __init__(self, clock: Clock, peers: Peers | None = None) -> None:
        self.clock = clock
        # (bucket, key) -> (window start, attempts, window length): each slot keeps its own length, so a
        # full table never mistakes an hourly limit's live window for an expired one-minute window.
        self._windows: dict[tuple[str, str], tuple[float, int, float]] = {}
        self.peers = peers
        if peers is not None:
            peers.on("ratelimit.hit", lambda message: self._count(*message))
            peers.on("ratelimit.reset", lambda message: self._windows.pop((message[0], message[1]), None))

    def hit(self, bucket: str, key: str, limit: int, window_s: float) -> Verdict:
        """Count one attempt; ``limit`` 0 means the limit is off."""
        if limit <= 0:
            return Verdict(True, 0, 0, 0)
        now = self.clock.now().timestamp()
        start, count = self._window((bucket, key), now, window_s)
        retry_after = int(start + window_s - now) + 1
        if count >= limit:
            return Verdict(False, limit, 0, retry_after)
        self._count(bucket, key, window_s)
        if self.peers is not None:
            self.peers.send("ratelimit.hit", [bucket, key, window_s])
        return Verdict(True, limit, limit - count - 1, retry_after)

    def reset(self, bucket: str, key: str) -> None:
        self._windows.pop((bucket, key), None)
        if self.peers is not None:
            self.peers.send("ratelimit.reset", [bucket, key])

    def _window(self, slot: tuple[str, str], now: float, window_s: float) -> tuple[float, int]:
        start, count, _ = self._windows.get(slot, (now, 0, window_s))
        return (now, 0) if now - start >= window_s else (start, count)

    def _count(self, bucket: str, key: str, window_s: float) -> None:
        """One attempt in the current window (this worker's, or one another worker counted)."""
        now = self.clock.now().timestamp()
        slot = (bucket, key)
        start, count = self._window(slot, now, window_s)
        if len(self._windows) >= MAX_KEYS and slot not in self._windows:
            self._evict(now)
        self._windows[slot] = (start, count + 1, window_s)

    def _evict(self, now: float) -> None:
        """Forget every window that is over; if that frees less than a tenth of the table, the windows
        that would be over soonest as well. A flood of new keys (addresses, e-mails) then pushes out
        windows about to end anyway, not an hourly limit's fresh count, which it used to wipe."""
        ends = {slot: start + window_s for slot, (start, _, window_s) in self._windows.items()}
        over = [slot for slot, end in ends.items() if end <= now]
        wanted = MAX_KEYS // EVICT_SHARE - len(over)
        if wanted > 0:
            over += heapq.nsmallest(wanted, (slot for slot, end in ends.items() if end > now), key=ends.__getitem__)
        for slot in over:
            del self._windows[slot]
