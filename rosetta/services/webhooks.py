"""Incoming workspace webhooks: management by admins, and posting authenticated by the secret alone.

Owns the webhook life cycle and its rules: the secret is URL-safe alphanumeric (it rides in
``/hooks/{secret}`` URLs), returned only at create and on regeneration, stored as sha256 and compared
in constant time; a webhook posts only into channels of its own workspace; an inactive one is
refused (403 ``webhook_inactive``), a deleted one is 404. Messages go through ``MessageService.post``
with a ``webhook`` author, so they are stored, translated and delivered like any other.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from rosetta.errors import Forbidden, Invalid, NotFound, Unauthenticated
from rosetta.ids import looks_like_id, new_id, new_secret, same_digest, sha256_hex
from rosetta.services.auth import Principal
from rosetta.services.context import Context
from rosetta.services.events import emit_to_admins
from rosetta.services.fresh import uncached
from rosetta.services.messages import Author, MessageService, channel_place
from rosetta.services.workspaces import WorkspaceService
from rosetta.store import webhooks as webhook_store
from rosetta.store.connections import Tx

INACTIVE = "webhook_inactive"
SECRET_BYTES = 24  # 48 hex characters: 192 bits, far beyond guessing even without rate limits
MAX_SECRET_CHARS = 200


def view(row: sqlite3.Row, secret: str | None = None) -> dict[str, Any]:
    """The contract's Webhook shape; ``secret`` only when it was just created or regenerated."""
    data = {
        "id": row["id"],
        "workspace_id": row["workspace_id"],
        "name": row["name"],
        "default_channel_id": row["default_channel_id"],
        "is_active": bool(row["is_active"]),
        "last_used_at": row["last_used_at"],
        "created_at": row["created_at"],
    }
    if secret is not None:
        data["secret"] = secret
    return data


