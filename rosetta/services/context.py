"""What every service needs, built once by the app: configuration, clock, database, hub."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from rosetta.clock import Clock
from rosetta.cluster import Peers
from rosetta.config import Config
from rosetta.store.db import Database

if TYPE_CHECKING:
    from rosetta.realtime.hub import Hub

T = TypeVar("T")
# A notification whose one argument is a list of ids (tokens.revoked) crosses to the other workers
# in slices of this many: one message may be at most cluster.MAX_MESSAGE_BYTES (~36,000 token ids),
# and a larger one was dropped, so a mass revocation left the other workers' caches trusting tokens.
IDS_PER_PEER_MESSAGE = 10_000


@dataclass
class Context:
    config: Config
    clock: Clock
    db: Database
    hub: Hub
    # The other worker processes of this server (rosetta.cluster); None when this is the only one.
    peers: Peers | None = None
    # Hooks other parts register to learn about commits without services importing them.
    listeners: dict[str, list[Callable[..., Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.peers is not None:
            self.peers.on("notify", lambda message: self._tell_listeners(message[0], *message[1]))

    def notify(self, topic: str, *args: Any) -> None:
        """Tell the listeners of every worker about a committed change (e.g. revoked tokens).

        Arguments cross to the other workers as JSON: ids and strings, not objects.
        """
        self._tell_listeners(topic, *args)
        if self.peers is None:
            return
        if len(args) == 1 and isinstance(args[0], list) and len(args[0]) > IDS_PER_PEER_MESSAGE:
            ids = args[0]  # listeners of such topics take any part of the list
            for start in range(0, len(ids), IDS_PER_PEER_MESSAGE):
                self.peers.send("notify", [topic, [ids[start:start + IDS_PER_PEER_MESSAGE]]])
            return
        self.peers.send("notify", [topic, list(args)])

    def _tell_listeners(self, topic: str, *args: Any) -> None:
        for listener in self.listeners.get(topic, []):
            listener(*args)

    async def off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """Run CPU-heavy work (bcrypt, thumbnails, hashing) in the default executor."""
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    def now(self) -> str:
        return self.clock.now_iso()
