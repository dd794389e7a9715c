"""Audiences: who may see an event, decided from the database when it is delivered.

Owns the map ``audience_kind -> resolver``; a resolver answers ``{user_id: reader_language}`` for
one audience id from committed rows. Other features add kinds (temporary rooms register
``"room"``: ``hub.audiences["room"] = resolver``). An unknown kind reaches nobody (deny by default).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from rosetta.store import channels as channel_store
from rosetta.store import direct as direct_store
from rosetta.store import realtime as realtime_store
from rosetta.store import workspaces as workspace_store
from rosetta.store.db import Conn

log = logging.getLogger("rosetta.realtime")

Readers = dict[str, str]  # user_id -> reading language
AudienceResolver = Callable[[Conn, str], Awaitable[Readers]]


async def channel_readers(conn: Conn, channel_id: str) -> Readers:
    return {row[0]: row[1] for row in await channel_store.readers(conn, channel_id)}


async def workspace_readers(conn: Conn, workspace_id: str) -> Readers:
    return {row[0]: row[1] for row in await workspace_store.readers(conn, workspace_id)}


async def conversation_readers(conn: Conn, conversation_id: str) -> Readers:
    return {row[0]: row[1] for row in await direct_store.readers(conn, conversation_id)}


async def user_readers(conn: Conn, user_id: str) -> Readers:
    return {row[0]: row[1] for row in await realtime_store.user_reader(conn, user_id)}


def default_resolvers() -> dict[str, AudienceResolver]:
    return {
        "workspace": workspace_readers,
        "channel": channel_readers,
        "conversation": conversation_readers,
        "user": user_readers,
    }


class Audiences:
    """The resolvers plus a per-batch cache: one query per distinct audience per delivery batch."""

    def __init__(self) -> None:
        self.resolvers: dict[str, AudienceResolver] = default_resolvers()

    def __setitem__(self, kind: str, resolver: AudienceResolver) -> None:
        self.resolvers[kind] = resolver

    def __getitem__(self, kind: str) -> AudienceResolver:
        return self.resolvers[kind]

    def __contains__(self, kind: object) -> bool:
        return kind in self.resolvers

    async def readers(self, conn: Conn, kind: str, audience_id: str,
                      cache: dict[tuple[str, str], Readers] | None = None) -> Readers:
        key = (kind, audience_id)
        if cache is not None and key in cache:
            return cache[key]
        resolver = self.resolvers.get(kind)
        if resolver is None:
            log.warning("no audience resolver for %r: event reaches nobody", kind)
            found: Readers = {}
        else:
            found = await resolver(conn, audience_id)
        if cache is not None:
            cache[key] = found
        return found
