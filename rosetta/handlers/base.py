"""The base of every HTTP handler: authentication by default, bounded JSON bodies, one error envelope.

Owns HTTP concerns only: reading the body, finding the credentials, CORS, rate-limit headers and
rendering ``ApiError`` as the contract's JSON. A handler parses, calls a service, shapes the
response. Routes opt out of authentication with ``public = True``; everything else is denied until
a credential resolves to a Principal with the route's ``ability``.
"""

from __future__ import annotations

import json
import logging
import secrets
import traceback
from collections.abc import Callable
from functools import cached_property
from ipaddress import ip_address, ip_network
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

import tornado.httputil
import tornado.web
from tornado.http1connection import HTTP1Connection

from rosetta.errors import (
    JSON_ERRORS,
    ApiError,
    CsrfMismatch,
    Forbidden,
    Malformed,
    NotFound,
    PayloadTooLarge,
    TooManyAttempts,
    Unauthenticated,
)
from rosetta.ratelimit import Verdict
from rosetta.services.auth import Principal

if TYPE_CHECKING:
    from rosetta.app import RosettaApp

log = logging.getLogger("rosetta.http")

JSON_TYPE = "application/json; charset=utf-8"
HTTP_MESSAGES = {
    400: "Bad request.",
    404: "Not found.",
    405: "Method not allowed.",
    413: "The request body is too large.",
}
# Every answer's headers before the route adds its own (CORS comes after, from the request's Origin).
DEFAULT_HEADERS = (
    ("Content-Type", JSON_TYPE),
    ("Cache-Control", "no-cache, private"),
    ("X-Content-Type-Options", "nosniff"),
)
# Query parameters whose value is a credential or a one-time proof (realtime tokens, a verification
# link's signature, an identity provider's code and state): the logs show their names only.
SECRET_QUERY_KEYS = frozenset({"access_token", "guest_token", "signature", "code", "state", "token"})
# Cookie-authenticated requests with these methods must carry X-XSRF-TOKEN (CSRF).
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Credential resolvers tried in order after the bearer token: (handler) -> Principal | None.
Resolver = Callable[["BaseHandler"], Any]


