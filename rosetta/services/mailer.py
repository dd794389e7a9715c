"""The mail outbox: requests enqueue inside their own write unit; the ``mail.send`` job delivers,
the ``mail.trim`` job deletes what ended long ago.

A request that sends mail answers at once (ARCHITECTURE: everything that must survive a crash is a
row). The job sends outside any transaction, then records the outcome; failures are retried with
exponential backoff and jitter until ``mail.max_attempts``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

from rosetta.clock import iso
from rosetta.ids import new_id
from rosetta.mail.smtp import backoff_s, deliver, single_line
from rosetta.services.context import Context
from rosetta.services.fresh import uncached
from rosetta.services.trimming import delete_in_chunks
from rosetta.store import outbox as outbox_store
from rosetta.store.connections import Tx

log = logging.getLogger("rosetta.mail")

BATCH = 50  # mails per job run: a run stays short even when an SMTP relay is slow
ERROR_MAX = 500  # characters of the last error kept on the row
KEEP_ENDED_DAYS = 30  # a sent or failed mail's row (no body) stays this long, to answer "did it go out?"


class Mailer:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def enqueue(self, tx: Tx, to: str, subject: str, body: str) -> str:
        """Queue a mail inside the caller's transaction; it goes out only if that commits."""
        mail_id = new_id()
        await outbox_store.enqueue(tx, id=mail_id, to=single_line(to), subject=single_line(subject), body=body,
                                   now=self.ctx.now())
        return mail_id

    async def send_due(self) -> int:
        """The ``mail.send`` job: send what is due; return how many went out.

        Outcomes are recorded while the batch goes on: whenever no record write is in flight, one
        write records every outcome gathered so far (the mails sent in one UPDATE). Awaiting one
        commit per mail kept the shared writer busy for a whole batch (50 commits, ~225 ms measured
        on the realtime bench); one write per mail, even sharing commits, still cost a GIL hand-over
        per statement on the writer's thread while this loop was busy building mails (a 35 ms
        COMMIT measured), and every message sent meanwhile waited behind it. A crash re-sends at
        most the mails whose outcome was not written yet (at-least-once, as before).
        """
        config = self.ctx.config.mail
        rows = await outbox_store.due(self.ctx.db.reader, self.ctx.now(), BATCH)
        outcomes = Outcomes()
        recording: asyncio.Task[None] | None = None
        sent = 0
        for row in rows:
            try:
                await deliver(config, row["to"], row["subject"], row["body"])
            except Exception as exc:  # any SMTP or network failure: retry later, never crash the job
                attempts = row["attempts"] + 1
                error = f"{type(exc).__name__}: {exc}"[:ERROR_MAX]
                retry_at = None
                if attempts < config.max_attempts:
                    retry_at = iso(self.ctx.clock.now() + timedelta(seconds=backoff_s(attempts)))
                log.warning("mail %s to %s failed (attempt %d): %s", row["id"], row["to"], attempts, error)
                outcomes.failed.append((row["id"], error, retry_at))
            else:
                outcomes.sent.append(row["id"])
                sent += 1
            if recording is None or recording.done():
                if recording is not None:
                    await recording  # a failed record ends the run, as any write error would
                recording = self._record(outcomes.take())
            # Log mode awaits nothing: let requests and deliveries in between mails (this also starts
            # the record just queued).
            await asyncio.sleep(0)
        if recording is not None:
            await recording
        if outcomes.sent or outcomes.failed:
            await self._record(outcomes.take())
        return sent

    async def trim(self) -> int:
        """The ``mail.trim`` job: delete mails sent or failed more than KEEP_ENDED_DAYS ago; how many went.

        Without it the outbox kept a row for every mail ever sent. Pending mails stay, however old.
        """
        cutoff = iso(self.ctx.clock.now() - timedelta(days=KEEP_ENDED_DAYS))
        return await delete_in_chunks(self.ctx.db, partial(outbox_store.delete_ended_chunk, cutoff=cutoff))

    def _record(self, outcomes: Outcomes) -> asyncio.Task[None]:
        async def unit(tx: Tx) -> None:
            await outbox_store.mark_sent(tx, outcomes.sent, self.ctx.now())
            for mail_id, error, retry_at in outcomes.failed:
                await outbox_store.mark_failed(tx, mail_id, error, retry_at)

        # The outbox is read by no cache: this commit keeps every cached read.
        return asyncio.get_running_loop().create_task(self.ctx.db.write(uncached(unit)))


@dataclass
class Outcomes:
    """What the mails of a run came to, not yet written: sent ids, and failures with their retry time."""

    sent: list[str] = field(default_factory=list)
    failed: list[tuple[str, str, str | None]] = field(default_factory=list)

    def take(self) -> Outcomes:
        taken = Outcomes(self.sent, self.failed)
        self.sent, self.failed = [], []
        return taken
