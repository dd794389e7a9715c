"""DeepL: ``POST /v2/translate`` (JSON, ``Authorization: DeepL-Auth-Key``), ``GET /v2/languages?type=target``.

Free keys end in ``:fx`` and live on api-free.deepl.com; pro keys on api.deepl.com; ``translation.url``
overrides both (tests, proxies). Masked texts are sent with ``tag_handling=xml`` so DeepL keeps our
``<x id="N"/>`` placeholders where they belong; the text around them is XML-escaped for that.
"""

from __future__ import annotations

import re
from typing import Any
from xml.sax.saxutils import escape, unescape

from rosetta.translation.base import Provider, ProviderError, primary
from rosetta.translation.mask import PLACEHOLDER_RE

FREE_URL = "https://api-free.deepl.com"
PRO_URL = "https://api.deepl.com"
# DeepL wants a variant for some targets ("EN" and "PT" alone are deprecated as targets).
TARGETS = {
    "en": "EN-US", "en-us": "EN-US", "en-gb": "EN-GB",
    "pt": "PT-PT", "pt-pt": "PT-PT", "pt-br": "PT-BR",
    "zh": "ZH-HANS", "zh-cn": "ZH-HANS", "zh-hans": "ZH-HANS", "zh-sg": "ZH-HANS",
    "zh-tw": "ZH-HANT", "zh-hk": "ZH-HANT", "zh-hant": "ZH-HANT",
    "es-419": "ES-419",
}
_SPLIT_RE = re.compile(f"({PLACEHOLDER_RE.pattern})")


def deepl_target(code: str) -> str:
    return TARGETS.get(code.lower(), primary(code).upper())


def deepl_source(code: str) -> str:
    return primary(code).upper()  # source languages carry no variant


def our_code(deepl: str) -> str:
    """``EN-US`` → ``en-US``, ``ZH-HANS`` → ``zh-Hans``, ``DE`` → ``de``."""
    first, _, rest = deepl.partition("-")
    if not rest:
        return first.lower()
    return f"{first.lower()}-{rest.title() if len(rest) == 4 else rest.upper()}"


def to_xml(text: str) -> str:
    """Escape the text between placeholders; the placeholders stay tags."""
    parts = _SPLIT_RE.split(text)
    # split with two groups: [text, tag, number, text, tag, number, ..., text]
    out = []
    for index, part in enumerate(parts):
        kind = index % 3
        if kind == 0:
            out.append(escape(part))
        elif kind == 1:
            out.append(part)
    return "".join(out)


def from_xml(text: str) -> str:
    return unescape(text, {"&quot;": '"', "&apos;": "'"})


class DeepL(Provider):
    name = "deepl"

    @property
    def base(self) -> str:
        if self.config.url:
            return self.config.url.rstrip("/")
        return FREE_URL if self.config.api_key.endswith(":fx") else PRO_URL

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"DeepL-Auth-Key {self.config.api_key}"}

    async def translate_batch(self, texts: list[str], source: str, target: str) -> list[str]:
        body: dict[str, Any] = {"text": [to_xml(t) for t in texts], "source_lang": deepl_source(source),
                                "target_lang": deepl_target(target), "tag_handling": "xml"}
        answer = await self.request_json("POST", f"{self.base}/v2/translate", body, self.headers)
        items = answer.get("translations") if isinstance(answer, dict) else None
        if not isinstance(items, list) or not all(isinstance(i, dict) and isinstance(i.get("text"), str)
                                                  for i in items):
            raise ProviderError("deepl answered without a translations list")
        return [from_xml(item["text"]) for item in items]

    async def languages(self) -> list[dict[str, str]]:
        answer = await self.request_json("GET", f"{self.base}/v2/languages?type=target", headers=self.headers)
        if not isinstance(answer, list):
            raise ProviderError("deepl /v2/languages is not a list")
        return [{"code": our_code(str(item["language"])), "name": str(item.get("name", item["language"]))}
                for item in answer if isinstance(item, dict) and "language" in item]
