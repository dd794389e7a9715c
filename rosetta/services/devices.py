"""Push devices: register (the push token is the identity), list one's own, remove.

Owns the device rules: a token seen again — from the same account or another — updates that one
device and moves it to the caller (a phone changed hands or accounts), and whatever was still
queued for its previous owner is dropped so nobody receives someone else's notifications. Only
the owner sees or removes a device (others get 404). Tokens are stored to send, never returned.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from typing import Any

from rosetta.errors import Invalid, NotFound
from rosetta.ids import looks_like_id, new_id, sha256_hex
from rosetta.services.auth import Principal
from rosetta.services.context import Context
from rosetta.services.ssrf import Refused, check_shape
from rosetta.store import devices as device_store
from rosetta.store import push as push_store
from rosetta.store.connections import Tx

PROVIDERS = ("fcm", "expo", "ntfy")
PLATFORMS = ("ios", "android", "web", "desktop", "other")
EXPO_TOKEN_RE = re.compile(r"^Expo(nent)?PushToken\[[^\]\s]{1,200}\]$")

SORT_FIELDS = device_store.SORTABLE  # what GET /me/devices may sort by
MAX_DEVICES_PER_USER = 20  # a person has a few phones and desktops; older tokens are stale


@dataclass(frozen=True)
class Registration:
    platform: str
    provider: str
    push_token: str
    device_name: str | None
    app_version: str | None
    device_id: str | None


def view(row: sqlite3.Row) -> dict[str, Any]:
    return {key: row[key] for key in ("id", "platform", "provider", "device_name", "app_version", "last_used_at",
                                      "created_at")}


def check_token(provider: str, token: str) -> None:
    """The token looks like what ``provider`` issues: 422 ``push_token`` otherwise."""
    if provider == "expo" and not EXPO_TOKEN_RE.match(token):
        raise Invalid.one("push_token", "An Expo push token looks like ExponentPushToken[…].")
    if provider == "ntfy":
        try:
            check_shape(token)
        except Refused as exc:
            raise Invalid.one("push_token", f"A ntfy/UnifiedPush token is its endpoint URL: {exc}.") from None


class DeviceService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def register(self, principal: Principal, reg: Registration) -> sqlite3.Row:
        check_token(reg.provider, reg.push_token)
        token_hash = sha256_hex(reg.push_token)
        new_device_id = new_id()

        async def unit(tx: Tx) -> sqlite3.Row:
            now = self.ctx.now()
            known = await device_store.by_token_hash(tx, token_hash)
            if known is None:
                await device_store.insert(tx, id=new_device_id, user_id=principal.user_id, platform=reg.platform,
                                          provider=reg.provider, token_hash=token_hash, token=reg.push_token,
                                          device_name=reg.device_name, app_version=reg.app_version,
                                          device_id=reg.device_id, now=now)
                device_id = new_device_id
            else:
                device_id = known["id"]
                if known["user_id"] != principal.user_id:
                    await push_store.drop_pending_for_device(tx, device_id)
                await device_store.reassign(tx, device_id, user_id=principal.user_id, platform=reg.platform,
                                            provider=reg.provider, device_name=reg.device_name,
                                            app_version=reg.app_version, hardware_id=reg.device_id, now=now)
            # Bounded: app reinstalls mint new tokens, so the stalest devices make room.
            await device_store.keep_most_recent(tx, principal.user_id, MAX_DEVICES_PER_USER)
            row = await device_store.public_by_id(tx, device_id)
            assert row is not None
            return row

        return await self.ctx.db.write(unit)

    async def remove(self, principal: Principal, device_id: str) -> None:
        if not looks_like_id(device_id):
            raise NotFound()

        async def unit(tx: Tx) -> None:
            if await device_store.owned(tx, device_id.lower(), principal.user_id) is None:
                raise NotFound()
            await device_store.delete(tx, device_id.lower())

        await self.ctx.db.write(unit)

    async def page(self, principal: Principal, *, provider: str | None, sort: str, descending: bool, page: int,
                   per_page: int) -> tuple[list[sqlite3.Row], int]:
        return await device_store.page_for_user(self.ctx.db.reader, principal.user_id, provider=provider, sort=sort,
                                                descending=descending, offset=(page - 1) * per_page, limit=per_page)
