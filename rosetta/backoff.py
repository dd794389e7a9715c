"""Exponential backoff for the retrying outboxes (mail, push, outgoing webhooks) and translation jobs.

Each caller keeps its own first delay and ceiling, chosen for what it talks to; the curve is shared.
"""

from __future__ import annotations


def doubling_s(attempts: int, first_s: float, cap_s: float) -> float:
    """The delay after ``attempts`` failures: ``first_s``, twice that, four times, …, at most ``cap_s``."""
    if attempts > 64:  # 2 ** 64 is past any cap; a larger power only costs time
        return float(cap_s)
    return float(min(cap_s, first_s * 2 ** max(0, attempts - 1)))
