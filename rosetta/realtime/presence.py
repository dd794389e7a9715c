"""Presence: who came online or went offline, told to the connected people who share a workspace with them.

Owns the live-only ``presence.updated`` frames (never in the durable log, like ``typing``). A user is
online from their FIRST live connection (WebSocket or SSE) until their LAST one closes. The frame, sent
without ``seq`` (SSE: ``event: presence.updated`` and no ``id:``, so Last-Event-ID is untouched):

    {"type": "event", "event": "presence.updated",
     "data": {"users": [{"user_id": "<id>", "status": "online" | "offline"}, ...]}}

Changes are coalesced and flushed at most every ``FLUSH_S``: one frame per recipient per flush listing
every change that recipient may see, so N people connecting at once cost one membership query and one
frame each, not N x N frames. A change undone before the flush (a quick reconnect) is never sent.
Recipients with the same set of affected workspaces share one encoded frame. A flush takes at most
``MAX_PER_FLUSH`` changes (the rest wait for the next), which bounds its query and its frames.
A temporary room is its own workspace, so a guest's presence stays inside their room.

With several worker processes, each tells the others when a user's first connection to it opened
or its last one closed; a user is online while connected to any worker, and each worker tells its
own connections about changes to that.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from rosetta.realtime.wire import Frame, dumps
from rosetta.store import realtime as realtime_store

if TYPE_CHECKING:
    from rosetta.realtime.hub import Hub

log = logging.getLogger("rosetta.realtime")

FLUSH_S = 0.25  # the longest a presence change waits: short for people, long enough to coalesce a burst
MAX_PER_FLUSH = 500  # changes per flush (also the size of one SQL IN list)
ONLINE = "online"
OFFLINE = "offline"


class Presence:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._pending: dict[str, str] = {}  # user_id -> status not told yet (insertion order = change order)
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[int] | None = None
        self._elsewhere: dict[str, int] = {}  # user_id -> how many other workers they are connected to

    def joined(self, user_id: str) -> None:
        """After the hub registered a connection: the user's first one makes them online."""
        if self.hub.connection_count(user_id) == 1:
            self._tell_peers(user_id, ONLINE)
            if not self._elsewhere.get(user_id):
                self._changed(user_id, ONLINE)

    def left(self, user_id: str) -> None:
        """After the hub dropped a connection: the user's last one makes them offline."""
        if self.hub.connection_count(user_id) == 0:
            self._tell_peers(user_id, OFFLINE)
            if not self._elsewhere.get(user_id):
                self._changed(user_id, OFFLINE)

    def online_elsewhere(self, user_id: str) -> bool:
        return bool(self._elsewhere.get(user_id))

    def elsewhere(self, user_id: str, status: str) -> None:
        """Another worker's message: the user's first connection to it opened, or its last one closed."""
        before = self._elsewhere.get(user_id, 0)
        after = before + 1 if status == ONLINE else max(before - 1, 0)
        if after:
            self._elsewhere[user_id] = after
        else:
            self._elsewhere.pop(user_id, None)
        if self.hub.connection_count(user_id) == 0 and bool(before) != bool(after):
            self._changed(user_id, status)

    def _tell_peers(self, user_id: str, status: str) -> None:
        if self.hub.ctx is not None and self.hub.ctx.peers is not None:
            self.hub.ctx.peers.send("presence", [user_id, status])

    def _changed(self, user_id: str, status: str) -> None:
        # Changes alternate (online, offline, online...): a second one before the flush undoes the first,
        # and the peers, who were never told, keep what they knew.
        if self._pending.pop(user_id, None) is not None:
            return
        self._pending[user_id] = status
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is not None or (self._flushing is not None and not self._flushing.done()):
            return
        if self.hub.ctx is None:
            return
        self._timer = asyncio.get_running_loop().call_later(FLUSH_S, self._start_flush)

    def _start_flush(self) -> None:
        self._timer = None
        self._flushing = asyncio.get_running_loop().create_task(self._flush_then_reschedule())

    async def _flush_then_reschedule(self) -> int:
        try:
            return await self.flush()
        except Exception:
            log.exception("presence flush failed")
            return 0
        finally:
            self._flushing = None
            if self._pending:
                self._schedule()  # more than one flush's worth, or changes that came in meanwhile

    def stop(self) -> None:
        """Shutdown: nothing more to tell (every connection is closing)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending.clear()

    async def flush(self) -> int:
        """Send the pending changes (up to ``MAX_PER_FLUSH``); returns the number of frames offered."""
        hub = self.hub
        if not self._pending or hub.ctx is None:
            return 0
        batch: dict[str, str] = {}
        for user_id in list(self._pending)[:MAX_PER_FLUSH]:
            batch[user_id] = self._pending.pop(user_id)
        rows = await realtime_store.shared_memberships(hub.ctx.db.reader, list(batch))
        # Per workspace: which members changed. Per connected member: the workspaces with a change.
        changed_in: dict[str, list[str]] = {}
        heard_in: dict[str, list[str]] = {}
        for workspace_id, user_id in rows:
            if user_id in batch:
                changed_in.setdefault(workspace_id, []).append(user_id)
            if hub.is_online(user_id):
                heard_in.setdefault(user_id, []).append(workspace_id)
        # Recipients sharing the same workspaces hear the same list: built and encoded once per group.
        groups: dict[tuple[str, ...], list[str]] = {}
        for user_id, workspaces in heard_in.items():
            groups.setdefault(tuple(workspaces), []).append(user_id)
        offered = 0
        for workspaces, recipients in groups.items():
            changed = list(dict.fromkeys(u for w in workspaces for u in changed_in.get(w, ())))
            shared: Frame | None = None
            for recipient in recipients:
                if recipient in batch:  # nobody is told about themselves
                    frame = self._frame([u for u in changed if u != recipient], batch)
                else:
                    shared = shared or self._frame(changed, batch)
                    frame = shared
                if frame is None:
                    continue
                for sub in list(hub.connections_of(recipient)):
                    sub.offer(frame)
                    offered += 1
        return offered

    @staticmethod
    def _frame(user_ids: list[str], statuses: dict[str, str]) -> Frame | None:
        if not user_ids:
            return None
        users = [{"user_id": user_id, "status": statuses[user_id]} for user_id in user_ids]
        return Frame(None, "presence.updated", dumps({"users": users}))
