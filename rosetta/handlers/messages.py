"""Channel messages over HTTP: cursor-paged history and posting."""

from __future__ import annotations

from typing import Any

from rosetta.handlers.base import BaseHandler
from rosetta.handlers.paging import cursor_body, cursor_params
from rosetta.handlers.validate import Validator
from rosetta.services.messages import MAX_CONTENT_CHARS


def message_input(body: dict[str, Any]) -> tuple[str, list[str], str | None, bool]:
    """``(content, attachment_ids, parent_message_id, skip_translation)`` from a send body."""
    v = Validator(body)
    content = v.string("content", max_len=MAX_CONTENT_CHARS, allow_empty=True) or ""
    attachment_ids = v.id_list("attachment_ids")
    parent_id = v.entity_id("parent_message_id")
    skip = v.boolean("skip_translation", default=False)
    if not content.strip() and not attachment_ids and "content" not in v.errors:
        v.fail("content", "The content field is required.")
    v.done()
    return content, attachment_ids, parent_id, bool(skip)


class ChannelMessagesHandler(BaseHandler):
    async def get(self, workspace_id: str, channel_id: str) -> None:
        assert self.principal
        channel = await self.app.workspaces.require_readable_channel(workspace_id, channel_id, self.principal)
        before, after, limit = cursor_params(self)
        page = await self.app.messages.page(channel_id=channel["id"], before=before, after=after, limit=limit,
                                            language=channel["reader_language"])
        self.send_json(cursor_body(page))

    async def post(self, workspace_id: str, channel_id: str) -> None:
        assert self.principal
        channel = await self.app.workspaces.require_readable_channel(workspace_id, channel_id, self.principal)
        content, attachment_ids, parent_id, skip = message_input(self.json_body())
        message = await self.app.messages.post_as_member(
            self.principal, channel, content, attachment_ids=attachment_ids, parent_id=parent_id,
            skip_translation=skip,
        )
        self.send_json({"data": message}, 201)


ROUTES = [
    (r"/workspaces/([^/]+)/channels/([^/]+)/messages", ChannelMessagesHandler),
]
