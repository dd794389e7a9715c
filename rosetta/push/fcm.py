"""FCM HTTP v1 through pyfcm, with the endpoint overridable (``push.fcm_endpoint``) for tests and proxies.

pyfcm builds its URL as ``FCM_END_POINT_BASE + "/{project_id}/messages:send"`` inside the
``fcm_end_point`` property, so a subclass overriding that property points it elsewhere while pyfcm
still does the real work: the OAuth2 service-account token exchange (google-auth, against the
``token_uri`` of the credentials file), the v1 payload, and the error mapping. pyfcm is synchronous
(requests), so every call runs in the executor. It sleeps on ``Retry-After`` in that thread; a
dedicated small pool would isolate that, the default executor is accepted for now.
"""

from __future__ import annotations

from typing import Any

import requests
from pyfcm import FCMNotification
from pyfcm.errors import (
    AuthenticationError,
    FCMNotRegisteredError,
    FCMSenderIdMismatchError,
    FCMServerError,
    InvalidDataError,
)

from rosetta.push.base import SEND_TIMEOUT_S, SENT, Notification, Outcome
from rosetta.services.context import Context


class _RosettaFCM(FCMNotification):
    def __init__(self, credentials_file: str, endpoint: str) -> None:
        super().__init__(service_account_file=credentials_file)
        self._endpoint_override = endpoint

    @property
    def fcm_end_point(self) -> str:
        if not self._endpoint_override:
            return super().fcm_end_point
        if self.credentials is None:
            self._initialize_credentials()
        project_id = getattr(self.credentials, "project_id", None) or self._project_id or ""
        return self._endpoint_override.replace("{project_id}", project_id)


class FcmSender:
    def __init__(self, ctx: Context, credentials_file: str, endpoint: str) -> None:
        self.ctx = ctx
        self.client: _RosettaFCM | None = _RosettaFCM(credentials_file, endpoint) if credentials_file else None

    async def send(self, token: str, note: Notification) -> Outcome:
        if self.client is None:
            return Outcome("failed", "FCM is not configured (push.fcm_credentials_file)")
        return await self.ctx.off_loop(self._send_blocking, token, note)

    def _send_blocking(self, token: str, note: Notification) -> Outcome:
        assert self.client is not None
        kwargs: dict[str, Any] = {"fcm_token": token, "notification_title": note.title,
                                  "notification_body": note.body, "data_payload": note.data or None,
                                  "timeout": SEND_TIMEOUT_S}
        try:
            self.client.notify(**kwargs)
        except FCMNotRegisteredError as exc:  # HTTP 404: UNREGISTERED
            return Outcome("gone", f"FCM: {exc}")
        except FCMSenderIdMismatchError as exc:  # the token belongs to another Firebase project for good
            return Outcome("gone", f"FCM: {exc}")
        except InvalidDataError as exc:  # a 400, or the OAuth token exchange failing (pyfcm wraps both)
            text = str(exc)
            if "UNREGISTERED" in text or "registration token" in text:
                return Outcome("gone", f"FCM: {text[:200]}")
            if "INVALID_ARGUMENT" in text:
                return Outcome("failed", f"FCM: {text[:200]}")
            return Outcome("retry", f"FCM: {text[:200]}")
        except (AuthenticationError, FCMServerError, requests.RequestException, OSError) as exc:
            return Outcome("retry", f"FCM: {str(exc)[:200]}")
        return SENT