class WebhookService:
    def __init__(self, ctx: Context, workspaces: WorkspaceService, messages: MessageService) -> None:
        self.ctx = ctx
        self.workspaces = workspaces
        self.messages = messages

    # Management (workspace admins) -----------------------------------------------------------

    async def list(self, workspace_id: str, principal: Principal) -> list[sqlite3.Row]:
        workspace = await self.workspaces.require_admin(workspace_id, principal)
        return await webhook_store.list_for_workspace(self.ctx.db.reader, workspace["id"])

    async def _check_channel(self, workspace_id: str, channel_id: str) -> None:
        if await webhook_store.channel_in_workspace(self.ctx.db.reader, workspace_id, channel_id) is None:
            raise Invalid.one("default_channel_id", "The selected default_channel_id is invalid.")

    async def create(self, workspace_id: str, principal: Principal, name: str,
                     default_channel_id: str) -> tuple[sqlite3.Row, str]:
        workspace = await self.workspaces.require_admin(workspace_id, principal)
        await self._check_channel(workspace["id"], default_channel_id)
        secret = new_secret(SECRET_BYTES)
        webhook_id = new_id()

        async def unit(tx: Tx) -> sqlite3.Row:
            await webhook_store.insert(tx, id=webhook_id, workspace_id=workspace["id"], name=name,
                                       default_channel_id=default_channel_id, secret_hash=sha256_hex(secret),
                                       now=self.ctx.now())
            row = await webhook_store.by_id(tx, webhook_id)
            assert row is not None
            await emit_to_admins(self.ctx, tx, "webhook.created", row["workspace_id"], view(row))
            return row

        return await self.ctx.db.write(unit), secret

    async def _require(self, workspace_id: str, webhook_id: str, principal: Principal) -> sqlite3.Row:
        workspace = await self.workspaces.require_admin(workspace_id, principal)
        row = None
        if looks_like_id(webhook_id):
            row = await webhook_store.in_workspace(self.ctx.db.reader, workspace["id"], webhook_id.lower())
        if row is None:
            raise NotFound()
        return row

    async def update(self, workspace_id: str, webhook_id: str, principal: Principal, *, name: str | None,
                     default_channel_id: str | None, is_active: bool | None,
                     regenerate_secret: bool) -> tuple[sqlite3.Row, str | None]:
        row = await self._require(workspace_id, webhook_id, principal)
        changes: dict[str, Any] = {}
        if name is not None:
            changes["name"] = name
        if default_channel_id is not None:
            await self._check_channel(row["workspace_id"], default_channel_id)
            changes["default_channel_id"] = default_channel_id
        if is_active is not None:
            changes["is_active"] = int(is_active)
        secret = new_secret(SECRET_BYTES) if regenerate_secret else None
        if secret is not None:
            changes["secret_hash"] = sha256_hex(secret)

        async def unit(tx: Tx) -> sqlite3.Row:
            fresh = row
            if changes:
                await webhook_store.update(tx, row["id"], self.ctx.now(), **changes)
                fresh = await webhook_store.by_id(tx, row["id"])
                assert fresh is not None
                await emit_to_admins(self.ctx, tx, "webhook.updated", fresh["workspace_id"], view(fresh))
            return fresh

        return await self.ctx.db.write(unit), secret

    async def delete(self, workspace_id: str, webhook_id: str, principal: Principal) -> None:
        row = await self._require(workspace_id, webhook_id, principal)

        async def unit(tx: Tx) -> None:
            await webhook_store.soft_delete(tx, row["id"], self.ctx.now())
            await emit_to_admins(self.ctx, tx, "webhook.deleted", row["workspace_id"],
                                 {"id": row["id"], "workspace_id": row["workspace_id"]})

        await self.ctx.db.write(unit)

    # Posting (the secret is the credential) -------------------------------------------------

    async def authenticate(self, webhook_id: str, secret: str | None) -> sqlite3.Row:
        """The webhook ``webhook_id`` if ``secret`` is its secret: 404 unknown/deleted, 401 wrong, 403 inactive."""
        row = await webhook_store.by_id(self.ctx.db.reader, webhook_id.lower()) if looks_like_id(webhook_id) else None
        if row is None or row["deleted_at"] is not None:
            raise NotFound()
        if not secret or len(secret) > MAX_SECRET_CHARS or not same_digest(sha256_hex(secret), row["secret_hash"]):
            raise Unauthenticated()
        if not row["is_active"]:
            raise Forbidden(code=INACTIVE)
        return row

    async def by_secret(self, secret: str) -> sqlite3.Row:
        """The webhook a ``/hooks/{secret}`` URL names (found by the secret's hash): 404 unknown, 403 inactive."""
        if not secret or len(secret) > MAX_SECRET_CHARS:
            raise NotFound()
        row = await webhook_store.by_secret_hash(self.ctx.db.reader, sha256_hex(secret))
        if row is None:
            raise NotFound()
        if not row["is_active"]:
            raise Forbidden(code=INACTIVE)
        return row

    async def target_channel(self, webhook: sqlite3.Row, channel_id: str | None = None,
                             reference: str | None = None) -> sqlite3.Row:
        """Where a post goes: ``channel_id`` (422 unless in the webhook's workspace), a Slack channel
        reference (slug or name; unknown ones fall back), else the default channel."""
        reader = self.ctx.db.reader
        if channel_id is not None:
            channel = await webhook_store.channel_in_workspace(reader, webhook["workspace_id"], channel_id)
            if channel is None:
                raise Invalid.one("channel_id", "The selected channel_id is not a channel of this webhook's workspace.")
            return channel
        if reference:
            channel = await webhook_store.channel_by_reference(reader, webhook["workspace_id"], reference)
            if channel is not None:
                return channel
        channel = None
        if webhook["default_channel_id"] is not None:
            channel = await webhook_store.channel_in_workspace(reader, webhook["workspace_id"],
                                                               webhook["default_channel_id"])
        if channel is None:
            raise Invalid.one("channel_id", "The webhook has no default channel: send channel_id.")
        return channel

    async def post(self, webhook: sqlite3.Row, channel: sqlite3.Row, content: str, *, skip_translation: bool,
                   name: str | None = None, avatar_url: str | None = None) -> dict[str, Any]:
        language = self.ctx.config.translation.default_language
        author = Author("webhook", webhook["id"], language, name=name or webhook["name"], avatar_url=avatar_url)
        message = await self.messages.post(author, channel_place(channel), content, skip_translation=skip_translation)
        now = self.ctx.now()
        # No cached read shows when a webhook was last used: this commit keeps them all.
        await self.ctx.db.write(uncached(lambda tx: webhook_store.touch(tx, webhook["id"], now)))
        return message
