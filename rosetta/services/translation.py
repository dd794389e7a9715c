"""Per-reader translation: the TranslationPort of MessageService, the durable queue worker, on-demand translation.

Owns the translation life cycle of a message. ``enqueue`` runs inside the posting transaction and
adds one job row per distinct reader language that differs from the source. The worker
(``work``, job ``translation.work``, also woken right after such a commit) leases due jobs in one
write unit, masks and translates OUTSIDE any write unit (provider calls take 50 ms to seconds),
then stores results and ``message.translated`` events in one more write unit, and what it learned in
the translation memory (a file of its own: rosetta.store.translation_memory).
A job whose lease expired (a crash, a restart) is claimed again; failures back off
exponentially with jitter and end ``failed`` after ``translation.max_attempts``.
"""

from __future__ import annotations

import asyncio
import hashlib
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

from rosetta.clock import iso
from rosetta.errors import NotFound
from rosetta.ids import looks_like_id
from rosetta.services import views
from rosetta.services.context import Context
from rosetta.services.events import Announcement, emit, emit_many
from rosetta.services.fresh import UNCACHED, uncached
from rosetta.services.trimming import CHUNK, until_short
from rosetta.store import messages as message_store
from rosetta.store import translations as store
from rosetta.store.db import Conn, Tx
from rosetta.store.translation_memory import FILE_NAME, Entry, TranslationMemory, adopt
from rosetta.translation.base import Provider, ProviderError
from rosetta.translation.detect import Detector
from rosetta.translation.mask import Masked, MaskError, mask, unmask

if TYPE_CHECKING:
    from rosetta.services.messages import MessageService, Place

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
LANGUAGES_TTL_S = 3600.0  # the provider's language list changes on upgrades only



def backoff_s(attempts: int, rng: random.Random) -> float:
    """Delay before try ``attempts + 1``: exponential, capped, with jitter so failed jobs do not stampede."""
    ceiling = min(BACKOFF_MAX_S, BACKOFF_BASE_S * (2 ** max(attempts - 1, 0)))
    return ceiling * rng.uniform(0.5, 1.0)


def masked_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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