@tornado.web.stream_request_body
class BaseHandler(tornado.web.RequestHandler):
    public = False  # True: no credential needed
    ability: str | None = "*"  # what a token must be allowed to do here; None: any credential will do
    allow_guest = False  # guest tokens are refused unless the route says so
    allow_session = True  # cookie sessions (web sign-in) are accepted unless the route says no
    # A token in the URL (?access_token=, ?guest_token=) only where no header can be set: WebSocket and
    # EventSource. Elsewhere a URL's token ends up in proxies' and browsers' histories.
    credentials_in_query = False

    def initialize(self, app: RosettaApp) -> None:
        self.app = app
        self.principal: Principal | None = None
        self._chunks: list[bytes] = []
        self._received = 0
        self._body_limit = self.body_limit()
        self._body_refused = False  # answered 413 while the body was still arriving (data_received)
        self._set_cors_headers()  # the rest of the defaults were set before initialize(); CORS needs the app

    @cached_property
    def request_id(self) -> str:
        """Names a failed request in the log; drawn only when one fails (urandom is a syscall)."""
        return secrets.token_hex(6)

    def body_limit(self) -> int:
        """The largest body this route accepts, in bytes; upload routes override it (files.max_upload_mb)."""
        return int(self.app.config.server.max_body_mb * 1024 * 1024)

    # Request life cycle --------------------------------------------------------------------------

    def set_default_headers(self) -> None:
        for name, value in DEFAULT_HEADERS:
            self.set_header(name, value)
        if hasattr(self, "app"):  # tornado calls this once before initialize(), and again on errors
            self._set_cors_headers()

    def _set_cors_headers(self) -> None:
        for name, value in cors_headers(self.app.config.server.cors_origins, self.request.headers.get("Origin")):
            self.set_header(name, value)

    async def prepare(self) -> None:
        if self.request.method == "OPTIONS":
            return
        declared = self.request.headers.get("Content-Length")
        length = self._body_limit  # a chunked body may be as long as the route allows
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                raise Malformed("Invalid Content-Length.") from None
            if length > self._body_limit:
                raise PayloadTooLarge()
        connection = self.request.connection
        if isinstance(connection, HTTP1Connection):  # the body is read after prepare(): bound how long it may take
            connection.set_body_timeout(self.app.body_deadline_s(length))
        if self.public:
            return
        self.principal = await self.authenticate()
        refused = refusal(self.principal, self.ability, self.allow_guest)
        if refused is not None:
            raise refused
        assert self.principal is not None
        if self.principal.is_session and self.request.method in STATE_CHANGING:
            self.check_session_xsrf()
        self.rate_limit("api", rate_key(self.principal), self.app.config.limits.api_per_minute, 60)

    def check_session_xsrf(self) -> None:
        """A write authenticated by the session cookie must echo that session's XSRF token, else 419."""
        presented = self.request.headers.get("X-XSRF-TOKEN", "")
        live = getattr(self, "web_session", None)  # set by the session resolver (handlers/auth_web.py)
        if live is None or not self.app.sessions.xsrf_matches(presented, live):
            raise CsrfMismatch()

    def data_received(self, chunk: bytes) -> None:
        self._received += len(chunk)
        if self._received <= self._body_limit:
            self._chunks.append(chunk)
        elif not self._body_refused:
            self._body_refused = True
            # A chunked body (no Content-Length for prepare() to refuse) just crossed the limit: answer 413
            # now instead of reading on to the server-wide limit (the largest upload), and keep nothing.
            self._chunks = []
            if not self._finished:
                self.answer_now(PayloadTooLarge())

    def answer_now(self, error: ApiError) -> None:
        """Refuse while the body is still arriving (from ``data_received``, where raising is not an answer)."""
        self.send_error(error.status, exc_info=(type(error), error, None))

    def refuse_mixed_credentials(self) -> None:
        """401 when a guest token rides with another credential: it is never combined with one (issue 8).

        Every way of authenticating (this class, the realtime handlers' query-string token) asks here first.
        """
        if ((self.request.headers.get("X-Rosetta-Guest-Token") or self.get_query_argument("guest_token", None))
                and (self.request.headers.get("Authorization") or self.get_cookie("rosetta_session")
                     or self.get_query_argument("access_token", None))):
            raise Unauthenticated()

    async def authenticate(self) -> Principal | None:
        """Resolve the request's credential. Bearer first, then the registered resolvers."""
        self.refuse_mixed_credentials()
        token = bearer_token(self.request)
        if token is not None:
            return await self.app.tokens.resolve(token)
        for resolver in self.app.resolvers:
            principal = await resolver(self)
            if principal is not None:
                return principal
        return None

    def _request_summary(self) -> str:
        """Tornado's ``METHOD uri (ip)`` for the logs, with the values of SECRET_QUERY_KEYS left out."""
        return f"{self.request.method} {redacted_uri(self.request)} ({self.request.remote_ip})"

    def options(self, *args: str) -> None:
        self.set_header("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS")
        self.set_header("Access-Control-Allow-Headers",
                        "Authorization, Content-Type, Accept, X-XSRF-TOKEN, X-Rosetta-Guest-Token,"
                        " X-Rosetta-Webhook-Secret, Last-Event-ID")
        self.set_header("Access-Control-Max-Age", "600")
        self.set_status(204)
        self.finish()

    # Input ----------------------------------------------------------------------------------------

    @property
    def body_bytes(self) -> bytes:
        if self._received > self._body_limit:
            raise PayloadTooLarge()
        return b"".join(self._chunks)

    def json_body(self, allow_empty: bool = True) -> dict[str, Any]:
        """The JSON object sent; 400 when it is not JSON or not an object, 413 when too large."""
        return json_object(self.body_bytes, allow_empty)

    def address_key(self) -> str:
        """Whose per-address rate limits a request counts in: the caller's IPv4 address, or its IPv6 /64.

        One subscriber is handed a whole /64 (RFC 6177), so a key per IPv6 address would give one
        machine ~2^64 fresh allowances, and every fresh key takes a slot in the limiter's table.
        """
        return address_key(self.client_address())

    def client_address(self) -> str:
        """The caller's address; ``X-Forwarded-For`` counts only from a configured trusted proxy."""
        peer = self.request.remote_ip or ""
        proxies = self.app.config.server.trusted_proxies
        forwarded = self.request.headers.get("X-Forwarded-For")
        if not forwarded or not proxies or not _in_networks(peer, proxies):
            return peer
        # Walk from the nearest hop back, skipping our own proxies: the first untrusted hop is the client.
        for hop in reversed([part.strip() for part in forwarded.split(",") if part.strip()]):
            if not _in_networks(hop, proxies):
                return hop
        return peer

    def rate_limit(self, bucket: str, key: str, limit: int, window_s: float) -> None:
        """Count one attempt; 429 past ``limit``. Sets ``X-RateLimit-*`` either way."""
        verdict = self.app.limiter.hit(bucket, key, limit, window_s)
        if verdict.limit == 0:
            return
        if not verdict.allowed:
            raise TooManyAttempts(verdict.retry_after_s, verdict.limit)
        # Kept so that an error answer (send_error clears headers) still carries them, as the seed shows.
        self._rate_headers = rate_headers(verdict)
        for name, value in self._rate_headers.items():
            self.set_header(name, value)

    # Output ---------------------------------------------------------------------------------------

    def send_json(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(encode_json(payload))

    def send_encoded(self, body: bytes, etag: str) -> None:
        """A 200 JSON answer encoded (and its ETag computed) ahead of time, e.g. a cached page."""
        self._known_etag = etag
        self.finish(body)

    def compute_etag(self) -> str | None:
        # Tornado hashes every GET body for its ETag; a body encoded ahead of time brings its own.
        known: str | None = getattr(self, "_known_etag", None)
        return known if known is not None else super().compute_etag()

    def no_content(self) -> None:
        self.set_status(204)
        self.clear_header("Content-Type")
        self.finish()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        for name, value in getattr(self, "_rate_headers", {}).items():
            self.set_header(name, value)
        if isinstance(exc, ApiError):
            status, headers, encoded = api_error_answer(exc)
            self.set_status(status)
            for name, value in headers.items():
                self.set_header(name, value)
            self.set_header("Content-Type", JSON_TYPE)
            self.finish(encoded)
            return
        if isinstance(exc, tornado.web.HTTPError) and exc.status_code < 500:
            body = {"message": HTTP_MESSAGES.get(exc.status_code, exc.reason or "Bad request.")}
        elif status_code < 500:
            body = {"message": HTTP_MESSAGES.get(status_code, self._reason)}
        else:
            self.set_status(500)
            body = {"message": "Server Error."}
        self.set_header("Content-Type", JSON_TYPE)
        self.finish(json.dumps(body).encode("utf-8"))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, ApiError) and value.status < 500:
            return
        if isinstance(value, tornado.web.HTTPError) and value.status_code < 500:
            return
        # The request summary, not the URL: routes whose URL carries a credential redact it there.
        log.error("request %s %s failed:\n%s", self.request_id, self._request_summary(),
                  "".join(traceback.format_exception(typ, value, tb)))


