"""A workspace's glossary: terms never translated (product names, people, in-jokes).

Owns reading and replacing the list (members read, admins write) and its bounds. The masking of
the terms happens in the translation worker, which reads the list with each message.
"""

from __future__ import annotations

from rosetta.errors import Invalid
from rosetta.services.auth import Principal
from rosetta.services.context import Context
from rosetta.services.events import emit
from rosetta.services.workspaces import WorkspaceService
from rosetta.store import translations as store
from rosetta.store.connections import Tx
from rosetta.text import bad_text

MAX_TERMS = 500  # every message of the workspace is matched against all of them
MAX_TERM_CHARS = 100


def check_terms(raw: object) -> list[str]:
    """The terms, trimmed and de-duplicated (first spelling wins, case-insensitively); 422 naming the field."""
    if raw is None:
        raise Invalid.one("terms", "The terms field is required.")
    if not isinstance(raw, list):
        raise Invalid.one("terms", "The terms field must be an array.")
    if len(raw) > MAX_TERMS:
        raise Invalid.one("terms", f"The terms field must not have more than {MAX_TERMS} items.")
    errors: dict[str, list[str]] = {}
    terms: list[str] = []
    seen: set[str] = set()
    for index, term in enumerate(raw):
        field = f"terms.{index}"
        if not isinstance(term, str):
            errors[field] = [f"The {field} field must be a string."]
            continue
        term = term.strip()
        problem = bad_text(term)
        if problem:
            errors[field] = [f"The {field} field {problem}."]
        elif not term:
            errors[field] = [f"The {field} field must be a non-empty string."]
        elif len(term) > MAX_TERM_CHARS:
            errors[field] = [f"The {field} field must not be greater than {MAX_TERM_CHARS} characters."]
        elif term.casefold() not in seen:
            seen.add(term.casefold())
            terms.append(term)
    if errors:
        raise Invalid(errors)
    return terms


class GlossaryService:
    def __init__(self, ctx: Context, workspaces: WorkspaceService) -> None:
        self.ctx = ctx
        self.workspaces = workspaces

    async def get(self, workspace_id: str, principal: Principal) -> list[str]:
        workspace = await self.workspaces.require_member(workspace_id, principal)
        return await store.glossary(self.ctx.db.reader, workspace["id"])

    async def replace(self, workspace_id: str, principal: Principal, raw_terms: object) -> list[str]:
        workspace = await self.workspaces.require_admin(workspace_id, principal)
        terms = check_terms(raw_terms)

        async def unit(tx: Tx) -> None:
            await store.set_glossary(tx, workspace["id"], terms, self.ctx.now())
            await emit(self.ctx, tx, "workspace.glossary_updated", "workspace", workspace["id"],
                       {"workspace_id": workspace["id"], "terms": terms})

        await self.ctx.db.write(unit)
        return terms
