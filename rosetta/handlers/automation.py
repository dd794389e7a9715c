"""Automation posts: ``POST /automation/workspaces/{w}/channels/{c}/messages`` with an ``automation`` token.

A token without the ability is 403 (BaseHandler); so is one whose owner is not a member of the
workspace — the contract says 403 here, not the usual 404, because the caller proved who it is
and the route is meant for scripts that need a clear "not allowed".
"""

from __future__ import annotations

from rosetta.errors import Forbidden, NotFound
from rosetta.handlers.base import BaseHandler
from rosetta.handlers.messages import message_input
from rosetta.services.messages import Author, channel_place


class AutomationMessagesHandler(BaseHandler):
    ability = "automation"
    allow_session = False  # scripts hold tokens; a browser session is not an automation credential

    async def post(self, workspace_id: str, channel_id: str) -> None:
        assert self.principal
        try:
            await self.app.workspaces.require_member(workspace_id, self.principal)
        except NotFound:
            raise Forbidden() from None
        channel = await self.app.workspaces.require_readable_channel(workspace_id, channel_id, self.principal)
        content, attachment_ids, parent_id, skip = message_input(self.json_body())
        author = Author("automation", self.principal.user_id, channel["reader_language"],
                        files_owner_id=self.principal.user_id)
        message = await self.app.messages.post(author, channel_place(channel), content, attachment_ids=attachment_ids,
                                               parent_id=parent_id, skip_translation=skip)
        self.send_json({"data": message}, 201)


ROUTES = [
    (r"/automation/workspaces/([^/]+)/channels/([^/]+)/messages", AutomationMessagesHandler),
]