class NotFoundHandler(BaseHandler):
    """Every unknown path: 404 in the contract's envelope (no credential needed to learn that)."""

    public = True

    async def prepare(self) -> None:
        await super().prepare()
        raise NotFound()


# Shared with the lean path (handlers/lean.py), which answers some reads without a BaseHandler: what
# follows is the part of the life cycle above that both must do alike.

def json_object(raw: bytes, allow_empty: bool = True) -> dict[str, Any]:
    """A request body as the JSON object it must be: 400 when it is not JSON or not an object."""
    if not raw.strip():
        if allow_empty:
            return {}
        raise Malformed()
    try:
        value = json.loads(raw)
    except JSON_ERRORS:
        raise Malformed() from None
    if not isinstance(value, dict):  # JSON, but not the object every route takes: malformed all the same
        raise Malformed()
    return value


def encode_json(payload: Any) -> bytes:
    """An answer's JSON body: compact, UTF-8 as it is (what ``send_json`` writes)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def api_error_answer(exc: ApiError) -> tuple[int, dict[str, str], bytes]:
    """An ApiError as answered: its status, the headers it adds, and the JSON body (§1's envelopes)."""
    return exc.status, exc.headers, json.dumps(exc.body()).encode("utf-8")


def redacted_uri(request: tornado.httputil.HTTPServerRequest) -> str:
    """The request's path and query, each value of SECRET_QUERY_KEYS replaced by ``***``."""
    if not request.query:
        return request.uri or request.path
    pairs = [pair.split("=", 1) for pair in request.query.split("&")]
    query = "&".join(f"{pair[0]}=***" if len(pair) == 2 and unquote_plus(pair[0]) in SECRET_QUERY_KEYS
                     else "=".join(pair) for pair in pairs)
    return f"{request.path}?{query}"


def bearer_token(request: tornado.httputil.HTTPServerRequest) -> str | None:
    """The token of ``Authorization: Bearer <token>``, or None when the request has no such header."""
    return bearer_of(request.headers.get("Authorization", ""))


def bearer_of(authorization: str) -> str | None:
    """The token of an ``Authorization`` header's value ``Bearer <token>``; None for any other scheme."""
    return authorization[7:].strip() if authorization.lower().startswith("bearer ") else None


def refusal(principal: Principal | None, ability: str | None, allow_guest: bool) -> ApiError | None:
    """Why ``principal`` may not use a route at all (401 or 403), or None when it may."""
    if principal is None:
        return Unauthenticated()
    if principal.kind == "guest" and not allow_guest:
        return Unauthenticated()
    if principal.kind == "user" and ability is not None and not principal.can(ability):
        return Forbidden()
    return None


def rate_key(principal: Principal) -> str:
    """Whose ``api`` rate window a request counts in: the token's, else the session's, else the user's."""
    return principal.token_id or principal.session_id or principal.user_id


def rate_headers(verdict: Verdict) -> dict[str, str]:
    return {"X-RateLimit-Limit": str(verdict.limit), "X-RateLimit-Remaining": str(verdict.remaining)}


def cors_headers(allowed_origins: tuple[str, ...], origin: str | None) -> list[tuple[str, str]]:
    """A configured ``origin`` (the request's Origin) is echoed with credentials allowed; others get ``*``."""
    if origin and origin in allowed_origins:
        return [("Access-Control-Allow-Origin", origin), ("Access-Control-Allow-Credentials", "true"),
                ("Vary", "Origin")]
    return [("Access-Control-Allow-Origin", "*")]


def address_key(address: str) -> str:
    """An IPv4 address as it is; an IPv6 address as its /64 (an IPv4-mapped one as the IPv4 address)."""
    try:
        ip = ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        if ip.ipv4_mapped is not None:  # type: ignore[union-attr]
            return str(ip.ipv4_mapped)  # type: ignore[union-attr]
        return str(ip_network(f"{ip}/64", strict=False))
    return address


def _in_networks(address: str, networks: tuple[str, ...]) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    for network in networks:
        try:
            if ip in ip_network(network, strict=False):
                return True
        except ValueError:
            continue
    return False
