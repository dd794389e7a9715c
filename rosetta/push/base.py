"""What a push sender is given and what it answers; the push service decides retries and removal."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

# One provider call; a phone notification that takes longer than this is not worth waiting for.
SEND_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Notification:
    title: str
    body: str
    data: dict[str, str] = field(default_factory=dict)  # string values only: FCM's data map demands it


@dataclass(frozen=True)
class Outcome:
    """``sent``; ``retry`` (provider or network trouble); ``gone`` (token unregistered: drop the
    device); ``failed`` (the provider refused this push for good)."""

    kind: str
    detail: str = ""


SENT = Outcome("sent")


class Sender(Protocol):
    async def send(self, token: str, note: Notification) -> Outcome: ...
