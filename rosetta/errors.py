"""The ApiError family: application code raises these; one ``write_error`` renders them.

Each error knows its status and the JSON envelope of the contract (``{"message", "errors"}``).
Nothing here knows HTTP beyond the status number. ``JSON_ERRORS`` is what parsing untrusted JSON raises.
"""

from __future__ import annotations

from typing import Any

INVALID_MESSAGE = "The given data was invalid."
# What json.loads raises on bytes that are not JSON, whoever sent them (a client, a provider, an identity
# provider): RecursionError too, for "[[[[…" nested past the C stack, which ValueError does not cover.
JSON_ERRORS = (ValueError, UnicodeDecodeError, RecursionError)


class ApiError(Exception):
    status = 500
    message = "Server Error."

    def __init__(self, message: str | None = None, errors: dict[str, list[str]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message or self.message)
        if message is not None:
            self.message = message
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"message": self.message}
        if self.errors:
            payload["errors"] = self.errors
        return payload


class Malformed(ApiError):
    status = 400
    message = "Malformed JSON body."


class BadRequest(ApiError):
    status = 400
    message = "Bad request."


class Unauthenticated(ApiError):
    status = 401
    message = "Unauthenticated."


class Forbidden(ApiError):
    """403; ``code`` adds the domain refusal ``errors.code``."""

    status = 403
    message = "This action is unauthorized."

    def __init__(self, message: str | None = None, code: str | None = None) -> None:
        super().__init__(message, {"code": [code]} if code else None)


class NotFound(ApiError):
    status = 404
    message = "Not found."


class Gone(ApiError):
    status = 410
    message = "Gone."

    def __init__(self, message: str | None = None, code: str | None = None) -> None:
        super().__init__(message, {"code": [code]} if code else None)


class PayloadTooLarge(ApiError):
    status = 413
    message = "The request body is too large."


class CsrfMismatch(ApiError):
    status = 419
    message = "CSRF token mismatch."


class Invalid(ApiError):
    """422 naming every bad field: ``Invalid({"email": ["…"]})`` or ``Invalid.one("email", "…")``."""

    status = 422
    message = INVALID_MESSAGE

    def __init__(self, errors: dict[str, list[str]], message: str | None = None) -> None:
        super().__init__(message, errors)

    @classmethod
    def one(cls, field: str, problem: str) -> Invalid:
        return cls({field: [problem]})


class TooManyAttempts(ApiError):
    status = 429
    message = "Too Many Attempts."

    def __init__(self, retry_after_s: int, limit: int) -> None:
        super().__init__(headers={
            "Retry-After": str(max(1, retry_after_s)),
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": "0",
        })
