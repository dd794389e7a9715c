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
        if self.peers is not None:
            self.peers.send("notify", [topic, list(args)])

    def _tell_listeners(self, topic: str, *args: Any) -> None:
        for listener in self.listeners.get(topic, []):
            listener(*args)

    async def off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """Run CPU-heavy work (bcrypt, thumbnails, hashing) in the default executor."""
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    def now(self) -> str:
        return self.clock.now_iso()
