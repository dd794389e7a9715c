"""ntfy / UnifiedPush: the device's push token IS its endpoint URL; POST the notification text there.

The body is the readable text (what the ntfy app shows); ``Title`` and ``X-Rosetta-*`` headers carry
the rest. The endpoint is user-supplied, so the call goes through the SSRF guard, with the hosts in
``push.ntfy_allowed_hosts`` allowed even on private addresses (a LAN ntfy). 404/410 mean the
subscription is gone.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

from rosetta.push.base import SEND_TIMEOUT_S, SENT, Notification, Outcome
from rosetta.services.ssrf import Refused, guarded_fetch


class NtfySender:
    def __init__(self, allowed_hosts: Iterable[str]) -> None:
        self.allowed_hosts = tuple(allowed_hosts)

    async def send(self, token: str, note: Notification) -> Outcome:
        # HTTP header values must be latin-1: non-Latin titles travel RFC 2047-encoded, as ntfy accepts.
        title = note.title
        if not title.isascii():
            title = "=?UTF-8?B?" + base64.b64encode(title.encode("utf-8")).decode("ascii") + "?="
        headers = {"Content-Type": "text/plain; charset=utf-8", "Title": title}
        for key, value in note.data.items():
            if value.isascii():
                headers[f"X-Rosetta-{key.replace('_', '-').title()}"] = value
        try:
            fetched = await guarded_fetch(token, method="POST", headers=headers, body=note.body.encode("utf-8"),
                                          allowed_hosts=self.allowed_hosts, timeout_s=SEND_TIMEOUT_S, max_redirects=0)
        except Refused as exc:
            return Outcome("failed", f"refused by the SSRF guard: {exc}")
        except OSError as exc:
            return Outcome("retry", f"network error: {exc}")
        if 200 <= fetched.status < 300:
            return SENT
        if fetched.status in (404, 410):
            return Outcome("gone", f"endpoint answered {fetched.status}")
        if fetched.status == 429 or fetched.status >= 500:
            return Outcome("retry", f"endpoint answered {fetched.status}")
        return Outcome("failed", f"endpoint answered {fetched.status}")

