"""Workspace invites: issue, list, revoke, preview and accept.

Owns the invite life cycle. ``max_uses`` holds under any concurrency because the use is counted by
one guarded UPDATE inside the same write unit that adds the member: the single writer runs units
one after another, and the UPDATE only succeeds while a use is left (50 simultaneous accepts of a
5-use invite admit exactly 5). Every way an invite cannot be used (unknown, expired, revoked, used
up) answers the same 404, so a code's history is not leaked.

Codes are stored in the clear: admins list them (the Invite resource carries ``code`` and ``url``),
and a code only grants what the link itself is meant to grant.
"""

from __future__ import annotations

import secrets
import sqlite3
from datetime import timedelta

from rosetta.clock import iso
from rosetta.errors import NotFound
from rosetta.ids import looks_like_id, new_id
from rosetta.services import views
from rosetta.services.auth import Principal
from rosetta.services.context import Context
from rosetta.services.events import emit
from rosetta.services.workspaces import WorkspaceService
from rosetta.store import invites as invite_store
from rosetta.store import workspaces as workspace_store
from rosetta.store.connections import Tx

INVALID_INVITE = "This invite link is not valid."
CODE_BYTES = 12  # 96 bits, 16 URL-safe characters: unguessable, short enough to read out
MAX_CODE_LEN = 64


def invalid_invite() -> NotFound:
    return NotFound(INVALID_INVITE)


def admin_payload(row: sqlite3.Row) -> dict[str, object]:
    """The invite as events show it to the workspace: no code, which only admins may hand out."""
    return {key: row[key] for key in ("id", "workspace_id", "expires_at", "max_uses", "uses", "created_by",
                                      "created_at")}


class InviteService:
    def __init__(self, ctx: Context, workspaces: WorkspaceService) -> None:
        self.ctx = ctx
        self.workspaces = workspaces

    def url(self, code: str) -> str:
        """The join link: the web app's join screen when configured, else the API preview."""
        frontend = self.ctx.config.auth.frontend_url.rstrip("/")
        if frontend:
            return f"{frontend}/invites/{code}"
        return f"{self.ctx.config.server.base_url()}/api/v1/invites/{code}"

    def view(self, row: sqlite3.Row) -> dict[str, object]:
        return views.invite(row, self.url(row["code"]))

    async def list_for(self, workspace_id: str, principal: Principal) -> list[sqlite3.Row]:
        workspace = await self.workspaces.require_admin(workspace_id, principal)
        return await invite_store.list_for_workspace(self.ctx.db.reader, workspace["id"])

    async def create(self, workspace_id: str, principal: Principal, expires_in_days: int,
                     max_uses: int | None) -> sqlite3.Row:
        workspace = await self.workspaces.require_structure_admin(workspace_id, principal)
        invite_id = new_id()
        code = secrets.token_urlsafe(CODE_BYTES)

        async def unit(tx: Tx) -> sqlite3.Row:
            now = self.ctx.now()
            expires_at = iso(self.ctx.clock.now() + timedelta(days=expires_in_days))
            await invite_store.insert(tx, id=invite_id, workspace_id=workspace["id"], code=code,
                                      expires_at=expires_at, max_uses=max_uses, created_by=principal.user_id,
                                      now=now)
            row = await invite_store.by_id(tx, workspace["id"], invite_id)
            assert row is not None
            await emit(self.ctx, tx, "invite.created", "workspace", workspace["id"], admin_payload(row))
            return row

        return await self.ctx.db.write(unit)

    async def revoke(self, workspace_id: str, invite_id: str, principal: Principal) -> None:
        workspace = await self.workspaces.require_admin(workspace_id, principal)
        if not looks_like_id(invite_id):
            raise NotFound()

        async def unit(tx: Tx) -> None:
            row = await invite_store.by_id(tx, workspace["id"], invite_id.lower())
            if row is None:
                raise NotFound()
            await invite_store.revoke(tx, row["id"], self.ctx.now())
            await emit(self.ctx, tx, "invite.revoked", "workspace", workspace["id"], admin_payload(row))

        await self.ctx.db.write(unit)

    async def preview(self, code: str) -> sqlite3.Row:
        if not code or len(code) > MAX_CODE_LEN:
            raise invalid_invite()
        row = await invite_store.usable_by_code(self.ctx.db.reader, code, self.ctx.now())
        if row is None:
            raise invalid_invite()
        return row

    async def accept(self, code: str, principal: Principal) -> sqlite3.Row:
        """Join the invite's workspace as ``member``; an existing member gets the workspace, no use counted."""
        if not code or len(code) > MAX_CODE_LEN:
            raise invalid_invite()

        async def unit(tx: Tx) -> sqlite3.Row:
            now = self.ctx.now()
            invite = await invite_store.usable_by_code(tx, code, now)
            if invite is None:
                raise invalid_invite()
            workspace_id = invite["workspace_id"]
            existing = await workspace_store.for_member(tx, workspace_id, principal.user_id)
            if existing is not None:
                return existing
            if not await invite_store.take_use(tx, invite["id"], now):
                raise invalid_invite()
            member_id = new_id()
            await workspace_store.add_member(tx, id=member_id, workspace_id=workspace_id,
                                             user_id=principal.user_id, role="member", now=now)
            member = await workspace_store.member_by_id(tx, workspace_id, member_id)
            assert member is not None
            await emit(self.ctx, tx, "member.joined", "workspace", workspace_id, views.member(member))
            row = await workspace_store.for_member(tx, workspace_id, principal.user_id)
            assert row is not None
            return row

        return await self.ctx.db.write(unit)
