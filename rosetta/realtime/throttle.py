"""Per-connection bounds on the live-only client frames (``typing``, ``read``).

Each such frame may cost database reads (who may see the place, where a message is), and none of
them counts against the HTTP rate limits, which see only the handshake. A ``Throttle`` answers
whether a frame about a key may be looked at now. It owns only bookkeeping over the time it is
given; what a key means, and that a refused frame is dropped without a word, is the handler's.
"""

from __future__ import annotations


class Throttle:
    """At most one frame per key every ``every_s``, and at most ``max_keys`` keys within one window.

    A key counts from the moment it is asked about, before anyone checks that it names something
    real: an unknown id, or a place hidden from the caller, is throttled exactly like a real one, so
    naming ids that fail the check buys no extra lookups. While ``max_keys`` keys are all inside
    their window a new key is refused, so a connection gets at most ``max_keys`` lookups per
    ``every_s`` however many ids it makes up, and the record never holds more than ``max_keys``.
    """

    def __init__(self, every_s: float, max_keys: int) -> None:
        self.every_s = every_s
        self.max_keys = max_keys
        self._last: dict[str, float] = {}  # key -> when last allowed; insertion order is time order

    def __len__(self) -> int:
        return len(self._last)

    def allow(self, key: str, now: float) -> bool:
        last = self._last.get(key)
        if last is not None and self._inside(last, now):
            return False
        self._expire(now)
        if len(self._last) >= self.max_keys:
            return False
        self._last.pop(key, None)  # re-inserted last: the oldest entry stays first
        self._last[key] = now
        return True

    def _inside(self, at: float, now: float) -> bool:
        # A clock set back makes ``now - at`` negative: such an entry is treated as expired, so a
        # jump backwards reopens windows instead of closing them for as long as the jump.
        return 0 <= now - at < self.every_s

    def _expire(self, now: float) -> None:
        while self._last:
            key, at = next(iter(self._last.items()))
            if self._inside(at, now):
                break
            del self._last[key]
