"""Per-reader translation: the TranslationPort of MessageService, the queue's owner, on-demand translation.

Owns the translation life cycle of a message. ``enqueue`` runs inside the posting transaction and
adds one job row per distinct reader language that differs from the source; the queue's worker
(rosetta.services.translation_queue, woken right after such a commit) translates them. A reader may
also ask for a message in a language now (``translate_now``): memory first, then the provider. What
was translated is learned in the translation memory (a file of its own:
rosetta.store.translation_memory), which ``trim_memory`` keeps to ``translation.memory_days``.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from rosetta.clock import iso
from rosetta.errors import NotFound
from rosetta.ids import looks_like_id
from rosetta.services import views
from rosetta.services.context import Context
from rosetta.services.events import emit
from rosetta.services.fresh import uncached
from rosetta.services.translation_queue import TranslationQueue
from rosetta.services.trimming import CHUNK, until_short
from rosetta.store import messages as message_store
from rosetta.store import translations as store
from rosetta.store.connections import Conn, Tx
from rosetta.store.translation_memory import FILE_NAME, TranslationMemory, adopt, masked_hash
from rosetta.translation.base import Provider, ProviderError
from rosetta.translation.detect import Detector
from rosetta.translation.mask import MaskError, mask, unmask

if TYPE_CHECKING:
    from rosetta.services.messages import MessageService, Place

log = logging.getLogger("rosetta.translation")

LANGUAGES_TTL_S = 3600.0  # the provider's language list changes on upgrades only


class TranslationService:
    def __init__(self, ctx: Context, provider: Provider, messages: MessageService, autorun: bool = True) -> None:
        self.ctx = ctx
        self.config = ctx.config.translation
        self.provider = provider
        self.messages = messages
        self.memory = TranslationMemory(ctx.config.data_dir / FILE_NAME)
        self.queue = TranslationQueue(ctx, provider, self.memory, messages, autorun)
        self.detector: Detector | None = None
        self._languages: tuple[float, list[dict[str, str]]] | None = None

    @property
    def enabled(self) -> bool:
        return self.provider.enabled

    async def start(self) -> None:
        """Open the memory; load the detection model off the loop (~1 s), unless the provider is ``none``."""
        await self.memory.open()
        if self.enabled and self.detector is None:
            self.detector = await self.ctx.off_loop(Detector)

    async def stop(self) -> None:
        await self.queue.stop()
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
        tx.on_commit(self.queue.wake)

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
            await self.queue.remember([(self.provider.name, source, target, key, translated)], self.ctx.now())
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
