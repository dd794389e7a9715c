"""Channel messages over HTTP: cursor-paged history and posting."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rosetta.handlers.base import BaseHandler, json_object
from rosetta.handlers.lean import LeanRead, LeanWrite, Write
from rosetta.handlers.paging import CURSOR_QUERY, cursor_params, encoded_cursor_page
from rosetta.handlers.validate import Validator
from rosetta.services.messages import MAX_CONTENT_CHARS, channel_place
from rosetta.services.workspaces import ADMIN_ROLES

if TYPE_CHECKING:
    from rosetta.app import RosettaApp
    from rosetta.services.auth import Principal


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


async def channel_history(app: RosettaApp, principal: Principal, query: Any, workspace_id: str,
                          channel_id: str) -> tuple[bytes, str]:
    """A channel's history page as the caller reads it: ``(JSON body, ETag)``; ``query`` has the cursor."""
    channel = await app.workspaces.require_readable_channel(workspace_id, channel_id, principal)
    before, after, limit = cursor_params(query)
    page = await app.messages.page(channel_id=channel["id"], before=before, after=after, limit=limit,
                                   language=channel["reader_language"])
    return encoded_cursor_page(page)


async def channel_send(app: RosettaApp, principal: Principal, body: bytes, workspace_id: str,
                       channel_id: str) -> Write:
    """Check a send to a channel (ApiError when refused, nothing written yet); returns the send itself."""
    channel = await app.workspaces.require_readable_channel(workspace_id, channel_id, principal)
    content, attachment_ids, parent_id, skip = message_input(json_object(body))

    async def send() -> dict[str, Any]:
        return await app.messages.post_as_member(principal, channel, content, attachment_ids=attachment_ids,
                                                 parent_id=parent_id, skip_translation=skip)
    return send


class ChannelMessagesHandler(BaseHandler):
    lean_get = LeanRead(channel_history, CURSOR_QUERY)  # plain reads skip this class (handlers/lean.py)
    lean_post = LeanWrite(channel_send)  # and so do plain sends, in the fast lane (rosetta/fastlane.py)

    async def get(self, workspace_id: str, channel_id: str) -> None:
        assert self.principal
        self.send_encoded(*await channel_history(self.app, self.principal, self, workspace_id, channel_id))

    async def post(self, workspace_id: str, channel_id: str) -> None:
        assert self.principal
        send = await channel_send(self.app, self.principal, self.body_bytes, workspace_id, channel_id)
        self.send_json({"data": await send()}, 201)


def edit_input(body: dict[str, Any]) -> str:
    """The new ``content`` of an edit: required, non-empty, bounded."""
    v = Validator(body)
    content = v.string("content", required=True, max_len=MAX_CONTENT_CHARS)  # stripped, as when sending
    v.done()
    assert content is not None
    return content


class ChannelMessageHandler(BaseHandler):
    """One channel message: the author edits it; the author or a workspace admin/owner deletes it."""

    async def patch(self, workspace_id: str, channel_id: str, message_id: str) -> None:
        assert self.principal
        channel = await self.app.workspaces.require_readable_channel(workspace_id, channel_id, self.principal)
        content = edit_input(self.json_body())
        message = await self.app.messages.edit(self.principal.user_id, channel_place(channel), message_id, content,
                                               channel["reader_language"])
        self.send_json({"data": message})

    async def delete(self, workspace_id: str, channel_id: str, message_id: str) -> None:
        assert self.principal
        channel = await self.app.workspaces.require_readable_channel(workspace_id, channel_id, self.principal)
        await self.app.messages.delete(self.principal.user_id, channel_place(channel), message_id,
                                       moderator=channel["my_role"] in ADMIN_ROLES)
        self.no_content()


ROUTES = [
    (r"/workspaces/([^/]+)/channels/([^/]+)/messages", ChannelMessagesHandler),
    (r"/workspaces/([^/]+)/channels/([^/]+)/messages/([^/]+)", ChannelMessageHandler),
]
