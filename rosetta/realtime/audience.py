"""Audiences: who may see an event, decided from the database when it is delivered.

Owns the map ``audience_kind -> resolver``; a resolver answers ``{user_id: reader_language}`` for
one audience id from committed rows. Other features add kinds (temporary rooms register
``"room"``: ``hub.audiences["room"] = resolver``). An unknown kind reaches nobody (deny by default).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from rosetta.services.fresh import FreshCache
from rosetta.store import channels as channel_store
from rosetta.store import direct as direct_store
from rosetta.store import realtime as realtime_store
from rosetta.store import workspaces as workspace_store
from rosetta.store.connections import Conn

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


CACHED_AUDIENCES = 1024


class Audiences:
    """The resolvers, with their answers kept between writes.

    Who reads an audience changes only through writes that move every freshness stamp (members,
    roles, channel passwords, languages, deactivation); a message post moves only its own place's.
    So a channel of 1,000 readers is looked up once, not once per message delivered into it.
    The answers are shared: callers must not change them.
    """

    def __init__(self) -> None:
        self.resolvers: dict[str, AudienceResolver] = default_resolvers()
        self.known: FreshCache[Readers] | None = None  # set by the hub once the database exists

    def remember_with(self, known: FreshCache[Readers]) -> None:
        self.known = known

    def __setitem__(self, kind: str, resolver: AudienceResolver) -> None:
        self.resolvers[kind] = resolver

    def __getitem__(self, kind: str) -> AudienceResolver:
        return self.resolvers[kind]

    def __contains__(self, kind: object) -> bool:
        return kind in self.resolvers

    async def _resolve(self, conn: Conn, kind: str, audience_id: str) -> Readers:
        resolver = self.resolvers.get(kind)
        if resolver is None:
            log.warning("no audience resolver for %r: event reaches nobody", kind)
            return {}
        return await resolver(conn, audience_id)

    async def readers(self, conn: Conn, kind: str, audience_id: str,
                      cache: dict[tuple[str, str], Readers] | None = None) -> Readers:
        key = (kind, audience_id)
        if cache is not None and key in cache:
            return cache[key]
        if self.known is not None:
            found = await self.known.load(key, lambda: self._resolve(conn, kind, audience_id))
        else:
            found = await self._resolve(conn, kind, audience_id)
        if cache is not None:
            cache[key] = found
        return found

    async def readers_if_any(self, conn: Conn, kind: str, audience_id: str) -> Readers:
        """``readers`` for an id a client named (``typing``): an answer of nobody is not kept.

        The cache's CACHED_AUDIENCES entries are what deliveries reuse. An id a client made up has no
        reader; kept, each such answer would push a real audience out, and the next delivery there
        would read it again. A real place, hidden from the caller or not, has readers and is kept.
        The client's throttle (handlers/realtime.py) bounds how often an unkept answer is read again.
        """
        if self.known is None:
            return await self._resolve(conn, kind, audience_id)
        return await self.known.load((kind, audience_id), lambda: self._resolve(conn, kind, audience_id), keep=bool)
