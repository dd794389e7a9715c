"""The SSRF guard: every call to a URL a user or admin typed goes through ``guarded_fetch``.

Owns "may the server talk to this address": the host is resolved once, every address it resolves
to is checked (loopback, private, link-local, multicast, reserved, unspecified, cloud metadata, and
IPv4 hidden inside IPv6 such as ``::ffff:127.0.0.1``), and the connection goes to the very address
that was checked (no DNS rebinding between check and connect). Redirects are never followed by the
HTTP client: each hop is re-checked here, at most ``max_redirects``. Hosts an admin lists in config
skip the address check (a LAN ntfy, a receiver on loopback in tests) but are still resolved once.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from urllib.parse import urljoin, urlsplit

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.netutil import DefaultExecutorResolver, OverrideResolver
from tornado.simple_httpclient import SimpleAsyncHTTPClient

METADATA = ip_address("169.254.169.254")
NAT64 = ip_network("64:ff9b::/96")
REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 3
# A receiver's answer is only logged (first bytes) and never parsed beyond JSON status replies: 256 KiB.
MAX_RESPONSE_BYTES = 256 * 1024


class _AnyCaseHost(dict):
    """The override mapping, looked up case-insensitively: Tornado asks by the host as written in the
    URL ("EVIL.example"), the guard checked its lowercase form; a miss would resolve the name again."""

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and dict.__contains__(self, key.lower())

    def __getitem__(self, key: str) -> str:
        return dict.__getitem__(self, key.lower())


class Refused(Exception):
    """The URL points somewhere the server must not connect to (or is not a URL at all)."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    address: str  # the checked address the connection must use


@dataclass(frozen=True)
class Fetched:
    status: int
    body: bytes
    url: str  # the final URL after redirects


def forbidden_reason(address: IPv4Address | IPv6Address) -> str | None:
    """Why the server must not connect to ``address``, or None when it is a public address."""
    inner: IPv4Address | IPv6Address = address
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:  # ::ffff:127.0.0.1 reaches 127.0.0.1
            inner = address.ipv4_mapped
        elif address in NAT64:  # 64:ff9b::a9fe:a9fe reaches 169.254.169.254 through a NAT64 gateway
            inner = IPv4Address(int(address) & 0xFFFFFFFF)
        elif address.sixtofour is not None:
            inner = address.sixtofour
    if inner == METADATA:
        return "cloud metadata address"
    for reason, hit in (("loopback", inner.is_loopback), ("unspecified", inner.is_unspecified),
                        ("link-local", inner.is_link_local), ("multicast", inner.is_multicast),
                        ("reserved", inner.is_reserved), ("private", inner.is_private)):
        if hit:
            return f"{reason} address"
    if not inner.is_global:
        return "non-public address"  # shared address space 100.64/10, benchmarking ranges, …
    return None


def check_shape(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of an http(s) URL; Refused when it is anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise Refused("not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused("only http and https URLs with a host are allowed")
    if parts.username or parts.password:
        raise Refused("credentials in the URL are not allowed")
    return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)


def literal_refusal(url: str, allowed_hosts: Iterable[str]) -> str | None:
    """Cheap check without DNS (for validation at create time): why the URL is refused, or None."""
    try:
        _, host, _ = check_shape(url)
    except Refused as exc:
        return str(exc)
    if host in {h.lower() for h in allowed_hosts}:
        return None
    try:
        return forbidden_reason(ip_address(host))
    except ValueError:
        return None  # a name: checked when it is resolved at send time


async def resolve_checked(url: str, allowed_hosts: Iterable[str]) -> Target:
    """Resolve the URL's host once and check every address; the Target carries the one to connect to."""
    scheme, host, port = check_shape(url)
    allowed = host in {h.lower() for h in allowed_hosts}
    try:
        addresses = [ip_address(host)]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise Refused(f"cannot resolve {host}: {exc}") from None
        addresses = [ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses:
        raise Refused(f"{host} has no address")
    if not allowed:
        for address in addresses:
            reason = forbidden_reason(address)
            if reason:
                raise Refused(f"{host} resolves to {address} ({reason})")
    addresses.sort(key=lambda a: a.version)  # IPv4 first: loopback receivers usually bind 127.0.0.1
    return Target(scheme, host, port, str(addresses[0]))


async def guarded_fetch(url: str, *, method: str = "POST", headers: Mapping[str, str] | None = None,
                        body: bytes | None = None, allowed_hosts: Iterable[str] = (), timeout_s: float = 10.0,
                        max_redirects: int = MAX_REDIRECTS, max_bytes: int = MAX_RESPONSE_BYTES) -> Fetched:
    """One HTTP call under the guard; Refused for a forbidden hop, OSError/HTTP errors for network trouble.

    Any HTTP status is returned (the caller decides what a 500 means); only a redirect is acted on.
    """
    allowed = tuple(allowed_hosts)
    current = url
    for _ in range(max_redirects + 1):
        target = await resolve_checked(current, allowed)
        # Connect to the checked address; TLS still verifies the certificate against the host name.
        pinned = _AnyCaseHost({target.host: target.address})
        resolver = OverrideResolver(resolver=DefaultExecutorResolver(), mapping=pinned)
        client = SimpleAsyncHTTPClient(force_instance=True, resolver=resolver, max_body_size=max_bytes,
                                       max_buffer_size=max_bytes)
        try:
            request = HTTPRequest(current, method=method, headers=dict(headers or {}),
                                  body=body if method in ("POST", "PUT", "PATCH") else None,
                                  follow_redirects=False, connect_timeout=timeout_s, request_timeout=timeout_s,
                                  allow_nonstandard_methods=True)
            try:
                response = await client.fetch(request, raise_error=False)
            except HTTPClientError as exc:  # e.g. the body exceeded max_bytes
                raise OSError(f"HTTP error: {exc}") from None
        finally:
            client.close()
        if response.code == 599:
            raise OSError(str(response.error) if response.error else "connection failed")
        location = response.headers.get("Location")
        if response.code in REDIRECTS and location:
            current = urljoin(current, location)
            if response.code in (301, 302, 303):  # what browsers do: the next hop is a GET without body
                method, body = "GET", None
            continue
        return Fetched(response.code, response.body or b"", current)
    raise Refused(f"more than {max_redirects} redirects")