class TranslationService:
    def __init__(self, ctx: Context, provider: Provider, messages: MessageService, autorun: bool = True) -> None:
        self.ctx = ctx
        self.config = ctx.config.translation
        self.provider = provider
        self.messages = messages
        self.memory = TranslationMemory(ctx.config.data_dir / FILE_NAME)
        self.autorun = autorun  # tests run the worker by hand (jobs.run_once), so commits do not wake it
        # With several worker processes one runs the queue (bounded provider concurrency); the others
        # pass their wake-ups to it through this (rosetta.cluster).
        self.wake_elsewhere: Callable[[], None] | None = None
        self.detector: Detector | None = None
        self.rng = random.Random()  # noqa: S311 - jitter, not security
        self.stats: Counter[str] = Counter()
        self._lock = asyncio.Lock()
        self._wanted = False
        self._kick: asyncio.Task[None] | None = None
        self._languages: tuple[float, list[dict[str, str]]] | None = None
        self.lease_s = self.config.timeout_s * 3 + 30  # a round's slowest call plus room; then it is claimable

    @property
    def enabled(self) -> bool:
        return self.provider.enabled

    async def start(self) -> None:
        """Open the memory; load the detection model off the loop (~1 s), unless the provider is ``none``."""
        await self.memory.open()
        if self.enabled and self.detector is None:
            self.detector = await self.ctx.off_loop(Detector)

    async def stop(self) -> None:
        if self._kick is not None and not self._kick.done():
            self._kick.cancel()
            try:
                await self._kick
            except asyncio.CancelledError:
                pass
        self.provider.close()
        await self.memory.close()

    async def move_old_memory(self) -> None:
        """Once per start, before anything listens: the memory moved out of the database into a file of
        its own; copy what the database's old table holds, then drop the table."""
        moved = await self.ctx.off_loop(adopt, self.memory.path, self.ctx.db.path)
        if moved is None:
            return
        if moved:
            log.info("moved %d translation memory entries out of the database into %s", moved, self.memory.path)
        await self.ctx.db.write(uncached(store.drop_old_memory))

    # The TranslationPort -----------------------------------------------------------------------------

    def source_language(self, content: str, author_language: str) -> str:
        if self.detector is None:
            return author_language
        return self.detector.detect(content, author_language)

    async def languages_of(self, place: Place) -> tuple[str, ...]:
        """The distinct reading languages of ``place``'s readers, from committed rows.

        Read before the posting unit, through the hub's audiences: the same readers the message's
        event goes to, kept there between the writes that could change them (members, roles, channel
        passwords, languages, deactivation move every stamp). Inside the unit this query held the
        writer, which every worker's sends queue on, ~120 µs per message. Someone who joins or changes
        language in the same instant sees that message as ``skipped`` and may translate it on demand,
        as for messages from before they joined.
        """
        if not self.enabled:
            return ()
        # A temporary room's messages live in its channel: its readers are that channel's.
        kind, place_id = ("channel", place.channel_id) if place.channel_id else ("conversation", place.conversation_id)
        if place_id is None:
            return ()
        readers = await self.ctx.hub.audiences.readers(self.ctx.db.reader, kind, place_id)
        return tuple(sorted({language for language in readers.values() if language}))

    async def enqueue(self, tx: Tx, message: Mapping[str, Any], place: Place, languages: Sequence[str]) -> None:
        """In the posting transaction: one job per reading language (``languages_of``) other than the source."""
        if not self.enabled or message["skip_translation"]:
            return
        source = message["source_language"]
        wanted = [language for language in languages if not views.same_language(language, source)]
        if not wanted:
            return
        await store.add_jobs(tx, message["id"], wanted, place.audience_kind, place.audience_id, self.ctx.now())
        tx.on_commit(self.wake)

    async def on_edit(self, tx: Tx, row: sqlite3.Row, place: Place, languages: Sequence[str]) -> None:
        """An edit: the old translations are wrong now; drop them and translate the new text again."""
        await store.delete_for_message(tx, row["id"])
        await self.enqueue(tx, row, place, languages)

    async def on_delete(self, tx: Tx, message_id: str) -> None:
        """A delete: the translations go with the content (a pending job with them, untranslated)."""
        await store.delete_for_message(tx, message_id)

    async def for_reader(self, conn: Conn, rows: Sequence[sqlite3.Row], language: str) -> dict[str, dict[str, Any]]:
        """Each message's state in ``language``: one query for the whole page."""
        wanted = [r["id"] for r in rows if not views.same_language(language, r["source_language"])]
        found = await store.for_language(conn, wanted, language)
        return {row["message_id"]: {"status": row["status"], "content": row["content"]} for row in found}

    # The worker ------------------------------------------------------------------------------------------

    def wake(self) -> None:
        """After a commit that queued jobs: run the worker now instead of at the next poll."""
        if not self.autorun or not self.enabled:
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
        if not self.enabled:
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
        claimed, _ = await asyncio.gather(asyncio.gather(*writes), self._remember(learned, iso(now)))
        return claimed[last]

    async def _remember(self, learned: Sequence[Entry], now: str) -> None:
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

    async def trim_memory(self, chunk: int = CHUNK) -> int:
        """The ``translation.memory_trim`` job: forget translations older than ``translation.memory_days``.

        Without it the memory grows with every distinct text for as long as the server runs. Age counts
        from when an entry was learned, not last used: stamping every hit would add a write to most
        jobs, and a line still in use is learned again at the cost of one provider call.
        """
        cutoff = iso(self.ctx.clock.now() - timedelta(days=self.config.memory_days))
        return await until_short(partial(self.memory.trim_chunk, cutoff, chunk), chunk)

    # On demand ---------------------------------------------------------------------------------------

    async def message_in(self, place: Place, message_id: str) -> sqlite3.Row:
        """A message of ``place`` (the caller was already allowed to read ``place``); 404 otherwise."""
        row = await message_store.by_id(self.ctx.db.reader, message_id.lower()) if looks_like_id(message_id) else None
        if (row is None or row["channel_id"] != place.channel_id
                or row["conversation_id"] != place.conversation_id):
            raise NotFound()
        return row

    async def translate_now(self, place: Place, message_id: str, target: str) -> dict[str, Any]:
        """The message as a reader of ``target`` sees it, translating it now (memory first) when needed."""
        row = await self.message_in(place, message_id)
        state = await self._state_now(row, place, target)
        attachments = await self.messages.attachments.for_messages(self.ctx.db.reader, [row])
        return views.message(row, target, state, attachments.get(row["id"]))

    async def _state_now(self, row: sqlite3.Row, place: Place, target: str) -> dict[str, Any] | None:
        if (not self.enabled or row["skip_translation"] or row["deleted_at"] is not None
                or views.same_language(target, row["source_language"])):
            return None  # the view says skipped / not_needed; the provider hears nothing
        reader = self.ctx.db.reader
        existing = await store.one(reader, row["id"], target)
        if existing is not None and existing["status"] == "completed":
            return {"status": "completed", "content": existing["content"]}
        terms = await store.glossary(reader, row["workspace_id"]) if row["workspace_id"] else []
        masked = mask(row["original_content"], terms)
        source = row["source_language"]
        key = masked_hash(masked.text)
        remembered: str | None = None
        if masked.has_words:
            remembered = (await self.memory.lookup(self.provider.name, source, target, [key])).get(key)
            translated = remembered
            if translated is None:
                try:
                    translated = (await self.provider.translate([masked.text], source, target))[0]
                except ProviderError as exc:
                    log.warning("on-demand translation of %s into %s failed: %s", row["id"], target, exc)
                    return {"status": "failed", "content": None}
            try:
                content = unmask(translated, masked)
            except MaskError:
                return {"status": "failed", "content": None}
        else:
            translated, content = None, row["original_content"]

        async def unit(tx: Tx) -> None:
            now = self.ctx.now()
            tx.affects_only(place.audience_id)  # as a posted message: only its place's pages change
            await store.upsert_completed(tx, row["id"], target, content, place.audience_kind, place.audience_id, now)
            state = {"status": "completed", "content": content}
            payload = {**views.message(row, target, state), "language": target}
            await emit(self.ctx, tx, "message.translated", place.audience_kind, place.audience_id, payload)

        await self.ctx.db.write(unit)
        if translated is not None and remembered is None:
            await self._remember([(self.provider.name, source, target, key, translated)], self.ctx.now())
        return {"status": "completed", "content": content}

    async def languages(self) -> list[dict[str, str]]:
        """The provider's target languages, cached for an hour; [] when it cannot be reached."""
        now = self.ctx.clock.now().timestamp()
        if self._languages is not None and now - self._languages[0] < LANGUAGES_TTL_S:
            return self._languages[1]
        try:
            found = await self.provider.languages()
        except ProviderError as exc:
            log.warning("could not list the provider's languages: %s", exc)
            return []
        self._languages = (now, found)
        return found
