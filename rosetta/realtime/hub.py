"""The hub: hears committed events and hands each to the live connections whose audience includes it.

Owns the set of live connections, delivery order and per-reader payloads. ``publish`` (called in an
on-commit callback) only queues; one drain task delivers in ``seq`` order, deciding recipients from
the database at that moment (a removed member or deactivated user gets nothing more). A message
event is rendered once per distinct reader language and encoded once per transport (render.py); the
same bytes go to every connection of that language. The hub never waits for a client: writes are
non-blocking and an overflowing connection is closed (subscription.py).

It must not write domain rows: apart from trimming its own log it only reads.

With several worker processes (rosetta.cluster) each hub serves its own connections: events
committed by another worker are read from the log when that worker says new ones are there (a
``TAIL`` in the queue), so every hub delivers every event in seq order, whoever committed it.
Live-only frames (typing, read) and presence changes are passed to the other hubs as messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import tornado.ioloop

from rosetta.clock import iso, parse_iso
from rosetta.realtime.audience import CACHED_AUDIENCES, Audiences, Readers
from rosetta.realtime.presence import Presence
from rosetta.realtime.render import event_of, frames_for, message_rows, neutral_data, render_all, target_language
from rosetta.realtime.subscription import CLOSE_GOING_AWAY, CLOSE_REVOKED, Subscription
from rosetta.realtime.wire import Control, Frame, dumps
from rosetta.services.events import RENDERED, Event
from rosetta.services.fresh import FreshCache
from rosetta.services.trimming import CHUNK, delete_in_chunks
from rosetta.services.views import same_language
from rosetta.store import events as event_store
from rosetta.store import realtime as realtime_store
from rosetta.store.connections import complete

if TYPE_CHECKING:
    from rosetta.jobs import JobRunner
    from rosetta.services.context import Context
    from rosetta.services.messages import MessageService

log = logging.getLogger("rosetta.realtime")

REPLAY_PAGE = 500  # events read per replay step; then wait for the socket to drain
SSE_COMMENT_S = 15.0  # spec §5: keeps proxies from closing an idle stream
# A fan-out offers an event to this many connections, then gives the loop a turn. At ~20 µs a
# connection (mostly the kernel's send), 500 connections held a worker's loop for 10 ms per event,
# and a send arriving meanwhile waited for all of it before its COMMIT could even be queued. With
# turns, the send is read and committed while the fan-out goes on (realtime bench, 1,000 clients,
# alternating runs: send p50 6-10 ms against 12-17 ms, delivery p99 median 41 against 49 ms).
# 32 cost more CPU than it saved; 128 was no better than 64.
OFFERS_BETWEEN_YIELDS = 64
SWEEP_CHUNK = 500  # credentials looked up per query by the expiry sweep (one SQL IN list)
TAIL = "tail"  # queue item: read the log for events other workers committed (see _drain)


class Hub:
    def __init__(self) -> None:
        self.last_seq = 0
        self.audiences = Audiences()
        self.ctx: Context | None = None
        self.messages: MessageService | None = None
        self._by_user: dict[str, set[Subscription]] = {}
        # Per audience: its readers as last resolved, and their connections here by language (_recipients).
        self._recipients_kept: dict[tuple[str, str], tuple[Readers, dict[str, list[Subscription]]]] = {}
        # Events to deliver, log tails, and closures to run once what was queued before them was offered.
        self._queue: deque[Event | str | Callable[[], None]] = deque()
        self._delivered_through = 0  # the drain's position in the log
        self._drain_task: asyncio.Task[None] | None = None
        self._sse_timer: tornado.ioloop.PeriodicCallback | None = None
        self._next_connection = 0
        self.connection_prefix = "c"  # with several workers, each its own (rosetta.app)
        self.delivered = 0  # frames written live (the benchmark prints it)
        self.presence = Presence(self)

    def attach(self, ctx: Context, messages: MessageService, jobs: JobRunner) -> None:
        """Wire the hub to the app's context and message renderer; register its listeners and job."""
        self.ctx = ctx
        self.messages = messages
        self.audiences.remember_with(FreshCache(ctx.db, CACHED_AUDIENCES))
        if ctx.peers is not None:
            ctx.peers.on("events", lambda _: self._tail())
            ctx.peers.on("relay", lambda message: self._relay_from_peer(*message))
            ctx.peers.on("presence", lambda message: self.presence.elsewhere(*message))
        jobs.add("events.trim", ctx.config.realtime.trim_interval_s, self.trim)
        # A credential reaching its expires_at loses its sockets within one heartbeat.
        jobs.add("realtime.expiry", ctx.config.realtime.heartbeat_s, self.sweep_expired, every_worker=True)
        ctx.listeners.setdefault("tokens.revoked", []).append(self.close_tokens)
        ctx.listeners.setdefault("sessions.revoked", []).append(self.close_sessions)
        ctx.listeners.setdefault("users.deactivated", []).append(self.close_users)

    # Connections -----------------------------------------------------------------------------------

    def connection_count(self, user_id: str) -> int:
        return len(self._by_user.get(user_id, ()))

    def connections_of(self, user_id: str) -> set[Subscription]:
        return self._by_user.get(user_id, set())

    def is_online(self, user_id: str) -> bool:
        """Whether the user has a live WebSocket or SSE connection to any worker (push skips online users)."""
        return bool(self._by_user.get(user_id)) or self.presence.online_elsewhere(user_id)

    def subscriptions(self) -> Iterable[Subscription]:
        for subs in list(self._by_user.values()):
            yield from list(subs)

    def new_connection_id(self) -> str:
        self._next_connection += 1
        return f"{self.connection_prefix}{self._next_connection}"

    def add(self, sub: Subscription) -> None:
        """Register before reading the log: every event committed from now on reaches ``pending``."""
        if not self._by_user:
            self._catch_up()
        self._by_user.setdefault(sub.user_id, set()).add(sub)
        self._recipients_kept.clear()
        if sub.transport == "sse" and self._sse_timer is None:
            self._sse_timer = tornado.ioloop.PeriodicCallback(self._sse_comment, SSE_COMMENT_S * 1000)
            self._sse_timer.start()
        self.presence.joined(sub.user_id)

    def remove(self, sub: Subscription) -> None:
        subs = self._by_user.get(sub.user_id)
        if subs is not None and sub in subs:
            subs.discard(sub)
            self._recipients_kept.clear()
            if not subs:
                del self._by_user[sub.user_id]
            self.presence.left(sub.user_id)

    def _sse_comment(self) -> None:
        for sub in self.subscriptions():
            if sub.transport == "sse" and not sub.closed:
                sub._write(b": keep-alive\n\n")

    def close_where(self, predicate: Any, code: int, reason: str) -> int:
        closed = 0
        for sub in self.subscriptions():
            if predicate(sub):
                sub.close(code, reason)
                closed += 1
        return closed

    def close_tokens(self, token_ids: Iterable[str]) -> None:
        """``tokens.revoked`` listener; web sessions and guest tokens are announced under the same topic."""
        wanted = set(token_ids)
        self.after_delivery(lambda: self.close_where(
            lambda sub: sub.principal.token_id in wanted or sub.principal.session_id in wanted,
            CLOSE_REVOKED, "token revoked"))

    def close_sessions(self, session_ids: Iterable[str]) -> None:
        wanted = set(session_ids)
        self.after_delivery(lambda: self.close_where(lambda sub: sub.principal.session_id in wanted,
                                                     CLOSE_REVOKED, "session revoked"))

    def close_users(self, user_ids: Iterable[str]) -> None:
        wanted = set(user_ids)
        self.after_delivery(lambda: self.close_where(lambda sub: sub.user_id in wanted, CLOSE_REVOKED,
                                                     "user deactivated"))

    def after_delivery(self, action: Callable[[], None]) -> None:
        """Run ``action`` once every event published so far has been offered, at once when none waits.

        Revocations are notified after the same COMMIT that published their events: closing at once
        would cut the connection before its last events (a guest would never see ``room.expired``).
        Queued behind them, the close follows in commit order.
        """
        if self._drain_task is None or self._drain_task.done():
            action()
            return
        self._queue.append(action)

    async def close_all(self) -> None:
        """Shutdown: WebSockets get 1001, SSE streams end; clients resume from their last seq."""
        if self._sse_timer is not None:
            self._sse_timer.stop()
            self._sse_timer = None
        self.close_where(lambda sub: True, CLOSE_GOING_AWAY, "server restarting")
        self.presence.stop()
        if self._drain_task is not None and not self._drain_task.done():
            self._drain_task.cancel()

    # Live delivery ---------------------------------------------------------------------------------

    def publish(self, event: Event) -> None:
        """Called after COMMIT, in this worker's seq order. Queue and return: delivery reads the database."""
        self.last_seq = max(self.last_seq, event.seq)
        if self.ctx is not None and self.ctx.peers is not None:
            self.ctx.peers.send("events")  # the other workers' hubs read it from the log
        if not self._by_user or self.ctx is None:
            return  # nobody listening: a reconnecting client replays from the log
        self._queue.append(event)
        self._start_drain()

    def _tail(self) -> None:
        """Another worker committed events: deliver them after what is queued."""
        if not self._by_user or self.ctx is None:
            return  # nobody listening; the next connection catches up first (add)
        self._queue_tail()
        self._start_drain()

    def _queue_tail(self) -> None:
        if not self._queue or self._queue[-1] != TAIL:
            self._queue.append(TAIL)

    def _catch_up(self) -> None:
        """The first connection after none: the drain's position jumps to the log's head.

        Events before it are this connection's replay or hello; with nobody listening the hub did
        not follow the log. Runs before the connection reads the log, so nothing falls between.
        """
        if self.ctx is None:
            return
        head = self.last_seq
        if self.ctx.peers is not None:  # other workers may have committed since: ask the log
            head = max(head, complete(realtime_store.log_bounds(self.ctx.db.reader))[1])
        self._delivered_through = head

    def _start_drain(self) -> None:
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = asyncio.get_running_loop().create_task(self._drain())

    async def _read_tail(self) -> list[Event]:
        """The events committed after the drain's position, in seq order (any worker's)."""
        assert self.ctx is not None
        events: list[Event] = []
        while True:
            rows = await event_store.after(self.ctx.db.reader, self._delivered_through, REPLAY_PAGE)
            events.extend(event_of(row) for row in rows)
            if rows:
                self._delivered_through = events[-1].seq
            if len(rows) < REPLAY_PAGE:
                break
        self.last_seq = max(self.last_seq, self._delivered_through)
        return events

    async def _drain(self) -> None:
        while self._queue:
            items = list(self._queue)
            self._queue.clear()
            batch: list[Event] = []
            for item in [*items, None]:
                if isinstance(item, Event):
                    if item.seq == self._delivered_through + 1:
                        batch.append(item)
                        self._delivered_through = item.seq
                    elif item.seq > self._delivered_through:  # another worker committed the seqs between
                        batch.extend(await self._read_tail())  # all of them, in order, this one too
                    continue  # else a tail already read it
                if item == TAIL:
                    batch.extend(await self._read_tail())
                    continue
                if batch:
                    try:
                        await self._deliver(batch)
                    except Exception:
                        log.exception("delivering %d events failed", len(batch))
                    batch = []
                if item is not None:
                    try:
                        item()  # an after_delivery action: every event queued before it was offered
                    except Exception:
                        log.exception("after-delivery action failed")

    async def _deliver(self, batch: list[Event]) -> None:
        """Offer each event of ``batch`` to its connected readers, rendered once per language.

        When the batch holds several events (the hub fell behind), each connection's frames are
        corked and leave in one send: a syscall per connection per batch instead of per event,
        which is most of a fan-out's cost, so a burst drains faster the larger it is.

        The loop gets a turn every OFFERS_BETWEEN_YIELDS connections. Who gets an event was settled
        when the batch was planned, which is after the event's COMMIT: a change committed during
        such a turn (a member removed) applies from the next batch, as if it had come a moment later.
        """
        assert self.ctx is not None
        conn = self.ctx.db.reader
        cache: dict[tuple[str, str], Readers] = {}
        corked: set[Subscription] | None = set() if len(batch) > 1 else None
        # First who gets what, then the messages someone here will be shown, read and rendered per
        # language in one call each (a finished translation round is hundreds of events: one query
        # each was the hub's main cost). Most of a round's events have no reader on this worker (they
        # are for another language, or another worker's connections): their messages are not read.
        plans: list[tuple[Event, dict[str, list[Subscription]]]] = []
        for event in batch:
            readers = await self.audiences.readers(conn, event.audience_kind, event.audience_id, cache)
            by_language = self._recipients((event.audience_kind, event.audience_id), readers)
            if event.name == "message.translated":
                by_language = {language: subs for language, subs in by_language.items()
                               if same_language(language, target_language(event))}
            if by_language:
                plans.append((event, by_language))
        rows = await message_rows(conn, [event for event, _ in plans])
        wanted: dict[str, dict[str, Any]] = {}
        for event, by_language in plans:
            row = rows.get(event.payload.get("id")) if event.name in RENDERED else None
            if row is None:
                continue  # not a message event, or the message is gone (purged)
            for language in by_language:
                wanted.setdefault(language, {})[row["id"]] = row
        rendered = await render_all(self.messages, conn, wanted)
        try:
            for event, by_language in plans:
                if not self._by_user:
                    return
                if event.name not in RENDERED:
                    frame = Frame(event.seq, event.name, dumps(neutral_data(event.name, event.payload)))
                    for subs in by_language.values():
                        await in_turns(subs, partial(self._offer, frame, corked=corked))
                    continue
                for language, subs in by_language.items():
                    data = rendered.get((language, event.payload["id"]))
                    if data is None:
                        break  # the message is gone (purged): nothing left to show
                    await in_turns(subs, partial(self._offer, Frame(event.seq, event.name, data), corked=corked))
            if corked:  # in turns too: a batch is corked when the hub fell behind, when the loop is most needed
                await in_turns(corked, uncork)
        finally:
            uncork(corked or ())  # what a return, an error or a cancellation left corked

    def _recipients(self, audience: tuple[str, str], readers: Readers) -> dict[str, list[Subscription]]:
        """This worker's connections of ``readers``, by reading language; shared, callers must not change it.

        Kept per audience while its readers are the same answer (``Audiences`` hands out one dict
        while no write could have changed it) and no connection came or went here (``add`` and
        ``remove`` forget them all). Sorting 500 connections by language was half of what
        planning a message cost a worker in the realtime bench (0.65 of 1.2 ms), for every message.
        """
        kept = self._recipients_kept.get(audience)
        if kept is not None and kept[0] is readers:  # held here, so the dict cannot be another's reused id
            return kept[1]
        by_language: dict[str, list[Subscription]] = {}
        for user_id, subs in self._connected(readers):
            by_language.setdefault(readers[user_id], []).extend(subs)
        if len(self._recipients_kept) >= CACHED_AUDIENCES:
            self._recipients_kept.pop(next(iter(self._recipients_kept)))  # the oldest kept
        self._recipients_kept[audience] = (readers, by_language)
        return by_language

    def _connected(self, readers: Readers) -> Iterable[tuple[str, set[Subscription]]]:
        # Walk the smaller side: 1,000 readers with 3 connected users should cost 3 lookups.
        if len(readers) <= len(self._by_user):
            for user_id in readers:
                subs = self._by_user.get(user_id)
                if subs:
                    yield user_id, subs
        else:
            for user_id, subs in list(self._by_user.items()):
                if user_id in readers and subs:
                    yield user_id, subs

    def _offer(self, frame: Frame, subs: Iterable[Subscription], corked: set[Subscription] | None = None) -> None:
        subs = list(subs)  # a copy: an overflowing connection leaves the set while this runs
        if corked is not None:
            for sub in subs:
                if sub not in corked:
                    sub.cork()
                    corked.add(sub)
        for sub in subs:
            sub.offer(frame)
        self.delivered += len(subs)

    # Live-only events (typing, read, presence): never in the durable log --------------------------

    async def relay(self, name: str, audience_kind: str, audience_id: str, data: dict[str, Any],
                    skip: Subscription | None = None, forward: bool = True) -> None:
        """A live-only frame to the connected readers of an audience, on every worker."""
        assert self.ctx is not None
        if forward and self.ctx.peers is not None:
            self.ctx.peers.send("relay", [name, audience_kind, audience_id, data])
        readers = await self.audiences.readers(self.ctx.db.reader, audience_kind, audience_id)
        frame = Frame(None, name, dumps(data))
        for _, subs in self._connected(readers):
            self._offer(frame, (sub for sub in subs if sub is not skip))

    def _relay_from_peer(self, name: str, audience_kind: str, audience_id: str, data: dict[str, Any]) -> None:
        if self._by_user:
            asyncio.get_running_loop().create_task(self.relay(name, audience_kind, audience_id, data, forward=False))

    async def relay_read(self, sub: Subscription, message_id: str) -> None:
        """A ``read`` frame: the reader's other connections learn the message was read (unread badges)."""
        assert self.ctx is not None
        row = await realtime_store.message_place(self.ctx.db.reader, message_id)
        if row is None:
            return
        kind, place = ("channel", row["channel_id"]) if row["channel_id"] else ("conversation", row["conversation_id"])
        if not await self.can_see(sub.user_id, kind, place):
            return  # no existence leak: an unknown message and a hidden one look the same
        await self.relay("read", "user", sub.user_id,
                         {"message_id": row["id"], f"{kind}_id": place, "user_id": sub.user_id}, skip=sub)

    async def can_see(self, user_id: str, audience_kind: str, audience_id: str) -> bool:
        """Whether ``user_id`` reads an audience a client named; made-up ids leave nothing in the cache."""
        assert self.ctx is not None
        return user_id in await self.audiences.readers_if_any(self.ctx.db.reader, audience_kind, audience_id)

    async def sweep_expired(self) -> int:
        """The ``realtime.expiry`` job: close (4001) sockets whose bearer token or web session expired.

        Also those revoked or deleted without an announcement (the credentials.cleanup job deletes silently).
        Guest tokens end with their room, which closes them (rooms.expire). Returns how many closed.
        """
        assert self.ctx is not None
        users = [sub for sub in self.subscriptions() if sub.principal.kind == "user" and not sub.closed]
        token_ids = sorted({sub.principal.token_id for sub in users if sub.principal.token_id})
        session_ids = sorted({sub.principal.session_id for sub in users if sub.principal.session_id})
        now = self.ctx.clock.now()
        live: set[str] = set()
        for start in range(0, max(len(token_ids), len(session_ids)), SWEEP_CHUNK):
            tokens, sessions = await realtime_store.credential_expiries(
                self.ctx.db.reader, token_ids[start:start + SWEEP_CHUNK], session_ids[start:start + SWEEP_CHUNK])
            live.update(key for key, ends in tokens.items() if ends is None or parse_iso(ends) > now)
            live.update(key for key, ends in sessions.items() if parse_iso(ends) > now)
        dead = set(token_ids).union(session_ids) - live
        if not dead:
            return 0
        return self.close_where(lambda sub: sub.principal.kind == "user" and bool(
            {sub.principal.token_id, sub.principal.session_id} & dead), CLOSE_REVOKED, "credential expired")

    # Resume ----------------------------------------------------------------------------------------

    async def head(self) -> int:
        """The newest seq ever issued: a connection without a resume point is live from here."""
        assert self.ctx is not None
        _, newest = await realtime_store.log_bounds(self.ctx.db.reader)
        return max(newest, self.last_seq)

    async def replay(self, sub: Subscription, after: int) -> None:
        """Send every retained event after ``after`` that ``sub`` may see, then go live (no gap, no dup).

        Also the catch-up path after an overflow: the client reconnects and lands here.
        """
        assert self.ctx is not None
        sub.begin_replay()
        conn = self.ctx.db.reader
        oldest, newest = await realtime_store.log_bounds(conn)
        # The log lost events after ``after`` when the oldest retained one is further on (or all are gone).
        lost = (after + 1 < oldest) if oldest else (after < newest)
        # A point past the newest seq ever issued comes from another log (a restored backup, another
        # server): the seqs to come are below it, and a client dropping ``seq <= last seen`` would
        # discard them all. Told the same as a point out of retention, it starts over from the log.
        if lost or after > newest:
            sub.control(Control({"type": "resync_required", "oldest_seq": oldest or newest + 1}))
            sub.go_live()
            return
        sub.replaying_from(after)
        cursor = after
        cache: dict[tuple[str, str], Readers] = {}
        while not sub.closed:
            rows = await event_store.after(conn, cursor, REPLAY_PAGE)
            if not rows:
                break
            events = [event_of(row) for row in rows]
            for frame in await frames_for(self.audiences, self.messages, conn, sub.user_id, events, cache):
                sub.replayed(frame)
            cursor = events[-1].seq
            if len(rows) < REPLAY_PAGE:
                break
            if not await sub.drained():
                return
        if not sub.closed:
            sub.go_live()

    # Retention -------------------------------------------------------------------------------------

    async def trim(self, chunk: int = CHUNK) -> int:
        """The ``events.trim`` job: drop events older than ``realtime.retention_hours``.

        In chunks: every ``trim_interval_s`` it finds all the events of that interval (at 200 messages
        a second, hundreds of thousands), and one DELETE for them would hold the writer for seconds.
        """
        assert self.ctx is not None
        cutoff = iso(self.ctx.clock.now() - timedelta(hours=self.ctx.config.realtime.retention_hours))
        return await delete_in_chunks(self.ctx.db, partial(event_store.trim_chunk, cutoff=cutoff), chunk)


async def in_turns(subs: Iterable[Subscription], act: Callable[[list[Subscription]], None]) -> None:
    """``act`` on OFFERS_BETWEEN_YIELDS connections at a time, giving the loop a turn between them."""
    subs = list(subs)
    for start in range(0, len(subs), OFFERS_BETWEEN_YIELDS):
        if start:
            await asyncio.sleep(0)
        act(subs[start:start + OFFERS_BETWEEN_YIELDS])


def uncork(subs: Iterable[Subscription]) -> None:
    """Send what each corked connection holds (uncorking one already uncorked does nothing)."""
    for sub in subs:
        sub.uncork()
