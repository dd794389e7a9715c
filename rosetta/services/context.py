"""What every service needs, built once by the app: configuration, clock, database, hub."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from rosetta.clock import Clock
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
    # Hooks other parts register to learn about commits without services importing them.
    listeners: dict[str, list[Callable[..., Any]]] = field(default_factory=dict)

    async def off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """Run CPU-heavy work (bcrypt, thumbnails, hashing) in the default executor."""
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    def now(self) -> str:
        return self.clock.now_iso()
