"""Workspace members over HTTP: a paged list, role and language changes, removal and leaving."""

from __future__ import annotations

from typing import Any

from rosetta.handlers.base import BaseHandler
from rosetta.handlers.paging import page_body, page_params, sort_param
from rosetta.handlers.validate import Validator
from rosetta.services import views
from rosetta.services.members import ASSIGNABLE_ROLES, SORT_FIELDS, UNSET


class MembersHandler(BaseHandler):
    async def get(self, workspace_id: str) -> None:
        assert self.principal
        page, per_page = page_params(self)
        sort, descending = sort_param(self, SORT_FIELDS, "joined_at")
        rows, total = await self.app.members.page(workspace_id, self.principal, page, per_page, sort, descending)
        self.send_json(page_body(self, [views.member(row) for row in rows], total, page, per_page))


class MemberHandler(BaseHandler):
    async def put(self, workspace_id: str, member_id: str) -> None:
        assert self.principal
        # Membership first: an outsider learns nothing, not even which fields are wrong.
        await self.app.workspaces.require_member(workspace_id, self.principal)
        body = self.json_body()
        v = Validator(body)
        role = v.string("role", required="role" in body, max_len=32)
        if role is not None and role not in ASSIGNABLE_ROLES:
            v.fail("role", f"The role field must be one of: {', '.join(ASSIGNABLE_ROLES)}.")
        language: Any = UNSET
        if "preferred_language" in body:
            # null (or "") clears the workspace override: the member reads in their own language again.
            raw = body["preferred_language"]
            language = None if raw is None or raw == "" else v.language()
        v.done()
        member = await self.app.members.update(workspace_id, member_id, self.principal, role=role,
                                               preferred_language=language)
        self.send_json({"data": views.member(member)})

    async def delete(self, workspace_id: str, member_id: str) -> None:
        assert self.principal
        await self.app.members.remove(workspace_id, member_id, self.principal)
        self.no_content()


ROUTES = [
    (r"/workspaces/([^/]+)/members", MembersHandler),
    (r"/workspaces/([^/]+)/members/([^/]+)", MemberHandler),
]
