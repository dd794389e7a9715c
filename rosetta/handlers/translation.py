"""Translation over HTTP: the language picker, on-demand translation of one message, workspace glossaries."""

from __future__ import annotations

from rosetta.handlers.base import BaseHandler
from rosetta.handlers.validate import Validator
from rosetta.services.direct import conversation_place
from rosetta.services.messages import channel_place


def target_language(body: dict) -> str:
    v = Validator(body)
    language = v.language("target_language", required=True)
    v.done()
    assert language is not None
    return language


class LanguagesHandler(BaseHandler):
    # Any credential (spec §9): a guest's client offers the picker too, and so may a bot or a
    # developer's tool whose token holds only `automation` or `temporary-rooms:*`.
    ability = None
    allow_guest = True

    async def get(self) -> None:
        languages = await self.app.translation.languages()
        self.send_json({"data": languages, "meta": {"provider": self.app.config.translation.provider}})


class ChannelMessageTranslateHandler(BaseHandler):
    async def post(self, workspace_id: str, channel_id: str, message_id: str) -> None:
        assert self.principal
        # Access first: a caller who may not read the channel learns nothing and the provider hears nothing.
        channel = await self.app.workspaces.require_readable_channel(workspace_id, channel_id, self.principal)
        target = target_language(self.json_body())
        view = await self.app.translation.translate_now(channel_place(channel), message_id, target)
        self.send_json({"data": view})


class DirectMessageTranslateHandler(BaseHandler):
    async def post(self, conversation_id: str, message_id: str) -> None:
        assert self.principal
        conversation = await self.app.direct.require(conversation_id, self.principal)
        target = target_language(self.json_body())
        view = await self.app.translation.translate_now(conversation_place(conversation["id"]), message_id, target)
        self.send_json({"data": view})


class GlossaryHandler(BaseHandler):
    async def get(self, workspace_id: str) -> None:
        assert self.principal
        terms = await self.app.glossary.get(workspace_id, self.principal)
        self.send_json({"data": {"terms": terms}})

    async def put(self, workspace_id: str) -> None:
        assert self.principal
        # The body is checked by the service after the caller's right to change the glossary (deny first).
        terms = await self.app.glossary.replace(workspace_id, self.principal, self.json_body().get("terms"))
        self.send_json({"data": {"terms": terms}})


ROUTES = [
    ("/translation/languages", LanguagesHandler),
    (r"/workspaces/([^/]+)/channels/([^/]+)/messages/([^/]+)/translate", ChannelMessageTranslateHandler),
    (r"/direct-conversations/([^/]+)/messages/([^/]+)/translate", DirectMessageTranslateHandler),
    (r"/workspaces/([^/]+)/glossary", GlossaryHandler),
]
