"""Workspaces and channels: create, list, read, and the access rules that guard them.

Owns "who may see and do what" in a workspace: 404 for outsiders (no existence leak), 403 for a
member who may see but not act, and the password rule for protected channels.
"""

from __future__ import annotations

import sqlite3
from typing import cast

from rosetta.errors import Forbidden, Invalid, NotFound
from rosetta.ids import looks_like_id, new_id
from rosetta.services import views
from rosetta.services.auth import Principal
from rosetta.services.context import Context
from rosetta.services.events import emit
from rosetta.services.fresh import FreshCache
from rosetta.services.passwords import hash_password, verify_password
from rosetta.services.rooms import KIND as ROOM_KIND
from rosetta.services.rooms import is_live, room_gone
from rosetta.services.slugs import free_slug, slugify
from rosetta.store import channels as channel_store
from rosetta.store import rooms as room_store
from rosetta.store import workspaces as workspace_store
from rosetta.store.connections import Tx

ADMIN_ROLES = ("owner", "admin")
PASSWORD_REQUIRED = "channel_password_required"  # noqa: S105 - an error code, not a secret
GENERAL_SLUG = "general"
GENERAL_UNDELETABLE = "general_channel_undeletable"  # every workspace keeps its general channel
KEEP: object = object()  # "password not in the request": leave it as it is
ROOM_FIXED = "temporary_room_fixed"
ROOM_FIXED_MESSAGE = "A Temporary Room has exactly one channel and takes no invites."


def is_admin(row: sqlite3.Row) -> bool:
    return row["my_role"] in ADMIN_ROLES


