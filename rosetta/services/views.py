"""Resource shapes of the contract (spec §3), built from rows: the same view for REST and realtime.

Owns how a row looks to a reader; never queries, never writes. The message view is computed per
reader language (spec §6): ``display_*`` and ``translation_status`` depend on who reads.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Mapping
from typing import Any

Row = sqlite3.Row | Mapping[str, Any]


def _bool(value: Any) -> bool:
    return bool(value)


def user_self(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "email": row["email"],
        "preferred_language": row["preferred_language"],
        "avatar_url": row["avatar_url"],
        "email_verified_at": row["email_verified_at"],
        "is_active": _bool(row["is_active"]),
        "last_login_at": row["last_login_at"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def user_public(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "avatar_url": row["avatar_url"],
        "preferred_language": row["preferred_language"],
    }


def workspace(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "slug": row["slug"],
        "owner_id": row["owner_id"],
        "has_password": _bool(row["has_password"]),
        "member_count": row["member_count"],
        "my_role": row["my_role"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def channel(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "workspace_id": row["workspace_id"],
        "name": row["name"],
        "slug": row["slug"],
        "kind": row["kind"],
        "has_password": _bool(row["has_password"]),
        "is_member": _bool(row["is_member"]),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


@functools.lru_cache(maxsize=4096)  # called once per message per reader: a page of 50 asked it 50 times
def same_language(a: str, b: str) -> bool:
    """``en`` reads ``en-US`` as its own language; Chinese scripts and explicit regions differ."""
    a, b = a.lower(), b.lower()
    if a == b:
        return True
    pa, pb = a.split("-")[0], b.split("-")[0]
    if pa != pb or pa == "zh":
        return False
    return "-" not in a or "-" not in b


def message(row: Row, reader_language: str, translation: Mapping[str, Any] | None = None,
            attachments: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The message as a reader of ``reader_language`` sees it.

    ``translation`` is that reader language's translation state, ``{"status", "content"}``, or None
    when no translation exists or was asked for.
    """
    deleted = row["deleted_at"] is not None
    original = "" if deleted else row["original_content"]
    source = row["source_language"]
    display_content, display_language, display_source = original, source, "original"
    if deleted:
        status = "not_needed"
    elif row["skip_translation"]:
        status = "skipped"
    elif same_language(reader_language, source):
        status = "not_needed"
    elif translation is None:
        status = "skipped"
    else:
        status = translation["status"]
        if status == "completed" and translation.get("content") is not None:
            display_content, display_language, display_source = translation["content"], reader_language, "translated"
    return {
        "id": row["id"],
        "workspace_id": row["workspace_id"],
        "channel_id": row["channel_id"],
        "conversation_id": row["conversation_id"],
        "author": {
            "id": row["author_id"],
            "name": row["author_display_name"],
            "avatar_url": row["author_display_avatar"],
            "kind": row["author_kind"],
        },
        "original_content": original,
        "source_language": source,
        "display_content": display_content,
        "display_language": display_language,
        "display_source": display_source,
        "translation_status": status,
        "attachments": attachments or [],
        "parent_message_id": row["parent_message_id"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "deleted_at": row["deleted_at"],
    }


def member(row: Row) -> dict[str, Any]:
    """A workspace member (row from store.workspaces.MEMBER_SELECT)."""
    return {
        "id": row["id"],
        "workspace_id": row["workspace_id"],
        "user": {"id": row["user_id"], "name": row["user_name"], "avatar_url": row["user_avatar_url"]},
        "role": row["role"],
        "preferred_language": row["preferred_language"],
        "joined_at": row["joined_at"],
    }


def invite(row: Row, url: str) -> dict[str, Any]:
    return {
        "id": row["id"],
        "workspace_id": row["workspace_id"],
        "code": row["code"],
        "url": url,
        "expires_at": row["expires_at"],
        "max_uses": row["max_uses"],
        "uses": row["uses"],
        "created_by": row["created_by"],
        "created_at": row["created_at"],
    }


def invite_preview(row: Row) -> dict[str, Any]:
    """What anyone holding the link may see, signed in or not."""
    return {
        "workspace": {"name": row["workspace_name"], "slug": row["workspace_slug"],
                      "member_count": row["member_count"]},
        "inviter": {"name": row["inviter_name"]},
        "expires_at": row["expires_at"],
    }


def direct_conversation(row: Row, participants: list[Row], viewer_id: str) -> dict[str, Any]:
    people = [user_public(p) for p in participants]
    other = next((p for p in people if p["id"] != viewer_id), None)
    return {
        "id": row["id"],
        "participants": people,
        "other_user": other,
        "last_message_at": row["last_message_at"],
        "created_at": row["created_at"],
    }
