"""Messages: one way to post (any author, any place), cursor-paged reading, per-reader views.

Owns the message life cycle. Attachments and translation plug in through two small ports so that
the files and translation features extend posting without another code path: every author kind
(member, guest, webhook, automation) goes through ``post``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rosetta.errors import Forbidden, Invalid, NotFound
from rosetta.ids import looks_like_id, new_id
from rosetta.services import views
from rosetta.services.auth import Principal
from rosetta.services.context import Context
from rosetta.services.events import emit
from rosetta.services.fresh import FreshCache
from rosetta.services.workspaces import OpenRule
from rosetta.store import messages as message_store
from rosetta.store import users as user_store
from rosetta.store.connections import Conn, Tx

MAX_CONTENT_CHARS = 10_000
# History pages kept rendered (see MessageService.page). Most reads are the latest page of a few
# busy channels; a rendered page of 50 messages holds roughly 100 KB, so this stays near 25 MB.
CACHED_PAGES = 256
CACHED_AUTHORS = 4096  # who an author looks like, read on every send


@dataclass(frozen=True)
class Author:
    kind: str  # user | guest | webhook | automation
    id: str  # user id, or webhook id
    language: str  # the author's reading language: the source language when detection is unsure
    files_owner_id: str | None = None  # whose staged files this author may attach
    name: str | None = None  # display-name override
    avatar_url: str | None = None


@dataclass(frozen=True)
class Place:
    """Where a message lives and who hears of it."""

    workspace_id: str | None
    channel_id: str | None
    conversation_id: str | None
    audience_kind: str  # channel | conversation | room
    audience_id: str


class AttachmentPort(Protocol):
    async def check(self, conn: Conn, owner_id: str | None, file_ids: Sequence[str]) -> None: ...
    async def claim(self, tx: Tx, message_id: str, owner_id: str | None,
                    file_ids: Sequence[str]) -> list[dict[str, Any]]: ...
    async def for_messages(self, conn: Conn, rows: Sequence[sqlite3.Row]) -> dict[str, list[dict[str, Any]]]: ...


class TranslationPort(Protocol):
    def source_language(self, content: str, author_language: str) -> str: ...
    async def languages_of(self, place: Place) -> tuple[str, ...]: ...
    async def enqueue(self, tx: Tx, message: Mapping[str, Any], place: Place, languages: Sequence[str]) -> None: ...
    async def on_edit(self, tx: Tx, row: sqlite3.Row, place: Place, languages: Sequence[str]) -> None: ...
    async def on_delete(self, tx: Tx, message_id: str) -> None: ...
    async def for_reader(self, conn: Conn, rows: Sequence[sqlite3.Row],
                         language: str) -> dict[str, dict[str, Any]]: ...


class NoAttachments:
    """Until files exist: any attachment id is refused, nothing is attached."""

    async def check(self, conn: Conn, owner_id: str | None, file_ids: Sequence[str]) -> None:
        if file_ids:
            raise Invalid.one("attachment_ids", "The selected attachment_ids are invalid.")

    async def claim(self, tx: Tx, message_id: str, owner_id: str | None,
                    file_ids: Sequence[str]) -> list[dict[str, Any]]:
        return []

    async def for_messages(self, conn: Conn, rows: Sequence[sqlite3.Row]) -> dict[str, list[dict[str, Any]]]:
        return {}


class NoTranslation:
    """Until translation exists: the source is the author's language and nothing is queued."""

    def source_language(self, content: str, author_language: str) -> str:
        return author_language

    async def languages_of(self, place: Place) -> tuple[str, ...]:
        return ()

    async def enqueue(self, tx: Tx, message: Mapping[str, Any], place: Place, languages: Sequence[str]) -> None:
        return None

    async def on_edit(self, tx: Tx, row: sqlite3.Row, place: Place, languages: Sequence[str]) -> None:
        return None

    async def on_delete(self, tx: Tx, message_id: str) -> None:
        return None

    async def for_reader(self, conn: Conn, rows: Sequence[sqlite3.Row],
                         language: str) -> dict[str, dict[str, Any]]:
        return {}


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: a cached page is one object
class Page:
    items: list[dict[str, Any]]
    per_page: int
    next_cursor: str | None  # pass as ?before= for older messages
    prev_cursor: str | None  # pass as ?after= for newer messages


def channel_place(channel: sqlite3.Row) -> Place:
    return Place(channel["workspace_id"], channel["id"], None, "channel", channel["id"])


