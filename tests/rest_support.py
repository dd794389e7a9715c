"""Helpers for the core REST tests: a workspace with one user per role, member lookup, the event log."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rosetta.store import events as event_store
from tests.support import Api, Server, User, register, workspace_with


@dataclass
class Team:
    workspace: dict[str, Any]
    owner: User
    admin: User
    member: User
    outsider: User

    @property
    def id(self) -> str:
        return self.workspace["id"]

    @property
    def general(self) -> dict[str, Any]:
        return self.workspace["general"]

    def role(self, name: str) -> User:
        return getattr(self, name)


async def member_id(api: Api, workspace_id: str, user: User, token: str) -> str:
    listed = await api.get(f"/workspaces/{workspace_id}/members?per_page=100", token=token)
    assert listed.status == 200, listed
    return next(m["id"] for m in listed.json["data"] if m["user"]["id"] == user.id)


async def make_team(api: Api, *extra: User) -> Team:
    """Owner Olga, admin Adam, member Mia, and Otto who is in no workspace of theirs."""
    owner = await register(api, "Olga")
    admin = await register(api, "Adam", "de")
    member = await register(api, "Mia", "fr")
    outsider = await register(api, "Otto")
    workspace = await workspace_with(api, owner, admin, member, *extra)
    admin_member = await member_id(api, workspace["id"], admin, owner.token)
    promoted = await api.put(f"/workspaces/{workspace['id']}/members/{admin_member}", {"role": "admin"},
                             token=owner.token)
    assert promoted.status == 200, promoted
    return Team(workspace, owner, admin, member, outsider)


async def events(server: Server, name: str | None = None) -> list[dict[str, Any]]:
    """Every event in the durable log (optionally one name), payload decoded."""
    assert server.app is not None
    rows = await event_store.after(server.app.db.reader, 0, 10_000)
    out = [{"name": r["name"], "audience_kind": r["audience_kind"], "audience_id": r["audience_id"],
            "payload": json.loads(r["payload"])} for r in rows]
    return [e for e in out if name is None or e["name"] == name]
