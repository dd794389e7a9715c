"""Direct conversations between two users: open (or find), list, resolve recipients, and their messages.

Owns who may talk to whom: a conversation is opened only with a user who shares a workspace with
the caller, and a recipient is resolved by email only then (404 otherwise, so the directory of
accounts is not an oracle). Only the two participants see a conversation; anyone else gets 404.
Messages go through ``MessageService`` like every other author and place.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from rosetta.errors import Invalid, NotFound
from rosetta.ids import looks_like_id, new_id
from rosetta.services import views
from rosetta.services.auth import Principal
from rosetta.services.context import Context
from rosetta.services.events import emit
from rosetta.services.messages import Author, MessageService, Page, Place
from rosetta.store import direct as direct_store
from rosetta.store import users as user_store
from rosetta.store import workspaces as workspace_store
from rosetta.store.connections import Conn, Tx


@dataclass(frozen=True)
class Opened:
    conversation: dict[str, Any]
    created: bool


def conversation_place(conversation_id: str) -> Place:
    return Place(None, None, conversation_id, "conversation", conversation_id)


class DirectService:
    def __init__(self, ctx: Context, messages: MessageService) -> None:
        self.ctx = ctx
        self.messages = messages

    async def _reachable_user(self, principal: Principal, user: sqlite3.Row | None) -> sqlite3.Row:
        """``user`` when it is an active account sharing a workspace with the caller; 404 otherwise."""
        if user is None or user["kind"] != "user" or not user["is_active"]:
            raise NotFound()
        if user["id"] != principal.user_id and not await workspace_store.shared_with(
                self.ctx.db.reader, principal.user_id, user["id"]):
            raise NotFound()
        return user

    async def resolve(self, principal: Principal, email: str) -> sqlite3.Row:
        user = await user_store.by_email(self.ctx.db.reader, email)
        return await self._reachable_user(principal, user)

    async def _views(self, conn: Conn, rows: list[sqlite3.Row], viewer_id: str) -> list[dict[str, Any]]:
        people: dict[str, list[sqlite3.Row]] = {}
        for person in await direct_store.participants(conn, [row["id"] for row in rows]):
            people.setdefault(person["conversation_id"], []).append(person)
        return [views.direct_conversation(row, people.get(row["id"], []), viewer_id) for row in rows]

    async def list_mine(self, principal: Principal) -> list[dict[str, Any]]:
        conn = self.ctx.db.reader
        rows = await direct_store.list_for_user(conn, principal.user_id)
        return await self._views(conn, rows, principal.user_id)

    async def open(self, principal: Principal, participant_user_id: str) -> Opened:
        """The conversation with that user: found (created False) or created (True)."""
        if participant_user_id == principal.user_id:
            raise Invalid.one("participant_user_id", "You cannot start a conversation with yourself.")
        other = await self._reachable_user(principal, await user_store.by_id(self.ctx.db.reader,
                                                                             participant_user_id))
        key = direct_store.pair_key(principal.user_id, other["id"])

        async def unit(tx: Tx) -> tuple[sqlite3.Row, bool]:
            # Looked up inside the write: two simultaneous opens of the same pair make one conversation.
            existing = await direct_store.by_pair(tx, key)
            if existing is not None:
                return existing, False
            conversation_id = new_id()
            await direct_store.insert(tx, id=conversation_id, key=key, user_ids=(principal.user_id, other["id"]),
                                      now=self.ctx.now())
            row = await direct_store.by_pair(tx, key)
            assert row is not None
            for user_id in (principal.user_id, other["id"]):
                payload = (await self._views(tx, [row], user_id))[0]
                await emit(self.ctx, tx, "direct_conversation.created", "user", user_id, payload)
            return row, True

        row, created = await self.ctx.db.write(unit)
        view = (await self._views(self.ctx.db.reader, [row], principal.user_id))[0]
        return Opened(view, created)

    async def require(self, conversation_id: str, principal: Principal) -> sqlite3.Row:
        """A conversation the caller takes part in; 404 otherwise."""
        if not looks_like_id(conversation_id):
            raise NotFound()
        row = await direct_store.for_participant(self.ctx.db.reader, conversation_id.lower(), principal.user_id)
        if row is None:
            raise NotFound()
        return row

    async def _language(self, principal: Principal) -> str:
        user = await user_store.by_id(self.ctx.db.reader, principal.user_id)
        return user["preferred_language"] if user is not None else self.ctx.config.translation.default_language

    async def page(self, conversation_id: str, principal: Principal, before: str | None, after: str | None,
                   limit: int) -> Page:
        conversation = await self.require(conversation_id, principal)
        return await self.messages.page(conversation_id=conversation["id"], before=before, after=after,
                                        limit=limit, language=await self._language(principal))

    async def post(self, conversation_id: str, principal: Principal, content: str, **options: Any) -> dict[str, Any]:
        conversation = await self.require(conversation_id, principal)
        language = await self._language(principal)
        author = Author("user", principal.user_id, language, files_owner_id=principal.user_id)
        return await self.messages.post(author, conversation_place(conversation["id"]), content, **options)

    async def edit(self, conversation_id: str, message_id: str, principal: Principal,
                   content: str) -> dict[str, Any]:
        conversation = await self.require(conversation_id, principal)
        return await self.messages.edit(principal.user_id, conversation_place(conversation["id"]), message_id,
                                        content, await self._language(principal))

    async def delete(self, conversation_id: str, message_id: str, principal: Principal) -> None:
        conversation = await self.require(conversation_id, principal)
        await self.messages.delete(principal.user_id, conversation_place(conversation["id"]), message_id)