class MessageService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.attachments: AttachmentPort = NoAttachments()
        self.translations: TranslationPort = NoTranslation()
        self._pages: FreshCache[Page] = FreshCache(ctx.db, CACHED_PAGES)
        self.open_rule = OpenRule(ctx)
        self._authors: FreshCache[sqlite3.Row | None] = FreshCache(ctx.db, CACHED_AUTHORS)

    async def render(self, conn: Conn, rows: Sequence[sqlite3.Row], language: str) -> list[dict[str, Any]]:
        """Rows as a reader of ``language`` sees them, attachments and translations included."""
        attachments = await self.attachments.for_messages(conn, rows)
        translations = await self.translations.for_reader(conn, rows, language)
        return [views.message(row, language, translations.get(row["id"]), attachments.get(row["id"]))
                for row in rows]

    async def check_parent(self, parent_id: str | None, place: Place) -> None:
        if parent_id is None:
            return
        parent = await message_store.by_id(self.ctx.db.reader, parent_id)
        if (parent is None or parent["channel_id"] != place.channel_id
                or parent["conversation_id"] != place.conversation_id):
            raise Invalid.one("parent_message_id", "The selected parent_message_id is invalid.")

    async def post(self, author: Author, place: Place, content: str, *, attachment_ids: Sequence[str] = (),
                   parent_id: str | None = None, skip_translation: bool = False,
                   reader_language: str | None = None) -> dict[str, Any]:
        """Store a message, claim its files, queue its translations and emit ``message.created``.

        Returns the message as ``reader_language`` (default: the author's) sees it.
        """
        if not content.strip() and not attachment_ids:
            raise Invalid.one("content", "The content field is required.")
        await self.open_rule.require_open(place.workspace_id)  # ended room: 410
        await self.check_parent(parent_id, place)
        await self.attachments.check(self.ctx.db.reader, author.files_owner_id, attachment_ids)
        source = self.translations.source_language(content, author.language)
        message_id = new_id()
        # Who the author looks like and who reads the place, read before the unit (and kept between
        # writes) rather than inside it: the unit holds the writer, so it does as little as it can.
        display = await self._author_display(author)
        languages = () if skip_translation else await self.translations.languages_of(place)

        async def unit(tx: Tx) -> tuple[dict[str, Any], list[dict[str, Any]]]:
            now = self.ctx.now()
            try:
                inserted = await message_store.insert(
                    tx, id=message_id, workspace_id=place.workspace_id, channel_id=place.channel_id,
                    conversation_id=place.conversation_id, author_kind=author.kind, author_id=author.id,
                    author_name=author.name, author_avatar_url=author.avatar_url, content=content,
                    source_language=source, skip_translation=skip_translation, parent_message_id=parent_id,
                    now=now,
                )
            except sqlite3.IntegrityError:
                # The place was checked before the write; its channel (or the parent) was deleted since.
                # The foreign key says so at no cost on the common path: 404, not a 500.
                raise NotFound() from None
            attached = await self.attachments.claim(tx, message_id, author.files_owner_id, attachment_ids)
            row = {**dict(inserted), **display}
            # Of the cached reads, a new message changes only its own place's history pages.
            tx.affects_only(place.channel_id or place.conversation_id or place.audience_id)
            if not skip_translation:
                await self.translations.enqueue(tx, row, place, languages)
            neutral = views.message(row, row["source_language"], None, attached)
            await emit(self.ctx, tx, "message.created", place.audience_kind, place.audience_id, neutral)
            if place.conversation_id is not None:
                await message_store.touch_conversation(tx, place.conversation_id, now)
            return row, attached

        row, attached = await self.ctx.db.write(unit)
        language = reader_language or author.language
        return views.message(row, language, None if skip_translation else self._pending(row, language), attached)

    async def _author_display(self, author: Author) -> dict[str, Any]:
        """``author_display_name``/``_avatar`` as the message query would join them."""
        name, avatar = author.name, author.avatar_url
        if author.kind != "webhook" and (name is None or avatar is None):
            # A rename or a new avatar is a write that moves every stamp.
            user = await self._authors.load(author.id, lambda: user_store.by_id(self.ctx.db.reader, author.id))
            if user is not None:
                name = name if name is not None else user["name"]
                avatar = avatar if avatar is not None else user["avatar_url"]
        return {"author_display_name": name, "author_display_avatar": avatar}

    async def post_as_member(self, principal: Principal, channel: sqlite3.Row, content: str,
                             **options: Any) -> dict[str, Any]:
        """A workspace member posts in a channel they may read (``channel`` from require_readable_channel)."""
        author = Author("user", principal.user_id, channel["reader_language"], files_owner_id=principal.user_id)
        return await self.post(author, channel_place(channel), content, **options)

    def _pending(self, row: Mapping[str, Any], language: str) -> dict[str, Any] | None:
        """Right after posting, a reader of another language waits for a translation."""
        if isinstance(self.translations, NoTranslation) or views.same_language(language, row["source_language"]):
            return None
        return {"status": "pending", "content": None}

    async def page(self, *, channel_id: str | None = None, conversation_id: str | None = None,
                   before: str | None, after: str | None, limit: int, language: str) -> Page:
        """A cursor page, newest first; the caller has checked that the reader may see the place.

        Rendered pages are reused while no committed write could have changed them (the store's
        freshness stamp, taken before reading): many members open the same channel, and a page of
        50 messages costs its reader queries, rendering and JSON each time otherwise.
        """
        scope = channel_id or conversation_id
        assert scope is not None
        key = (scope, before, after, limit, language)
        return await self._pages.load(
            key, lambda: self._read_page(channel_id, conversation_id, before, after, limit, language), scope)

    async def _read_page(self, channel_id: str | None, conversation_id: str | None, before: str | None,
                         after: str | None, limit: int, language: str) -> Page:
        """One row past ``limit`` is read to learn whether more lie in the paging direction; the other
        direction needs a look only when a cursor was given (the latest page, the common case, has
        nothing newer), so most pages cost one query.
        """
        conn = self.ctx.db.reader
        place = {"channel_id": channel_id, "conversation_id": conversation_id}
        rows = await message_store.page(conn, **place, before=before, after=after, limit=limit + 1)
        more = len(rows) > limit
        if more:
            rows = rows[1:] if after is not None else rows[:limit]
        items = await self.render(conn, rows, language)
        if not rows:
            return Page(items, limit, None, None)
        newest, oldest = rows[0]["id"], rows[-1]["id"]
        if after is not None:
            newer = more
            older = await message_store.exists_beyond(conn, **place, older_than=oldest, newer_than=None)
        else:
            older = more
            newer = before is not None and await message_store.exists_beyond(
                conn, **place, older_than=None, newer_than=newest)
        return Page(items, limit, oldest if older else None, newest if newer else None)

    # Edit and delete (any place: channel, conversation, room) ---------------------------------------

    async def _in_place(self, conn: Conn, place: Place, message_id: str) -> sqlite3.Row:
        """A live (not deleted) message of ``place``; 404 for anything else, so ids elsewhere do not leak."""
        row = await message_store.by_id(conn, message_id.lower()) if looks_like_id(message_id) else None
        if (row is None or row["deleted_at"] is not None or row["channel_id"] != place.channel_id
                or row["conversation_id"] != place.conversation_id):
            raise NotFound()
        return row

    async def edit(self, actor_id: str, place: Place, message_id: str, content: str,
                   reader_language: str) -> dict[str, Any]:
        """The author replaces a message's text; emits ``message.updated``. Returns it as the author reads it."""
        if not content.strip():
            raise Invalid.one("content", "The content field is required.")
        found = await self._in_place(self.ctx.db.reader, place, message_id)
        if found["author_kind"] != "user" or found["author_id"] != actor_id:
            raise Forbidden()
        await self.open_rule.require_open(place.workspace_id)
        source = self.translations.source_language(content, reader_language)
        attached = (await self.attachments.for_messages(self.ctx.db.reader, [found])).get(found["id"])
        languages = await self.translations.languages_of(place)

        async def unit(tx: Tx) -> sqlite3.Row:
            current = await self._in_place(tx, place, found["id"])
            await message_store.update_content(tx, current["id"], content, source, self.ctx.now())
            row = await message_store.by_id(tx, current["id"])
            assert row is not None
            if not row["skip_translation"]:
                await self.translations.on_edit(tx, row, place, languages)  # the old translations are wrong now
            neutral = views.message(row, row["source_language"], None, attached)
            await emit(self.ctx, tx, "message.updated", place.audience_kind, place.audience_id, neutral)
            return row

        row = await self.ctx.db.write(unit)
        return (await self.render(self.ctx.db.reader, [row], reader_language))[0]

    async def delete(self, actor_id: str, place: Place, message_id: str, *, moderator: bool = False) -> None:
        """Soft delete by the author (or a ``moderator``): id and place stay, content goes; ``message.deleted``."""
        found = await self._in_place(self.ctx.db.reader, place, message_id)
        if not moderator and (found["author_kind"] != "user" or found["author_id"] != actor_id):
            raise Forbidden()
        await self.open_rule.require_open(place.workspace_id)

        async def unit(tx: Tx) -> None:
            current = await self._in_place(tx, place, found["id"])
            now = self.ctx.now()
            await message_store.soft_delete(tx, current["id"], now)
            await self.translations.on_delete(tx, current["id"])  # the content goes, its translations too
            payload = {"id": current["id"], "workspace_id": current["workspace_id"],
                       "channel_id": current["channel_id"], "conversation_id": current["conversation_id"],
                       "deleted_at": now}
            await emit(self.ctx, tx, "message.deleted", place.audience_kind, place.audience_id, payload)

        await self.ctx.db.write(unit)
