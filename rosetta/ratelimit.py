"""In-memory rate limiting: fixed windows per (bucket, key), bounded in size.

Owns counting only; handlers turn a refusal into 429 with ``Retry-After`` and ``X-RateLimit-*``.
One process serves everything, so memory is the right store; a restart forgets the counts, which
only ever errs towards letting a user back in.
"""

from __future__ import annotations

from dataclasses import dataclass

from rosetta.clock import Clock

MAX_KEYS = 100_000  # ~100 bytes each: at most ~10 MB however many addresses hammer us


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    retry_after_s: int


class RateLimiter:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._windows: dict[tuple[str, str], tuple[float, int]] = {}

    def hit(self, bucket: str, key: str, limit: int, window_s: float) -> Verdict:
        """Count one attempt; ``limit`` 0 means the limit is off."""
        if limit <= 0:
            return Verdict(True, 0, 0, 0)
        now = self.clock.now().timestamp()
        slot = (bucket, key)
        start, count = self._windows.get(slot, (now, 0))
        if now - start >= window_s:
            start, count = now, 0
        retry_after = int(start + window_s - now) + 1
        if count >= limit:
            return Verdict(False, limit, 0, retry_after)
        if len(self._windows) >= MAX_KEYS and slot not in self._windows:
            self._evict(now, window_s)
        self._windows[slot] = (start, count + 1)
        return Verdict(True, limit, limit - count - 1, retry_after)

    def reset(self, bucket: str, key: str) -> None:
        self._windows.pop((bucket, key), None)

    def _evict(self, now: float, window_s: float) -> None:
        expired = [slot for slot, (start, _) in self._windows.items() if now - start >= window_s]
        for slot in expired or list(self._windows)[: MAX_KEYS // 10]:
            del self._windows[slot]