class OpenRule:
    """The rule for every write into a workspace's content, whatever the route: a temporary room's
    workspace takes none once the room ended (410 ``temporary_room_expired``, as on the guest routes).
    Reads stay open to its members until the purge. ``None`` (a direct conversation) is always open.

    Every message send asks, so each workspace's room (or its absence) is kept between writes: a
    room is created, extended and ended only by writes that move every freshness stamp. Whether it
    is still live is decided at each call, against the clock.
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._rooms: FreshCache[sqlite3.Row | None] = FreshCache(ctx.db, CACHED_ROOM_LOOKUPS)

    async def require_open(self, workspace_id: str | None) -> None:
        if workspace_id is None:
            return
        room = await self._rooms.load(workspace_id, lambda: room_store.for_workspace(self.ctx.db.reader, workspace_id))
        if room is not None and not is_live(room, self.ctx.clock.now()):
            raise room_gone()


CACHED_ROOM_LOOKUPS = 4096
# Channels as members see them, kept between writes: every message read and send checks access, and
# a post (the common write) changes no one's access, so these stay valid under a stream of messages.
CACHED_CHANNEL_VIEWS = 4096


class WorkspaceService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._channel_views: FreshCache[sqlite3.Row | None] = FreshCache(ctx.db, CACHED_CHANNEL_VIEWS)

    # Access -----------------------------------------------------------------------------------

    async def require_member(self, workspace_id: str, principal: Principal) -> sqlite3.Row:
        """The workspace with ``my_role``; 404 when it does not exist or the caller is not in it."""
        if not looks_like_id(workspace_id):
            raise NotFound()
        row = await workspace_store.for_member(self.ctx.db.reader, workspace_id.lower(), principal.user_id)
        if row is None:
            raise NotFound()
        return row

    async def require_admin(self, workspace_id: str, principal: Principal) -> sqlite3.Row:
        row = await self.require_member(workspace_id, principal)
        if not is_admin(row):
            raise Forbidden()
        return row

    async def require_channel(self, workspace_id: str, channel_id: str, principal: Principal) -> sqlite3.Row:
        """A channel the caller may see (a workspace member): 404 otherwise."""
        if not looks_like_id(workspace_id) or not looks_like_id(channel_id):
            raise NotFound()
        key = (workspace_id.lower(), channel_id.lower(), principal.user_id)
        # Membership, roles, passwords and languages change only through writes that move every stamp.
        row = await self._channel_views.load(key, lambda: channel_store.for_user(self.ctx.db.reader, *key))
        if row is None:
            raise NotFound()
        return row

    async def require_structure_admin(self, workspace_id: str, principal: Principal) -> sqlite3.Row:
        """An admin changing the workspace's channels or invites: a temporary room's workspace is fixed
        at one channel and joined only through the room's guest endpoint (403 at all times)."""
        row = await self.require_admin(workspace_id, principal)
        if row["kind"] == ROOM_KIND:
            raise Forbidden(ROOM_FIXED_MESSAGE, code=ROOM_FIXED)
        return row

    async def require_readable_channel(self, workspace_id: str, channel_id: str,
                                       principal: Principal) -> sqlite3.Row:
        """A channel the caller may read and post in: password channels need a join first (403)."""
        row = await self.require_channel(workspace_id, channel_id, principal)
        if not row["is_member"]:
            raise Forbidden(code=PASSWORD_REQUIRED)
        return row

    # Workspaces -------------------------------------------------------------------------------

    async def create(self, principal: Principal, name: str, slug: str | None, password: str | None) -> sqlite3.Row:
        reader = self.ctx.db.reader
        if slug is not None and await workspace_store.slug_taken(reader, slug):
            raise Invalid.one("slug", "The slug has already been taken.")
        password_hash = await hash_password(self.ctx, password) if password else None
        workspace_id = new_id()

        async def unit(tx: Tx) -> sqlite3.Row:
            chosen = slug
            if chosen is None:
                chosen = await free_slug(slugify(name, "workspace"), lambda s: workspace_store.slug_taken(tx, s))
            elif await workspace_store.slug_taken(tx, chosen):
                raise Invalid.one("slug", "The slug has already been taken.")
            now = self.ctx.now()
            await workspace_store.insert(tx, id=workspace_id, name=name, slug=chosen, owner_id=principal.user_id,
                                         password_hash=password_hash, now=now)
            await workspace_store.add_member(tx, id=new_id(), workspace_id=workspace_id,
                                             user_id=principal.user_id, role="owner", now=now)
            await channel_store.insert(tx, id=new_id(), workspace_id=workspace_id, name="general", slug="general",
                                       password_hash=None, now=now)
            row = await workspace_store.for_member(tx, workspace_id, principal.user_id)
            assert row is not None
            await emit(self.ctx, tx, "workspace.created", "user", principal.user_id, views.workspace(row))
            return row

        return await self.ctx.db.write(unit)

    async def list_mine(self, principal: Principal) -> list[sqlite3.Row]:
        return await workspace_store.list_for_user(self.ctx.db.reader, principal.user_id)

    # Channels ---------------------------------------------------------------------------------

    async def list_channels(self, workspace_id: str, principal: Principal) -> list[sqlite3.Row]:
        workspace = await self.require_member(workspace_id, principal)
        return await channel_store.list_for_user(self.ctx.db.reader, workspace["id"], principal.user_id)

    async def create_channel(self, workspace_id: str, principal: Principal, name: str, slug: str | None,
                             password: str | None) -> sqlite3.Row:
        workspace = await self.require_structure_admin(workspace_id, principal)
        if slug is not None and await channel_store.slug_taken(self.ctx.db.reader, workspace["id"], slug):
            raise Invalid.one("slug", "The slug has already been taken.")
        password_hash = await hash_password(self.ctx, password) if password else None
        channel_id = new_id()

        async def unit(tx: Tx) -> sqlite3.Row:
            chosen = slug
            if chosen is None:
                chosen = await free_slug(slugify(name, "channel"),
                                         lambda s: channel_store.slug_taken(tx, workspace["id"], s))
            elif await channel_store.slug_taken(tx, workspace["id"], chosen):
                raise Invalid.one("slug", "The slug has already been taken.")
            await channel_store.insert(tx, id=channel_id, workspace_id=workspace["id"], name=name, slug=chosen,
                                       password_hash=password_hash, now=self.ctx.now())
            row = await channel_store.for_user(tx, workspace["id"], channel_id, principal.user_id)
            assert row is not None
            neutral = {**views.channel(row), "is_member": password_hash is None}
            await emit(self.ctx, tx, "channel.created", "workspace", workspace["id"], neutral)
            return row

        return await self.ctx.db.write(unit)

    async def update_channel(self, workspace_id: str, channel_id: str, principal: Principal, name: str,
                             slug: str | None, password: str | object | None = KEEP) -> sqlite3.Row:
        """Rename a channel, change its slug, set or (None) remove its password. Admins and owner."""
        workspace = await self.require_structure_admin(workspace_id, principal)
        channel = await self.require_channel(workspace["id"], channel_id, principal)
        if slug is not None and await channel_store.slug_taken(self.ctx.db.reader, workspace["id"], slug,
                                                               except_id=channel["id"]):
            raise Invalid.one("slug", "The slug has already been taken.")
        if channel["slug"] == GENERAL_SLUG and slug is not None and slug != GENERAL_SLUG:
            raise Invalid.one("slug", "The general channel keeps its slug.")
        new_hash: str | object | None = KEEP
        if isinstance(password, str):
            new_hash = await hash_password(self.ctx, password)
        elif password is None:
            new_hash = None

        async def unit(tx: Tx) -> sqlite3.Row:
            current = await channel_store.for_user(tx, workspace["id"], channel["id"], principal.user_id)
            if current is None:
                raise NotFound()
            chosen = slug or current["slug"]
            if await channel_store.slug_taken(tx, workspace["id"], chosen, except_id=current["id"]):
                raise Invalid.one("slug", "The slug has already been taken.")
            old_hash = await channel_store.password_hash(tx, current["id"])
            stored = old_hash if new_hash is KEEP else cast("str | None", new_hash)
            await channel_store.update(tx, current["id"], name=name, slug=chosen, password_hash=stored,
                                       now=self.ctx.now())
            if new_hash is not KEEP:
                # A new or removed password: whoever joined with the old one must join again.
                await channel_store.clear_access(tx, current["id"])
            row = await channel_store.for_user(tx, workspace["id"], current["id"], principal.user_id)
            assert row is not None
            neutral = {**views.channel(row), "is_member": not row["has_password"]}
            await emit(self.ctx, tx, "channel.updated", "workspace", workspace["id"], neutral)
            return row

        return await self.ctx.db.write(unit)

    async def delete_channel(self, workspace_id: str, channel_id: str, principal: Principal) -> None:
        """Delete a channel with its messages. Admins and owner; ``general`` stays (403)."""
        workspace = await self.require_structure_admin(workspace_id, principal)
        channel = await self.require_channel(workspace["id"], channel_id, principal)
        if channel["slug"] == GENERAL_SLUG:
            raise Forbidden(code=GENERAL_UNDELETABLE)

        async def unit(tx: Tx) -> None:
            if not await channel_store.delete(tx, channel["id"]):
                raise NotFound()
            payload = {"id": channel["id"], "workspace_id": workspace["id"], "deleted_at": self.ctx.now()}
            await emit(self.ctx, tx, "channel.deleted", "workspace", workspace["id"], payload)

        await self.ctx.db.write(unit)

    async def join_channel(self, channel: sqlite3.Row, principal: Principal, password: str) -> sqlite3.Row:
        """Unlock a password channel for the caller; 422 ``password`` when wrong.

        ``channel`` comes from ``require_channel``; the caller rate-limits attempts before this runs.
        Channels without a password, and owners and admins, are open already: nothing to check.
        """
        if channel["is_member"]:
            return channel
        stored = await channel_store.password_hash(self.ctx.db.reader, channel["id"])
        if stored is not None and not await verify_password(self.ctx, password, stored):
            raise Invalid.one("password", "The provided password is incorrect.")

        async def unit(tx: Tx) -> sqlite3.Row:
            try:
                await channel_store.grant_access(tx, channel["id"], principal.user_id, self.ctx.now())
            except sqlite3.IntegrityError:
                raise NotFound() from None  # the channel was deleted since it was read: its foreign key fails
            row = await channel_store.for_user(tx, channel["workspace_id"], channel["id"], principal.user_id)
            if row is None:
                raise NotFound()
            await emit(self.ctx, tx, "channel.joined", "user", principal.user_id, views.channel(row))
            return row

        return await self.ctx.db.write(unit)
