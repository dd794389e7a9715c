"""Workspace members: list, change role or reading language, remove (or leave).

Owns the role rules: admins and owners change roles; only an owner makes or unmakes owners or
changes another admin; a member's own ``preferred_language`` is theirs alone; admins remove
members, only owners remove admins and owners, anyone may leave; the last owner can neither leave
nor be demoted (403 ``last_owner``). The owner count is checked inside the write unit, so two
owners demoting each other at once cannot leave the workspace without one.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from rosetta.errors import Forbidden, Invalid, NotFound
from rosetta.ids import looks_like_id
from rosetta.services import views
from rosetta.services.auth import Principal
from rosetta.services.context import Context
from rosetta.services.events import emit
from rosetta.services.workspaces import ADMIN_ROLES, WorkspaceService
from rosetta.store import workspaces as workspace_store
from rosetta.store.connections import Conn, Tx

SORT_FIELDS = tuple(workspace_store.MEMBER_ORDER)  # what GET /workspaces/{w}/members may sort by

ASSIGNABLE_ROLES = ("owner", "admin", "member")
LAST_OWNER = "last_owner"
UNSET: Any = object()  # "not in the request" (None means "clear the override")


class MemberService:
    def __init__(self, ctx: Context, workspaces: WorkspaceService) -> None:
        self.ctx = ctx
        self.workspaces = workspaces

    async def page(self, workspace_id: str, principal: Principal, page: int, per_page: int,
                   sort: str = "joined_at", descending: bool = False) -> tuple[list[sqlite3.Row], int]:
        workspace = await self.workspaces.require_member(workspace_id, principal)
        reader = self.ctx.db.reader
        total = await workspace_store.count_members(reader, workspace["id"])
        rows = await workspace_store.list_members(reader, workspace["id"], (page - 1) * per_page, per_page,
                                                  sort, descending)
        return rows, total

    async def _target(self, conn: Conn, workspace_id: str, member_id: str) -> sqlite3.Row:
        if not looks_like_id(member_id):
            raise NotFound()
        row = await workspace_store.member_by_id(conn, workspace_id, member_id.lower())
        if row is None:
            raise NotFound()
        return row

    async def _actor_role(self, conn: Conn, workspace_id: str, principal: Principal) -> str:
        """The caller's role now; 404 when they left or were removed meanwhile."""
        row = await workspace_store.member(conn, workspace_id, principal.user_id)
        if row is None:
            raise NotFound()
        return str(row["role"])

    async def update(self, workspace_id: str, member_id: str, principal: Principal, *, role: str | None,
                     preferred_language: Any = UNSET) -> sqlite3.Row:
        """Change a member's role and/or (own) reading language; returns the member row."""
        workspace = await self.workspaces.require_member(workspace_id, principal)
        actor_role = workspace["my_role"]
        target = await self._target(self.ctx.db.reader, workspace["id"], member_id)
        is_self = target["user_id"] == principal.user_id
        if preferred_language is not UNSET and not is_self:
            raise Forbidden()  # a reading language is personal: nobody sets it for someone else
        if role is not None and role != target["role"]:
            check_role_change(actor_role, target["role"], role, is_self)

        async def unit(tx: Tx) -> sqlite3.Row:
            current = await self._target(tx, workspace["id"], target["id"])
            if role is not None and role != current["role"]:
                # Again with the roles as they are now: a concurrent promotion or demotion of either
                # side may have changed what the actor is allowed to do.
                check_role_change(await self._actor_role(tx, workspace["id"], principal), current["role"], role,
                                  is_self)
            new_role = current["role"] if role is None else role
            if current["role"] == "owner" and new_role != "owner" \
                    and await workspace_store.count_owners(tx, workspace["id"]) <= 1:
                raise Forbidden(code=LAST_OWNER)
            language = current["preferred_language"] if preferred_language is UNSET else preferred_language
            await workspace_store.update_member(tx, current["id"], role=new_role, preferred_language=language)
            now = self.ctx.now()
            if current["role"] == "owner" and new_role != "owner" and workspace["owner_id"] == current["user_id"]:
                successor = await workspace_store.another_owner(tx, workspace["id"], current["user_id"])
                if successor is not None:
                    await workspace_store.set_owner_id(tx, workspace["id"], successor, now)
            row = await workspace_store.member_by_id(tx, workspace["id"], current["id"])
            assert row is not None
            await emit(self.ctx, tx, "member.updated", "workspace", workspace["id"], views.member(row))
            return row

        return await self.ctx.db.write(unit)

    async def remove(self, workspace_id: str, member_id: str, principal: Principal) -> None:
        """Remove a member (admins; owners for admins and owners), or leave when it is the caller."""
        workspace = await self.workspaces.require_member(workspace_id, principal)
        target = await self._target(self.ctx.db.reader, workspace["id"], member_id)
        is_self = target["user_id"] == principal.user_id
        if not is_self:
            if workspace["my_role"] not in ADMIN_ROLES:
                raise Forbidden()
            if target["role"] in ADMIN_ROLES and workspace["my_role"] != "owner":
                raise Forbidden()

        async def unit(tx: Tx) -> None:
            current = await self._target(tx, workspace["id"], target["id"])
            if not is_self:  # the rules again, with the roles as they are inside the write
                actor_role = await self._actor_role(tx, workspace["id"], principal)
                if actor_role not in ADMIN_ROLES or (current["role"] in ADMIN_ROLES and actor_role != "owner"):
                    raise Forbidden()
            if current["role"] == "owner" and await workspace_store.count_owners(tx, workspace["id"]) <= 1:
                raise Forbidden(code=LAST_OWNER)
            await workspace_store.remove_member(tx, workspace["id"], current["id"], current["user_id"])
            now = self.ctx.now()
            if workspace["owner_id"] == current["user_id"]:
                successor = await workspace_store.another_owner(tx, workspace["id"], current["user_id"])
                if successor is not None:
                    await workspace_store.set_owner_id(tx, workspace["id"], successor, now)
            payload = {**views.member(current), "removed_at": now}
            await emit(self.ctx, tx, "member.removed", "workspace", workspace["id"], payload)
            # The removed user is no longer in the workspace audience: tell them directly.
            await emit(self.ctx, tx, "member.removed", "user", current["user_id"], payload)

        await self.ctx.db.write(unit)


def check_role_change(actor_role: str, target_role: str, new_role: str, is_self: bool) -> None:
    """403 unless ``actor_role`` may move a member from ``target_role`` to ``new_role``."""
    if new_role not in ASSIGNABLE_ROLES:
        raise Invalid.one("role", f"The role field must be one of: {', '.join(ASSIGNABLE_ROLES)}.")
    if actor_role not in ADMIN_ROLES:
        raise Forbidden()
    if target_role == "guest":
        # A temporary room's guest stays a guest: its account, files and token end with the room.
        raise Forbidden(code="guest_role_fixed")
    if actor_role == "owner":
        return
    # An admin: may promote members to admin and step down themself, nothing that touches owners
    # or another admin.
    if new_role == "owner" or target_role == "owner":
        raise Forbidden()
    if target_role == "admin" and not is_self:
        raise Forbidden()
