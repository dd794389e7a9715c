"""Invites over HTTP: admins issue, list and revoke; anyone previews a link; a signed-in user accepts."""

from __future__ import annotations

from rosetta.handlers.base import BaseHandler
from rosetta.handlers.validate import Validator
from rosetta.services import views

MAX_INVITE_USES = 100_000


class WorkspaceInvitesHandler(BaseHandler):
    async def get(self, workspace_id: str) -> None:
        assert self.principal
        rows = await self.app.invites.list_for(workspace_id, self.principal)
        self.send_json({"data": [self.app.invites.view(row) for row in rows]})

    async def post(self, workspace_id: str) -> None:
        assert self.principal
        # Admin check first: a member or outsider learns nothing from validation messages.
        await self.app.workspaces.require_admin(workspace_id, self.principal)
        v = Validator(self.json_body())
        days = v.integer("expires_in_days", required=True, lo=1, hi=30)
        max_uses = v.integer("max_uses", lo=1, hi=MAX_INVITE_USES)
        v.done()
        assert days is not None
        row = await self.app.invites.create(workspace_id, self.principal, days, max_uses)
        self.send_json({"data": self.app.invites.view(row)}, 201)


class WorkspaceInviteHandler(BaseHandler):
    async def delete(self, workspace_id: str, invite_id: str) -> None:
        assert self.principal
        await self.app.invites.revoke(workspace_id, invite_id, self.principal)
        self.no_content()


class InvitePreviewHandler(BaseHandler):
    public = True

    async def get(self, code: str) -> None:
        # Limited per address before the lookup, so codes cannot be guessed at speed.
        self.rate_limit("invite-preview", self.address_key(), self.app.config.limits.invite_preview_per_minute, 60)
        row = await self.app.invites.preview(code)
        self.send_json({"data": views.invite_preview(row)})


class InviteAcceptHandler(BaseHandler):
    async def post(self, code: str) -> None:
        assert self.principal
        # Per user: a signed-in caller cannot use accept to guess codes faster than the preview allows.
        self.rate_limit("invite-accept", self.principal.user_id, self.app.config.limits.invite_preview_per_minute, 60)
        row = await self.app.invites.accept(code, self.principal)
        self.send_json({"data": views.workspace(row)})


ROUTES = [
    (r"/workspaces/([^/]+)/invites", WorkspaceInvitesHandler),
    (r"/workspaces/([^/]+)/invites/([^/]+)", WorkspaceInviteHandler),
    (r"/invites/([^/]+)", InvitePreviewHandler),
    (r"/invites/([^/]+)/accept", InviteAcceptHandler),
]
