"""Incoming webhooks over HTTP: admin management, and ``POST /webhooks/{id}/messages`` by secret."""

from __future__ import annotations

from rosetta.handlers.base import BaseHandler
from rosetta.handlers.validate import Validator
from rosetta.services.messages import MAX_CONTENT_CHARS
from rosetta.services.webhooks import view


class WebhooksHandler(BaseHandler):
    async def get(self, workspace_id: str) -> None:
        assert self.principal
        rows = await self.app.webhooks.list(workspace_id, self.principal)
        self.send_json({"data": [view(row) for row in rows]})

    async def post(self, workspace_id: str) -> None:
        assert self.principal
        # Admin rights before validation: members and outsiders learn nothing about the fields.
        await self.app.workspaces.require_admin(workspace_id, self.principal)
        v = Validator(self.json_body())
        name = v.string("name", required=True, max_len=100)
        channel_id = v.entity_id("default_channel_id", required=True)
        v.done()
        assert name is not None and channel_id is not None
        row, secret = await self.app.webhooks.create(workspace_id, self.principal, name, channel_id)
        self.send_json({"data": view(row, secret)}, 201)


class WebhookHandler(BaseHandler):
    async def put(self, workspace_id: str, webhook_id: str) -> None:
        assert self.principal
        await self.app.workspaces.require_admin(workspace_id, self.principal)
        v = Validator(self.json_body())
        name = v.string("name", max_len=100)
        channel_id = v.entity_id("default_channel_id")
        is_active = v.boolean("is_active")
        regenerate = v.boolean("regenerate_secret", default=False)
        v.done()
        row, secret = await self.app.webhooks.update(workspace_id, webhook_id, self.principal, name=name,
                                                     default_channel_id=channel_id, is_active=is_active,
                                                     regenerate_secret=bool(regenerate))
        self.send_json({"data": view(row, secret)})

    async def delete(self, workspace_id: str, webhook_id: str) -> None:
        assert self.principal
        await self.app.webhooks.delete(workspace_id, webhook_id, self.principal)
        self.no_content()


class WebhookMessagesHandler(BaseHandler):
    """Authenticated by the webhook's secret only (header or bearer), never by a user credential."""

    public = True

    async def post(self, webhook_id: str) -> None:
        secret = self.request.headers.get("X-Rosetta-Webhook-Secret")
        header = self.request.headers.get("Authorization", "")
        if not secret and header.lower().startswith("bearer "):
            secret = header[7:].strip()
        webhook = await self.app.webhooks.authenticate(webhook_id, secret)
        self.rate_limit("webhook", webhook["id"], self.app.config.limits.api_per_minute, 60)
        v = Validator(self.json_body())
        content = v.string("content", required=True, max_len=MAX_CONTENT_CHARS)
        channel_id = v.entity_id("channel_id")
        skip = v.boolean("skip_translation", default=False)
        v.done()
        assert content is not None
        channel = await self.app.webhooks.target_channel(webhook, channel_id=channel_id)
        message = await self.app.webhooks.post(webhook, channel, content, skip_translation=bool(skip))
        self.send_json({"data": message}, 201)


ROUTES = [
    (r"/workspaces/([^/]+)/webhooks", WebhooksHandler),
    (r"/workspaces/([^/]+)/webhooks/([^/]+)", WebhookHandler),
    (r"/webhooks/([^/]+)/messages", WebhookMessagesHandler),
]
