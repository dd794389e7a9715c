"""The durable translation queue's worker: leases due jobs, translates them, stores the results.

Owns a round's life: ``work`` (job ``translation.work``, also woken right after a commit that queued
jobs) leases due jobs in one write unit, masks and translates them OUTSIDE any write unit (provider
calls take 50 ms to seconds), then stores results and ``message.translated`` events in background
write units, and teaches the translation memory what it learned. A job whose lease expired (a crash,
a restart) is claimed again; failures back off exponentially with jitter and end ``failed`` after
``translation.max_attempts``. Queuing the jobs is ``TranslationService``'s (rosetta.services.translation).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sqlite3
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from rosetta.backoff import doubling_s
from rosetta.clock import iso
from rosetta.services import views
from rosetta.services.context import Context
from rosetta.services.events import Announcement, emit_many
from rosetta.services.fresh import UNCACHED
from rosetta.store import messages as message_store
from rosetta.store import translations as store
from rosetta.store.connections import Tx
from rosetta.store.translation_memory import Entry, TranslationMemory, masked_hash
from rosetta.translation.base import Provider, ProviderError
from rosetta.translation.mask import Masked, MaskError, mask, unmask

if TYPE_CHECKING:
    from rosetta.services.messages import MessageService

log = logging.getLogger("rosetta.translation")

BACKOFF_BASE_S = 5.0  # first retry after 2.5-5 s: a provider restart or a blip is usually over by then
BACKOFF_MAX_S = 3600.0  # never wait more than an hour between tries
CLAIM_LIMIT = 256  # jobs per round: at 600 jobs/s and ~60 ms per round a round holds ~40; room for bursts
# Rounds in flight at once: while one waits for the provider, the next claims and the last stores (a pipeline);
# leases keep them from taking the same job.
PARALLEL_ROUNDS = 3
FINISH_CHUNK = 32  # jobs finished per write unit: ~1.5 ms of the writer each (see _finish)
MASKS_BETWEEN_YIELDS = 16  # messages masked per loop turn while a round is prepared (see _round)
MAX_ROUNDS = 64  # one work() call stops after this many rounds so it cannot hold the job lock forever


def backoff_s(attempts: int, rng: random.Random) -> float:
    """Delay before try ``attempts + 1``: exponential, capped, with jitter so failed jobs do not stampede."""
    ceiling = doubling_s(attempts, BACKOFF_BASE_S, BACKOFF_MAX_S)
    return ceiling * rng.uniform(0.5, 1.0)

def glossary_terms(raw: str | None) -> list[str]:
    try:
        terms = json.loads(raw or "[]")
    except ValueError:
        return []
    return [t for t in terms if isinstance(t, str)] if isinstance(terms, list) else []

@dataclass
class Work:
    """One claimed job on its way through a round."""

    message_id: str
    language: str
    lease: str
    attempts: int
    audience_kind: str
    audience_id: str
    masked: Masked | None = None
    content: str | None = None  # the translation, once known
    error: str | None = None

class TranslationQueue:
    def __init__(self, ctx: Context, provider: Provider, memory: TranslationMemory, messages: MessageService,
                 autorun: bool = True) -> None:
        self.ctx = ctx
        self.config = ctx.config.translation
        self.provider = provider
        self.memory = memory
        self.messages = messages
        self.autorun = autorun  # tests run the worker by hand (jobs.run_once), so commits do not wake it
        # With several worker processes one runs the queue (bounded provider concurrency); the others
        # pass their wake-ups to it through this (rosetta.cluster).
        self.wake_elsewhere: Callable[[], None] | None = None
        self.rng = random.Random()  # noqa: S311 - jitter, not security
        self.stats: Counter[str] = Counter()
        self._lock = asyncio.Lock()
        self._wanted = False
        self._kick: asyncio.Task[None] | None = None
        self.lease_s = self.config.timeout_s * 3 + 30  # a round's slowest call plus room; then it is claimable

    async def stop(self) -> None:
        if self._kick is not None and not self._kick.done():
            self._kick.cancel()
            try:
                await self._kick
            except asyncio.CancelledError:
                pass

    def wake(self) -> None:
        """After a commit that queued jobs: run the worker now instead of at the next poll."""
        if not self.autorun or not self.provider.enabled:
            return
        if self.wake_elsewhere is not None:
            self.wake_elsewhere()
            return
        self._wanted = True
        if self._kick is None or self._kick.done():
            self._kick = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self._wanted:
            self._wanted = False
            try:
                await self.work()
            except Exception:
                log.exception("translation worker failed")

    async def work(self) -> int:
        """Translate every due job (up to MAX_ROUNDS rounds); the number of jobs finished or retried."""
        if not self.provider.enabled:
            return 0
        async with self._lock:
            counts = await asyncio.gather(*(self._rounds() for _ in range(PARALLEL_ROUNDS)))
        return sum(counts)

    async def _rounds(self) -> int:
        """Rounds until nothing is due. Each round's finishing unit also claims the next round's jobs:
        one writer unit (and usually one commit) per round instead of two, while sends share the writer.
        """
        done = 0
        claimed = await self.ctx.db.write(self._claim)
        for number in range(MAX_ROUNDS):
            if not claimed:
                break
            done += len(claimed)
            # The last round claims nothing: jobs leased and then left would wait out their lease.
            claimed = await self._round(claimed, claim_next=number < MAX_ROUNDS - 1)
        return done

    async def _claim(self, tx: Tx) -> list[sqlite3.Row]:
        """Lease the due jobs of one round (those given up on come back as failed and are left out)."""
        now = self.ctx.clock.now()
        lease = iso(now + timedelta(seconds=self.lease_s))
        rows = await store.claim(tx, iso(now), lease, CLAIM_LIMIT, self.config.max_attempts)
        # A lease shows in no cached read; a job given up on shows as failed in its place's pages.
        tx.affects_only(UNCACHED)
        for row in rows:
            if row["status"] != "pending":
                tx.affects_only(row["audience_id"])
        return [row for row in rows if row["status"] == "pending"]

    async def _round(self, claimed: list[sqlite3.Row], claim_next: bool) -> list[sqlite3.Row]:
        """Translate one round of leased jobs; returns the next round's, claimed while finishing."""
        jobs = [Work(r["message_id"], r["language"], r["lease_until"], r["attempts"], r["audience_kind"],
                     r["audience_id"]) for r in claimed]
        sources = {row["id"]: row for row in await store.sources(self.ctx.db.reader,
                                                                 list({j.message_id for j in jobs}))}
        groups: dict[tuple[str, str], list[Work]] = {}
        # A message is masked once for all its reader languages, and the loop is given back every few
        # masks: a round of 256 jobs masked in one go held the loop (and its worker's sends) for 16 ms.
        masks: dict[str, Masked] = {}
        for job in jobs:
            source = sources.get(job.message_id)
            if source is None or source["deleted_at"] is not None:
                job.content = ""  # deleted since: nothing to show, nothing to call the provider for
                continue
            job.masked = masks.get(job.message_id)
            if job.masked is None:
                if masks and len(masks) % MASKS_BETWEEN_YIELDS == 0:
                    await asyncio.sleep(0)
                job.masked = masks[job.message_id] = mask(source["original_content"],
                                                          glossary_terms(source["glossary"]))
            if not job.masked.has_words:
                job.content = source["original_content"]  # only code, links, mentions: nothing to translate
                continue
            groups.setdefault((source["source_language"], job.language), []).append(job)
        learned: list[Entry] = []
        await asyncio.gather(*(self._translate_group(src, dst, group, learned) for (src, dst), group in groups.items()))
        return await self._finish(jobs, learned, claim_next)

    async def _translate_group(self, source: str, target: str, group: list[Work], learned: list[Entry]) -> None:
        """Memory first; one provider call per distinct masked text that is not remembered."""
        by_hash: dict[str, list[Work]] = {}
        for job in group:
            assert job.masked is not None
            by_hash.setdefault(masked_hash(job.masked.text), []).append(job)
        known = await self.memory.lookup(self.provider.name, source, target, list(by_hash))
        self.stats["memory_hits"] += sum(len(by_hash[h]) for h in known)
        missing = [h for h in by_hash if h not in known]
        fresh: dict[str, str] = {}
        if missing:
            texts = [by_hash[h][0].masked.text for h in missing]  # type: ignore[union-attr]
            try:
                translated = await self.provider.translate(texts, source, target)
            except ProviderError as exc:
                for h in missing:
                    for job in by_hash[h]:
                        job.error = str(exc)
                translated = []
            self.stats["provider_texts"] += len(translated)
            fresh = dict(zip(missing, translated, strict=False))
        for h, jobs in by_hash.items():
            masked_translation = known.get(h, fresh.get(h))
            if masked_translation is None:
                continue
            restored_once = False
            for job in jobs:
                assert job.masked is not None
                try:
                    job.content = unmask(masked_translation, job.masked)
                    restored_once = True
                except MaskError as exc:
                    job.error = f"placeholders damaged: {exc}"
            if h in fresh and restored_once:
                learned.append((self.provider.name, source, target, h, masked_translation))

    async def _finish(self, jobs: list[Work], learned: list[Entry], claim_next: bool) -> list[sqlite3.Row]:
        """Results, retries, events and the next round's claim, FINISH_CHUNK jobs per write unit (events
        are published after each COMMIT); meanwhile the memory learns what the round translated.

        One unit for a round of ~140 jobs held the writer (and the writers' lock every worker's sends
        queue on) for 15-20 ms. Chunks awaited one after another held it for 2-8 ms each, but the
        round then waited for one commit after another: with 14-15 % of the machine stolen the queue
        took 1.6-3.1 s to drain instead of 0.6 s. So each chunk is queued as a background unit as soon
        as its payloads are rendered, without waiting for the one before: the writer commits them back
        to back, one per batch, and a send queued meanwhile waits for one chunk, not the round. A crash
        between chunks leaves the rest leased; they are translated again once the lease runs out.
        """
        ids = list({j.message_id for j in jobs if j.content is not None or j.error is not None})
        rows = {row["id"]: row for row in await message_store.by_ids(self.ctx.db.reader, ids)}
        attachments = await self.messages.attachments.for_messages(self.ctx.db.reader, list(rows.values()))
        announce = partial(self._announcement, rows, attachments)
        now = self.ctx.clock.now()
        chunks = [jobs[start:start + FINISH_CHUNK] for start in range(0, len(jobs), FINISH_CHUNK)] or [[]]
        last = len(chunks) - 1
        writes: list[asyncio.Future[list[sqlite3.Row]]] = []
        for number, chunk in enumerate(chunks):
            if number:
                await asyncio.sleep(0)  # the loop serves sends between chunks (~0.6 ms of rendering each)
            # Rendered and encoded before the unit, which holds the writer: rendering (~8 µs) and encoding
            # (~11 µs) were ~30 % of a unit's ~67 µs per job.
            completed = {(j.message_id, j.language): announce(j, {"status": "completed", "content": j.content})
                         for j in chunk if j.content is not None}
            unit = self._finish_unit(chunk, completed, announce, claim_next and number == last, now)
            writes.append(asyncio.ensure_future(self.ctx.db.write(unit, background=True)))  # queued now
        claimed, _ = await asyncio.gather(asyncio.gather(*writes), self.remember(learned, iso(now)))
        return claimed[last]

    async def remember(self, learned: Sequence[Entry], now: str) -> None:
        """Teach the memory; a memory that cannot learn (disk full, locked) costs a provider call later,
        so the translations it missed are stored and shown all the same."""
        try:
            await self.memory.remember(learned, now)
        except Exception:
            log.exception("the translation memory could not store %d entries", len(learned))

    @staticmethod
    def _announcement(rows: Mapping[str, sqlite3.Row], attachments: Mapping[str, list[dict[str, Any]]], job: Work,
                      state: dict[str, Any]) -> Announcement | None:
        """The ``message.translated`` event of ``job`` in ``state``; None when its message is gone."""
        row = rows.get(job.message_id)
        if row is None or row["deleted_at"] is not None:
            return None
        payload = {**views.message(row, job.language, state, attachments.get(row["id"])), "language": job.language}
        return Announcement.of("message.translated", job.audience_kind, job.audience_id, payload)

    def _finish_unit(self, chunk: list[Work], completed: Mapping[tuple[str, str], Announcement | None],
                     announce: Callable[[Work, dict[str, Any]], Announcement | None], claim: bool,
                     moment: datetime) -> Callable[[Tx], Awaitable[list[sqlite3.Row]]]:
        """The write unit that stores ``chunk``'s results (announced as ``completed`` says), and claims
        the next round's jobs when ``claim``."""
        max_attempts = self.config.max_attempts

        async def unit(tx: Tx) -> list[sqlite3.Row]:
            now = iso(moment)
            # Of the cached reads, results and failures change only their places' history pages (the
            # audience is the place: a channel or a conversation); events are read by none.
            tx.affects_only(UNCACHED)
            for audience_id in {job.audience_id for job in chunk}:
                tx.affects_only(audience_id)
            # One statement for all results: the unit holds the writer while sends wait.
            finished = [(j.message_id, j.language, j.lease, j.content) for j in chunk if j.content is not None]
            announcements: list[Announcement] = []
            stored = await store.complete_many(tx, finished, now) if finished else set()  # type: ignore[arg-type]
            for job in chunk:
                if job.content is not None:
                    if (job.message_id, job.language) not in stored:
                        continue  # edited or re-leased meanwhile: this result is stale
                    self.stats["completed"] += 1
                    made = completed[job.message_id, job.language]
                else:
                    final = job.attempts >= max_attempts  # the claim counted this try
                    later = iso(moment + timedelta(seconds=backoff_s(job.attempts, self.rng)))
                    if not await store.retry_or_fail(tx, job.message_id, job.language, job.lease,
                                                     job.error or "no result", final=final,
                                                     next_attempt_at=later, now=now):
                        continue
                    if not final:
                        self.stats["retried"] += 1
                        continue
                    self.stats["failed"] += 1
                    log.warning("translation of %s into %s failed for good: %s", job.message_id, job.language,
                                job.error)
                    made = announce(job, {"status": "failed", "content": None})
                if made is not None:
                    announcements.append(made)
            await emit_many(self.ctx, tx, announcements)
            return await self._claim(tx) if claim else []

        return unit
