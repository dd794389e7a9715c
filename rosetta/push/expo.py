"""Expo push: POST the Expo push API (``push.expo_url``) one message, read its ticket.

A ticket ``{"status": "error", "details": {"error": "DeviceNotRegistered"}}`` means the token is dead.
"""

from __future__ import annotations

import json

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from rosetta.errors import JSON_ERRORS
from rosetta.push.base import SEND_TIMEOUT_S, SENT, Notification, Outcome


class ExpoSender:
    def __init__(self, url: str) -> None:
        self.url = url

    async def send(self, token: str, note: Notification) -> Outcome:
        payload = [{"to": token, "title": note.title, "body": note.body, "data": note.data, "sound": "default"}]
        request = HTTPRequest(self.url, method="POST", body=json.dumps(payload, ensure_ascii=False).encode(),
                              headers={"Content-Type": "application/json", "Accept": "application/json"},
                              request_timeout=SEND_TIMEOUT_S, connect_timeout=SEND_TIMEOUT_S)
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)  # the loop's shared client
        except OSError as exc:
            return Outcome("retry", f"network error: {exc}")
        if response.code == 599 or response.code >= 500 or response.code == 429:
            return Outcome("retry", f"Expo answered {response.code}")
        try:
            document = json.loads(response.body or b"{}")
        except JSON_ERRORS:
            return Outcome("retry", "Expo answered something that is not JSON")
        if response.code >= 400:
            return Outcome("failed", f"Expo refused the request ({response.code}): {str(document)[:200]}")
        tickets = document.get("data") if isinstance(document, dict) else None
        ticket = tickets[0] if isinstance(tickets, list) and tickets else tickets
        if not isinstance(ticket, dict):
            return Outcome("retry", "Expo answered without a ticket")
        if ticket.get("status") == "ok":
            return SENT
        details = ticket.get("details") if isinstance(ticket.get("details"), dict) else {}
        error = str(details.get("error") or ticket.get("message") or "unknown error")
        if error == "DeviceNotRegistered":
            return Outcome("gone", error)
        if error in ("MessageRateExceeded",):
            return Outcome("retry", error)
        return Outcome("failed", error)
