"""Workspaces and channels over HTTP."""

from __future__ import annotations

from rosetta.handlers.base import BaseHandler
from rosetta.handlers.validate import Validator
from rosetta.services import views


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
        # Membership before validation: an outsider learns nothing, not even which fields are wrong.
        await self.app.workspaces.require_member(workspace_id, self.principal)
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


ROUTES = [
    ("/workspaces", WorkspacesHandler),
    (r"/workspaces/([^/]+)", WorkspaceHandler),
    (r"/workspaces/([^/]+)/channels", ChannelsHandler),
    (r"/workspaces/([^/]+)/channels/([^/]+)", ChannelHandler),
]
