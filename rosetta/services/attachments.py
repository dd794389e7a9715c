"""Attachments: the AttachmentPort of ``MessageService`` (check, claim, render) and who may download them.

Owns the claim rule of spec §9: an attachment id must be the sender's own live file, staged and not
expired, or already claimed; anything else is 422 ``errors.attachment_ids`` naming the id. The claim
runs inside the message's write unit and re-checks there, so a file deleted or swept in between
rolls the whole message back. Downloads through a message follow the message's readers: channel
readers for channel messages, participants for direct ones; 404 for everyone else.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from rosetta.errors import Forbidden, Invalid, NotFound
from rosetta.ids import looks_like_id, new_id
from rosetta.services.auth import Principal
from rosetta.services.context import Context
from rosetta.services.workspaces import WorkspaceService
from rosetta.store import files as file_store
from rosetta.store.connections import Conn, Tx

CHANNEL, DIRECT = "channel", "direct"
ROUTE_PREFIX = {CHANNEL: "/api/v1/message-attachments", DIRECT: "/api/v1/direct-message-attachments"}


class FileAttachments:
    """Implements ``rosetta.services.messages.AttachmentPort`` over the files table."""

    def __init__(self, ctx: Context, workspaces: WorkspaceService, base_url: Callable[[], str]) -> None:
        self.ctx = ctx
        self.workspaces = workspaces
        self.base_url = base_url  # the app's: public_url, else the address it listens on

    # AttachmentPort ---------------------------------------------------------------------------

    async def check(self, conn: Conn, owner_id: str | None, file_ids: Sequence[str]) -> None:
        """Before the write: refuse what can already be seen to be wrong (the claim checks again)."""
        await self._require_attachable(conn, owner_id, file_ids)

    async def claim(self, tx: Tx, message_id: str, owner_id: str | None,
                    file_ids: Sequence[str]) -> list[dict[str, Any]]:
        if not file_ids:
            return []
        await self._require_attachable(tx, owner_id, file_ids)
        await file_store.attach(tx, message_id, [(new_id(), file_id) for file_id in file_ids], self.ctx.now())
        return [self.view(row) for row in await file_store.for_messages(tx, [message_id])]

    async def for_messages(self, conn: Conn, rows: Sequence[sqlite3.Row]) -> dict[str, list[dict[str, Any]]]:
        """Attachments of a page of messages: one query for the whole page."""
        ids = [row["id"] for row in rows if row["deleted_at"] is None]  # a deleted message shows no files
        out: dict[str, list[dict[str, Any]]] = {}
        for att in await file_store.for_messages(conn, ids):
            out.setdefault(att["message_id"], []).append(self.view(att))
        return out

    async def _require_attachable(self, conn: Conn, owner_id: str | None, file_ids: Sequence[str]) -> None:
        if not file_ids:
            return
        ok = await file_store.attachable(conn, owner_id, file_ids, self.ctx.now()) if owner_id else set()
        bad = [file_id for file_id in file_ids if file_id not in ok]
        if bad:
            raise Invalid({"attachment_ids": [f"The selected attachment {file_id} is invalid." for file_id in bad]})

    def view(self, row: sqlite3.Row) -> dict[str, Any]:
        """The Attachment resource; thumbnails and dimensions only for images that have them."""
        kind = DIRECT if row["conversation_id"] is not None else CHANNEL
        base = f"{self.base_url()}{ROUTE_PREFIX[kind]}/{row['attachment_id']}"
        out: dict[str, Any] = {
            "id": row["attachment_id"],
            "file_id": row["file_id"],
            "client_name": row["client_name"],
            "mime_type": row["mime_type"],
            "size": row["size"],
            "download_url": f"{base}/download",
        }
        if row["has_thumbnail"]:
            out["thumbnail_url"] = f"{base}/thumbnail"
        if row["width"] is not None and row["height"] is not None:
            out["width"], out["height"] = row["width"], row["height"]
        return out

    # Downloads through a message ----------------------------------------------------------------

    async def readable(self, principal: Principal, attachment_id: str, kind: str) -> sqlite3.Row:
        """The attachment (with its file) when the caller may read its message; 404 otherwise."""
        if not looks_like_id(attachment_id):
            raise NotFound()
        row = await file_store.attachment(self.ctx.db.reader, attachment_id.lower())
        if row is None:
            raise NotFound()
        if kind == CHANNEL:
            if row["channel_id"] is None or row["workspace_id"] is None:
                raise NotFound()
            try:
                await self.workspaces.require_readable_channel(row["workspace_id"], row["channel_id"], principal)
            except Forbidden:
                raise NotFound() from None  # a password channel not joined: no existence leak
            return row
        if row["conversation_id"] is None or not await file_store.is_participant(
                self.ctx.db.reader, row["conversation_id"], principal.user_id):
            raise NotFound()
        return row
