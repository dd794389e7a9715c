"""Outgoing webhooks over HTTP (workspace admins):

``GET|POST /workspaces/{w}/outgoing-webhooks`` ``{name, url, event_types[]}`` (201, ``secret`` shown once),
``GET|PUT|DELETE /workspaces/{w}/outgoing-webhooks/{id}`` ``{name?, url?, event_types?, is_active?,
regenerate_secret?}``, ``GET /workspaces/{w}/outgoing-webhooks/{id}/deliveries?limit=`` (newest first).
"""

from __future__ import annotations

from rosetta.handlers.base import BaseHandler
from rosetta.handlers.validate import Validator, query_int
from rosetta.services.outgoing import delivery_view, view

MAX_URL = 2000


class OutgoingWebhooksHandler(BaseHandler):
    async def get(self, workspace_id: str) -> None:
        assert self.principal
        rows = await self.app.outgoing.list(workspace_id, self.principal)
        self.send_json({"data": [view(row) for row in rows]})

    async def post(self, workspace_id: str) -> None:
        assert self.principal
        await self.app.workspaces.require_admin(workspace_id, self.principal)
        v = Validator(self.json_body())
        name = v.string("name", required=True, max_len=100)
        url = v.string("url", required=True, max_len=MAX_URL)
        event_types = v.string_list("event_types", max_items=20, max_len=50, required=True)
        v.done()
        assert name is not None and url is not None and event_types is not None
        row, secret = await self.app.outgoing.create(workspace_id, self.principal, name=name, url=url,
                                                     event_types=event_types)
        self.send_json({"data": view(row, secret)}, 201)


class OutgoingWebhookHandler(BaseHandler):
    async def get(self, workspace_id: str, hook_id: str) -> None:
        assert self.principal
        row = await self.app.outgoing.require(workspace_id, hook_id, self.principal)
        self.send_json({"data": view(row)})

    async def put(self, workspace_id: str, hook_id: str) -> None:
        assert self.principal
        await self.app.workspaces.require_admin(workspace_id, self.principal)
        v = Validator(self.json_body())
        name = v.string("name", max_len=100)
        url = v.string("url", max_len=MAX_URL)
        event_types = v.string_list("event_types", max_items=20, max_len=50)
        is_active = v.boolean("is_active")
        regenerate = v.boolean("regenerate_secret", default=False)
        v.done()
        row, secret = await self.app.outgoing.update(workspace_id, hook_id, self.principal, name=name, url=url,
                                                     event_types=event_types, is_active=is_active,
                                                     regenerate_secret=bool(regenerate))
        self.send_json({"data": view(row, secret)})

    async def delete(self, workspace_id: str, hook_id: str) -> None:
        assert self.principal
        await self.app.outgoing.delete(workspace_id, hook_id, self.principal)
        self.no_content()


class DeliveriesHandler(BaseHandler):
    async def get(self, workspace_id: str, hook_id: str) -> None:
        assert self.principal
        limit = query_int(self.get_query_argument("limit", None), "limit", 50, 1, 100)
        rows = await self.app.outgoing.deliveries(workspace_id, hook_id, self.principal, limit)
        self.send_json({"data": [delivery_view(row) for row in rows]})


ROUTES = [
    (r"/workspaces/([^/]+)/outgoing-webhooks", OutgoingWebhooksHandler),
    (r"/workspaces/([^/]+)/outgoing-webhooks/([^/]+)", OutgoingWebhookHandler),
    (r"/workspaces/([^/]+)/outgoing-webhooks/([^/]+)/deliveries", DeliveriesHandler),
]
