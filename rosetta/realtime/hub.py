"""The hub: hears committed events and hands them to the subscribers whose audience includes them.

Until the realtime gateway lands it only remembers the newest ``seq`` it was told about.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rosetta.services.events import Event


class Hub:
    def __init__(self) -> None:
        self.last_seq = 0

    def publish(self, event: Event) -> None:
        self.last_seq = max(self.last_seq, event.seq)

    def is_online(self, user_id: str) -> bool:
        """Whether the user has a live WebSocket or SSE connection (push skips online users)."""
        return False
