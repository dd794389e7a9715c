"""Page lists in the contract's shape: Laravel-style ``meta``/``links`` and message cursor pages."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any
from urllib.parse import urlencode
from weakref import WeakKeyDictionary

from rosetta.errors import Invalid
from rosetta.handlers.validate import query_int
from rosetta.ids import looks_like_id

MAX_PER_PAGE = 100


def page_params(handler: Any, default_per_page: int = 20) -> tuple[int, int]:
    """``(page, per_page)`` from the query, bounded: per_page 1..100, page ≥ 1."""
    per_page = query_int(handler.get_query_argument("per_page", None), "per_page", default_per_page, 1, MAX_PER_PAGE)
    page = query_int(handler.get_query_argument("page", None), "page", 1, 1, 1_000_000)
    return page, per_page


def sort_param(handler: Any, allowed: tuple[str, ...], default: str) -> tuple[str, bool]:
    """``(field, descending)`` from ``?sort=field`` or ``?sort=-field``; unknown fields are 422."""
    raw = handler.get_query_argument("sort", None) or default
    descending = raw.startswith("-")
    name = raw.lstrip("-")
    if name not in allowed:
        raise Invalid.one("sort", f"The sort field must be one of: {', '.join(allowed)}.")
    return name, descending


def page_body(handler: Any, items: list[Any], total: int, page: int, per_page: int) -> dict[str, Any]:
    last_page = max(1, math.ceil(total / per_page))
    # server.public_url when set: behind a TLS proxy the request says http://, and Host is the client's to choose.
    public_url = handler.app.config.server.public_url
    origin = public_url.rstrip("/") if public_url else f"{handler.request.protocol}://{handler.request.host}"
    base = f"{origin}{handler.request.path}"
    # Every argument is copied, also ones the route never read (and so never checked): any bytes.
    query = {k: v[-1].decode("utf-8", "replace") for k, v in handler.request.query_arguments.items() if k != "page"}

    def link(number: int) -> str:
        return f"{base}?{urlencode({**query, 'page': number})}"

    return {
        "data": items,
        "meta": {"current_page": page, "per_page": per_page, "total": total, "last_page": last_page},
        "links": {
            "first": link(1),
            "last": link(last_page),
            "prev": link(page - 1) if page > 1 else None,
            "next": link(page + 1) if page < last_page else None,
        },
    }


CURSOR_QUERY = frozenset({"limit", "before", "after"})  # what cursor_params reads


def cursor_params(handler: Any) -> tuple[str | None, str | None, int]:
    """``(before, after, limit)`` for message lists: limit 1..100 (default 50), ids must be ids."""
    limit = query_int(handler.get_query_argument("limit", None), "limit", 50, 1, MAX_PER_PAGE)
    before = handler.get_query_argument("before", None) or None
    after = handler.get_query_argument("after", None) or None
    errors: dict[str, list[str]] = {}
    for name, value in (("before", before), ("after", after)):
        if value is not None and not looks_like_id(value):
            errors[name] = [f"The {name} field must be a message id."]
    if before and after:
        errors["after"] = ["Use either before or after, not both."]
    if errors:
        raise Invalid(errors)
    return (before.lower() if before else None), (after.lower() if after else None), limit


def cursor_body(page: Any) -> dict[str, Any]:
    return {
        "data": page.items,
        "meta": {"per_page": page.per_page, "next_cursor": page.next_cursor, "prev_cursor": page.prev_cursor},
    }


# A cursor page's JSON and ETag, encoded once per page object: the messages service hands the same
# object to every reader of a page nothing has changed since, and encoding 50 messages costs more
# than everything else such a read does. Entries live exactly as long as the service keeps the page.
_ENCODED_PAGES: WeakKeyDictionary[Any, tuple[bytes, str]] = WeakKeyDictionary()


def encoded_cursor_page(page: Any) -> tuple[bytes, str]:
    """``(body, etag)`` of a message cursor page (``cursor_body`` as compact UTF-8 JSON)."""
    found = _ENCODED_PAGES.get(page)
    if found is None:
        body = json.dumps(cursor_body(page), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        found = body, f'"{hashlib.sha1(body, usedforsecurity=False).hexdigest()}"'
        _ENCODED_PAGES[page] = found
    return found
