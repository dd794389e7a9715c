"""Push notifications: who gets one, the durable outbox, and the ``push.deliver`` job.

Owns the push rules. A ``message.created`` event (hooked in the emitting transaction) queues one
outbox row per device of every recipient that has no live connection (``hub.is_online``): the
other participants of a direct conversation, and, in a channel, every reader @mentioned by name.

Mention syntax: ``@handle`` where handle is letters, digits, ``.``, ``_`` or ``-``; it names a reader
whose display name equals it ignoring case, spaces, dots, dashes and underscores (``@ana``,
``@AnaMaria``, ``@ana.maria`` all reach "Ana Maria"). The author is never notified.

At send time the text is rendered for the recipient's language (``MessageService.render``): while
the translation is pending the push waits, at most ``push.translation_wait_s`` after it was
queued, then goes out with the original. Provider trouble retries with exponential backoff up to
``push.max_attempts``; a token the provider calls unregistered removes the device.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from datetime import timedelta
from functools import partial

from rosetta.backoff import doubling_s
from rosetta.clock import iso, parse_iso
from rosetta.ids import new_id
from rosetta.push.base import Notification, Outcome, Sender
from rosetta.push.expo import ExpoSender
from rosetta.push.fcm import FcmSender
from rosetta.push.ntfy import NtfySender
from rosetta.services.context import Context
from rosetta.services.events import EMITTED, Event
from rosetta.services.fresh import uncached
from rosetta.services.messages import MessageService
from rosetta.services.trimming import delete_in_chunks
from rosetta.store import channels as channel_store
from rosetta.store import devices as device_store
from rosetta.store import direct as direct_store
from rosetta.store import messages as message_store
from rosetta.store import push as push_store
from rosetta.store.connections import Tx

log = logging.getLogger("rosetta.push")

MENTION_RE = re.compile(r"(?<![\w@])@([\w][\w.\-]{0,63})")
BATCH = 50
CONCURRENCY = 8
BACKOFF_BASE_S = 10
BACKOFF_CAP_S = 3600
BODY_CHARS = 240  # lock screens show ~2-4 lines; the app opens the full message
KEEP_FAILED_DAYS = 7


def handle_key(text: str) -> str:
    return re.sub(r"[\s._\-]+", "", text).casefold()


def mentioned_handles(content: str) -> set[str]:
    return {handle_key(match.group(1).rstrip(".-")) for match in MENTION_RE.finditer(content)}


def backoff_s(attempts: int) -> float:
    """10 s, 20 s, 40 s, … capped at an hour."""
    return doubling_s(attempts, BACKOFF_BASE_S, BACKOFF_CAP_S)


class PushService:
    def __init__(self, ctx: Context, messages: MessageService) -> None:
        self.ctx = ctx
        self.messages = messages
        config = ctx.config.push
        self.senders: dict[str, Sender] = {
            "fcm": FcmSender(ctx, config.fcm_credentials_file, config.fcm_endpoint),
            "expo": ExpoSender(config.expo_url),
            "ntfy": NtfySender(config.ntfy_allowed_hosts),
        }
        ctx.listeners.setdefault(EMITTED, []).append(self.on_event)

    # Enqueueing (inside the emitting transaction) --------------------------------------------

    async def on_event(self, tx: Tx, event: Event) -> None:
        if event.name != "message.created":
            return
        message = event.payload
        author_id = (message.get("author") or {}).get("id")
        if message.get("conversation_id"):
            recipients = [(r["user_id"], r["language"], r["device_id"], "direct")
                          for r in await push_store.conversation_recipients(tx, message["conversation_id"], author_id)]
        elif message.get("channel_id") and "@" in (message.get("original_content") or ""):
            recipients = await self._mentioned(tx, message["channel_id"], author_id, message["original_content"])
        else:
            return
        now = self.ctx.now()
        rows = [(new_id(), device_id, user_id, message["id"], language, reason, now, now)
                for user_id, language, device_id, reason in recipients if not self.ctx.hub.is_online(user_id)]
        if rows:
            await push_store.enqueue(tx, rows)

    async def _mentioned(self, tx: Tx, channel_id: str, author_id: str | None,
                         content: str) -> list[tuple[str, str, str, str]]:
        handles = mentioned_handles(content)
        if not handles:
            return []
        languages = {r["user_id"]: r["language"] for r in await channel_store.readers(tx, channel_id)
                     if r["user_id"] != author_id}
        found = await push_store.devices_with_names(tx, list(languages))
        return [(r["user_id"], languages[r["user_id"]], r["device_id"], "mention") for r in found
                if handle_key(r["name"]) in handles]

    # Delivering (job push.deliver) -----------------------------------------------------------

    async def deliver_due(self) -> int:
        due = await push_store.due(self.ctx.db.reader, self.ctx.now(), BATCH)
        if not due:
            return 0
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(row: sqlite3.Row) -> None:
            async with gate:
                try:
                    await self._deliver(row)
                except Exception as exc:  # one bad row must not stop the batch
                    log.exception("push %s failed unexpectedly", row["id"])
                    # Counted as an attempt: a sender that always raises must not retry without a cap.
                    try:
                        await self._record(row, Outcome("retry", f"unexpected error: {type(exc).__name__}: {exc}"))
                    except Exception:
                        log.exception("recording the failure of push %s failed", row["id"])

        await asyncio.gather(*(one(row) for row in due))
        return len(due)

    async def trim(self) -> int:
        """The ``push.trim`` job: forget pushes that failed more than KEEP_FAILED_DAYS ago; how many went."""
        cutoff = iso(self.ctx.clock.now() - timedelta(days=KEEP_FAILED_DAYS))
        return await delete_in_chunks(self.ctx.db, partial(push_store.trim_failed, cutoff=cutoff))

    async def _deliver(self, row: sqlite3.Row) -> None:
        reader = self.ctx.db.reader
        message = await message_store.by_id(reader, row["message_id"])
        if (message is None or message["deleted_at"] is not None or row["device_user_id"] != row["user_id"]
                or not await self._may_read(message, row["user_id"])):
            # Gone, or the recipient lost access since it was queued (removed, left, deactivated).
            await self.ctx.db.write(uncached(lambda tx: push_store.remove(tx, row["id"])))
            return
        shown = (await self.messages.render(reader, [message], row["language"]))[0]
        now = self.ctx.clock.now()
        deadline = parse_iso(row["created_at"]) + timedelta(seconds=self.ctx.config.push.translation_wait_s)
        if shown["translation_status"] == "pending" and now < deadline:
            # Not ready yet: look again at the deadline (or sooner, when the job runs and it is done).
            wait_until = iso(min(deadline, now + timedelta(seconds=1)))
            await self.ctx.db.write(uncached(lambda tx: push_store.reschedule(
                tx, row["id"], attempts=row["attempts"], next_attempt_at=wait_until, status="pending",
                last_error=None)))
            return
        outcome = await self.senders[row["provider"]].send(row["push_token"], self.notification(row, shown))
        await self._record(row, outcome)

    async def _may_read(self, message: sqlite3.Row, user_id: str) -> bool:
        """Decided again at send time, as the hub does for events."""
        reader = self.ctx.db.reader
        if message["channel_id"]:
            rows = await channel_store.readers(reader, message["channel_id"])
        elif message["conversation_id"]:
            rows = await direct_store.readers(reader, message["conversation_id"])
        else:
            return False
        return any(r["user_id"] == user_id for r in rows)

    @staticmethod
    def notification(row: sqlite3.Row, shown: dict) -> Notification:
        author = shown["author"]["name"] or "Someone"
        text = shown["display_content"] or ("📎 Attachment" if shown["attachments"] else "")
        if len(text) > BODY_CHARS:
            text = text[: BODY_CHARS - 1].rstrip() + "…"
        data = {"message_id": shown["id"], "reason": row["reason"]}
        for key in ("workspace_id", "channel_id", "conversation_id"):
            if shown[key]:
                data[key] = shown[key]
        title = f"{author} mentioned you" if row["reason"] == "mention" else author
        return Notification(title, text, data)

    async def _record(self, row: sqlite3.Row, outcome: Outcome) -> None:
        attempts = row["attempts"] + 1
        now = self.ctx.clock.now()

        async def unit(tx: Tx) -> None:
            if outcome.kind == "sent":
                await push_store.remove(tx, row["id"])
            elif outcome.kind == "gone":
                log.info("push token of device %s is unregistered (%s): removing it", row["device_id"],
                         outcome.detail)
                await device_store.delete(tx, row["device_id"])  # its outbox rows go with it (cascade)
            elif outcome.kind == "failed" or attempts >= self.ctx.config.push.max_attempts:
                await push_store.reschedule(tx, row["id"], attempts=attempts, next_attempt_at=iso(now),
                                            status="failed", last_error=outcome.detail[:500])
            else:
                await push_store.reschedule(tx, row["id"], attempts=attempts,
                                            next_attempt_at=iso(now + timedelta(seconds=backoff_s(attempts))),
                                            status="pending", last_error=outcome.detail[:500])

        await self.ctx.db.write(uncached(unit))  # the outbox and devices: no cached read shows them
