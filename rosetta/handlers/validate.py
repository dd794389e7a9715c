"""Shape checks for JSON request bodies and query strings, collecting every bad field at once.

Owns "is this input well-formed": types, lengths, formats. Whether it is allowed (unique email,
membership) is the services' question. Strings with NUL bytes or lone surrogates are refused here,
so they never reach SQLite's UTF-8 encoder (which would fail with a 500).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from rosetta.errors import Invalid
from rosetta.ids import looks_like_id
from rosetta.text import bad_text

# No whitespace, controls or the characters a mail header reads as address syntax ("a,b@x" is two
# recipients, "g:b@x;" a group): the stored address must be the one the mail goes to.
_EMAIL_CHAR = r'[^@\s\x00-\x1f\x7f,;:<>()\[\]\\"]'
EMAIL_RE = re.compile(rf"^{_EMAIL_CHAR}{{1,64}}@{_EMAIL_CHAR}+\.{_EMAIL_CHAR}+$")
LANGUAGE_RE = re.compile(r"^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8}){0,2}$")
SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
MISSING = object()


def normalize_language(code: str) -> str:
    """``zh-cn`` → ``zh-CN``; the primary subtag lower case, a region upper case."""
    parts = code.split("-")
    out = [parts[0].lower()]
    for part in parts[1:]:
        out.append(part.upper() if len(part) == 2 else part.title() if len(part) == 4 else part.lower())
    return "-".join(out)


class Validator:
    """``v = Validator(body); name = v.string("name", required=True); v.done()``."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        self.errors: dict[str, list[str]] = {}

    def fail(self, field: str, problem: str) -> None:
        self.errors.setdefault(field, []).append(problem)

    def _get(self, field: str, required: bool) -> Any:
        value = self.data.get(field, MISSING)
        if value is MISSING or value is None:
            if required:
                self.fail(field, f"The {field} field is required.")
            return MISSING
        return value

    def string(self, field: str, required: bool = False, max_len: int = 255, min_len: int = 0,
               strip: bool = True, allow_empty: bool = False) -> str | None:
        value = self._get(field, required)
        if value is MISSING:
            return None
        if not isinstance(value, str):
            self.fail(field, f"The {field} field must be a string.")
            return None
        problem = bad_text(value)
        if problem:
            self.fail(field, f"The {field} field {problem}.")
            return None
        if strip:
            value = value.strip()
        if not value and not allow_empty:
            if required:
                self.fail(field, f"The {field} field is required.")
            return None
        if len(value) < min_len:
            self.fail(field, f"The {field} field must be at least {min_len} characters.")
            return None
        if len(value) > max_len:
            self.fail(field, f"The {field} field must not be greater than {max_len} characters.")
            return None
        return value

    def email(self, field: str = "email", required: bool = True) -> str | None:
        value = self.string(field, required=required, max_len=254)
        if value is None:
            return None
        if not EMAIL_RE.match(value):
            self.fail(field, f"The {field} field must be a valid email address.")
            return None
        return value.lower()

    def password(self, field: str = "password", required: bool = True, confirm: bool = False) -> str | None:
        value = self.string(field, required=required, max_len=10_000, strip=False)
        if value is None:
            return None
        if len(value) < 8:
            self.fail(field, f"The {field} field must be at least 8 characters.")
            return None
        # bcrypt silently ignores bytes past 72: refuse rather than truncate.
        if len(value.encode("utf-8")) > 72:
            self.fail(field, f"The {field} field must not be greater than 72 bytes.")
            return None
        if confirm and self.data.get(f"{field}_confirmation") != value:
            self.fail(field, f"The {field} field confirmation does not match.")
            return None
        return value

    def language(self, field: str = "preferred_language", required: bool = False) -> str | None:
        value = self.string(field, required=required, max_len=35)
        if value is None:
            return None
        if not LANGUAGE_RE.match(value):
            self.fail(field, f"The {field} field must be a language code such as en or zh-CN.")
            return None
        return normalize_language(value)

    def slug(self, field: str = "slug", required: bool = False) -> str | None:
        value = self.string(field, required=required, max_len=64)
        if value is None:
            return None
        if not SLUG_RE.match(value):
            self.fail(field, f"The {field} field may only contain lowercase letters, digits and dashes.")
            return None
        return value

    def boolean(self, field: str, required: bool = False, default: bool | None = None) -> bool | None:
        value = self._get(field, required)
        if value is MISSING:
            return default
        if not isinstance(value, bool):
            self.fail(field, f"The {field} field must be true or false.")
            return default
        return value

    def integer(self, field: str, required: bool = False, lo: int | None = None, hi: int | None = None,
                default: int | None = None) -> int | None:
        value = self._get(field, required)
        if value is MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(field, f"The {field} field must be an integer.")
            return default
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            self.fail(field, f"The {field} field must be between {lo} and {hi}.")
            return default
        return value

    def number(self, field: str, required: bool = False, lo: float | None = None,
               hi: float | None = None) -> float | None:
        value = self._get(field, required)
        if value is MISSING:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            self.fail(field, f"The {field} field must be a number.")
            return None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            self.fail(field, f"The {field} field must be between {lo} and {hi}.")
            return None
        try:
            return float(value)
        except OverflowError:  # an integer beyond any float (hundreds of digits): as far out as 1e300 is
            return math.inf if value > 0 else -math.inf

    def entity_id(self, field: str, required: bool = False) -> str | None:
        value = self.string(field, required=required, max_len=64)
        if value is None:
            return None
        if not looks_like_id(value):
            self.fail(field, f"The selected {field} is invalid.")
            return None
        return value.lower()

    def id_list(self, field: str, max_items: int = 20) -> list[str]:
        value = self._get(field, False)
        if value is MISSING:
            return []
        if not isinstance(value, list) or len(value) > max_items:
            self.fail(field, f"The {field} field must be a list of at most {max_items} ids.")
            return []
        out: list[str] = []
        for index, item in enumerate(value):
            if not looks_like_id(item):
                # Under the list's own key, as every other refusal of an id in it (the contract's
                # errors.attachment_ids); the message says which one.
                self.fail(field, f"The selected {field}.{index} is invalid.")
            elif item.lower() not in out:
                out.append(item.lower())
        return out

    def string_list(self, field: str, max_items: int = 100, max_len: int = 100,
                    required: bool = False) -> list[str] | None:
        value = self._get(field, required)
        if value is MISSING:
            return None
        if not isinstance(value, list) or len(value) > max_items:
            self.fail(field, f"The {field} field must be a list of at most {max_items} strings.")
            return None
        out: list[str] = []
        for index, item in enumerate(value):
            if not isinstance(item, str) or bad_text(item) or not item.strip() or len(item) > max_len:
                self.fail(f"{field}.{index}", f"The {field}.{index} field must be a non-empty string "
                                              f"of at most {max_len} characters.")
            else:
                out.append(item.strip())
        return out

    def done(self) -> None:
        if self.errors:
            raise Invalid(self.errors)


def query_int(raw: str | None, field: str, default: int, lo: int, hi: int) -> int:
    """A bounded integer query parameter; out of range or not a number is 422 naming it."""
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Invalid.one(field, f"The {field} field must be an integer.") from None
    if not lo <= value <= hi:
        raise Invalid.one(field, f"The {field} field must be between {lo} and {hi}.")
    return value
