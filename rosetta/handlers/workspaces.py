"""Workspaces and channels over HTTP."""

from __future__ import annotations

from rosetta.handlers.base import BaseHandler
from rosetta.handlers.validate import Validator
from rosetta.services import views
from rosetta.services.workspaces import KEEP


class WorkspacesHandler(BaseHandler):
    async def get(self) -> None:
        assert self.principal
        rows = await self.app.workspaces.list_mine(self.principal)
        self.send_json({"data": [views.workspace(row) for row in rows]})

    async def post(self) -> None:
        assert self.principal
        v = Validator(self.json_body())
        name = v.string("name", required=True, max_len=255)
        slug = v.slug()
        password = v.password(required=False)
        v.done()
        assert name is not None
        row = await self.app.workspaces.create(self.principal, name, slug, password)
        self.send_json({"data": views.workspace(row)}, 201)


class WorkspaceHandler(BaseHandler):
    async def get(self, workspace_id: str) -> None:
        assert self.principal
        row = await self.app.workspaces.require_member(workspace_id, self.principal)
        self.send_json({"data": views.workspace(row)})


class ChannelsHandler(BaseHandler):
    async def get(self, workspace_id: str) -> None:
        assert self.principal
        rows = await self.app.workspaces.list_channels(workspace_id, self.principal)
        self.send_json({"data": [views.channel(row) for row in rows]})

    async def post(self, workspace_id: str) -> None:
        assert self.principal
        # Admin rights before validation, as on every admin route: others learn nothing of the fields.
        await self.app.workspaces.require_admin(workspace_id, self.principal)
        v = Validator(self.json_body())
        name = v.string("name", required=True, max_len=100)
        slug = v.slug()
        password = v.password(required=False)
        v.done()
        assert name is not None
        row = await self.app.workspaces.create_channel(workspace_id, self.principal, name, slug, password)
        self.send_json({"data": views.channel(row)}, 201)


class ChannelHandler(BaseHandler):
    async def get(self, workspace_id: str, channel_id: str) -> None:
        assert self.principal
        row = await self.app.workspaces.require_channel(workspace_id, channel_id, self.principal)
        self.send_json({"data": views.channel(row)})

    async def put(self, workspace_id: str, channel_id: str) -> None:
        assert self.principal
        await self.app.workspaces.require_admin(workspace_id, self.principal)
        body = self.json_body()
        v = Validator(body)
        name = v.string("name", required=True, max_len=100)
        slug = v.slug()
        password: str | object | None = KEEP
        if "password" in body:
            # null or "" removes the password; anything else must be a valid password.
            raw = body["password"]
            password = None if raw is None or raw == "" else v.password()
        v.done()
        assert name is not None
        row = await self.app.workspaces.update_channel(workspace_id, channel_id, self.principal, name, slug,
                                                       password)
        self.send_json({"data": views.channel(row)})

    async def delete(self, workspace_id: str, channel_id: str) -> None:
        assert self.principal
        await self.app.workspaces.delete_channel(workspace_id, channel_id, self.principal)
        self.no_content()


class ChannelJoinHandler(BaseHandler):
    async def post(self, workspace_id: str, channel_id: str) -> None:
        assert self.principal
        channel = await self.app.workspaces.require_channel(workspace_id, channel_id, self.principal)
        v = Validator(self.json_body())
        password = v.string("password", required=not channel["is_member"], max_len=10_000, strip=False)
        v.done()
        if not channel["is_member"]:
            # Counted per user and channel before the check: wrong passwords cannot be tried at speed.
            self.rate_limit("channel-password", f"{self.principal.user_id}:{channel['id']}",
                            self.app.config.limits.channel_password_per_minute, 60)
        row = await self.app.workspaces.join_channel(channel, self.principal, password or "")
        self.send_json({"data": views.channel(row)})


ROUTES = [
    ("/workspaces", WorkspacesHandler),
    (r"/workspaces/([^/]+)", WorkspaceHandler),
    (r"/workspaces/([^/]+)/channels", ChannelsHandler),
    (r"/workspaces/([^/]+)/channels/([^/]+)", ChannelHandler),
    (r"/workspaces/([^/]+)/channels/([^/]+)/join", ChannelJoinHandler),
]
