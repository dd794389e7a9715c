"""Direct chat over HTTP: conversations between two users, recipient lookup, and their messages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rosetta.handlers.base import BaseHandler, json_object
from rosetta.handlers.lean import LeanRead, LeanWrite, Write
from rosetta.handlers.messages import edit_input, message_input
from rosetta.handlers.paging import CURSOR_QUERY, cursor_params, encoded_cursor_page
from rosetta.handlers.validate import Validator

if TYPE_CHECKING:
    from rosetta.app import RosettaApp
    from rosetta.services.auth import Principal


class ConversationsHandler(BaseHandler):
    async def get(self) -> None:
        assert self.principal
        self.send_json({"data": await self.app.direct.list_mine(self.principal)})

    async def post(self) -> None:
        assert self.principal
        v = Validator(self.json_body())
        other = v.entity_id("participant_user_id", required=True)
        v.done()
        assert other is not None
        opened = await self.app.direct.open(self.principal, other)
        self.send_json({"data": opened.conversation}, 201 if opened.created else 200)


class ResolveRecipientHandler(BaseHandler):
    async def post(self) -> None:
        assert self.principal
        v = Validator(self.json_body())
        email = v.email()
        v.done()
        assert email is not None
        user = await self.app.direct.resolve(self.principal, email)
        self.send_json({"data": {"id": user["id"], "name": user["name"], "avatar_url": user["avatar_url"]}})


async def conversation_history(app: RosettaApp, principal: Principal, query: Any,
                               conversation_id: str) -> tuple[bytes, str]:
    """A direct conversation's history page: ``(JSON body, ETag)``; ``query`` has the cursor."""
    await app.direct.require(conversation_id, principal)
    before, after, limit = cursor_params(query)
    return encoded_cursor_page(await app.direct.page(conversation_id, principal, before, after, limit))


async def conversation_send(app: RosettaApp, principal: Principal, body: bytes, conversation_id: str) -> Write:
    """Check a direct send (ApiError when refused, nothing written yet); returns the send itself."""
    await app.direct.require(conversation_id, principal)
    content, attachment_ids, parent_id, skip = message_input(json_object(body))

    async def send() -> dict[str, Any]:
        return await app.direct.post(conversation_id, principal, content, attachment_ids=attachment_ids,
                                     parent_id=parent_id, skip_translation=skip)
    return send


class ConversationMessagesHandler(BaseHandler):
    lean_get = LeanRead(conversation_history, CURSOR_QUERY)  # plain reads skip this class (handlers/lean.py)
    lean_post = LeanWrite(conversation_send)  # and so do plain sends, in the fast lane (rosetta/fastlane.py)

    async def get(self, conversation_id: str) -> None:
        assert self.principal
        self.send_encoded(*await conversation_history(self.app, self.principal, self, conversation_id))

    async def post(self, conversation_id: str) -> None:
        assert self.principal
        send = await conversation_send(self.app, self.principal, self.body_bytes, conversation_id)
        self.send_json({"data": await send()}, 201)


class ConversationMessageHandler(BaseHandler):
    """One direct message: only its author edits or deletes it."""

    async def patch(self, conversation_id: str, message_id: str) -> None:
        assert self.principal
        await self.app.direct.require(conversation_id, self.principal)
        content = edit_input(self.json_body())
        message = await self.app.direct.edit(conversation_id, message_id, self.principal, content)
        self.send_json({"data": message})

    async def delete(self, conversation_id: str, message_id: str) -> None:
        assert self.principal
        await self.app.direct.delete(conversation_id, message_id, self.principal)
        self.no_content()


ROUTES = [
    ("/direct-conversations", ConversationsHandler),
    ("/direct-recipients/resolve", ResolveRecipientHandler),
    (r"/direct-conversations/([^/]+)/messages", ConversationMessagesHandler),
    (r"/direct-conversations/([^/]+)/messages/([^/]+)", ConversationMessageHandler),
]
