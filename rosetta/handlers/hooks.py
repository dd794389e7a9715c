"""The Slack/Mattermost-compatible incoming hook: ``POST /api/v1/hooks/{secret}``.

The URL is the credential (Mattermost's shape), so tools that only take a URL work: Uptime Kuma,
Grafana, Gitea, apprise's ``mmost://``. The body is Slack's payload as JSON, or as the ``payload``
field of a form post; the answer is ``ok`` in text/plain, as Slack answers.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from rosetta.errors import JSON_ERRORS, Invalid, Malformed
from rosetta.handlers.base import BaseHandler
from rosetta.services import slack_format
from rosetta.services.messages import MAX_CONTENT_CHARS


class SlackHookHandler(BaseHandler):
    public = True

    def _request_summary(self) -> str:
        # The URL is the credential: the access log must never record it.
        return f"{self.request.method} /api/v1/hooks/<secret> ({self.request.remote_ip})"

    def payload(self) -> Any:
        content_type = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        raw = self.body_bytes
        if content_type == "application/x-www-form-urlencoded":
            try:
                fields = parse_qs(raw.decode("utf-8"), keep_blank_values=True)
            except UnicodeDecodeError:
                raise Malformed("The form body is not UTF-8.") from None
            if "payload" not in fields:
                raise Invalid.one("payload", "The payload field is required.")
            raw = fields["payload"][-1].encode("utf-8")
        if not raw.strip():
            raise Malformed()
        try:
            return json.loads(raw)
        except JSON_ERRORS:
            raise Malformed() from None

    async def post(self, secret: str) -> None:
        webhook = await self.app.webhooks.by_secret(secret)
        self.rate_limit("webhook", webhook["id"], self.app.config.limits.api_per_minute, 60)
        parsed = slack_format.parse(self.payload(), MAX_CONTENT_CHARS)
        channel = await self.app.webhooks.target_channel(webhook, reference=parsed.channel)
        avatar = parsed.icon_url if parsed.icon_url and parsed.icon_url.startswith(("http://", "https://")) else None
        await self.app.webhooks.post(webhook, channel, parsed.text, skip_translation=False, name=parsed.username,
                                     avatar_url=avatar)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish("ok")


ROUTES = [
    (r"/hooks/([^/]+)", SlackHookHandler),
]
