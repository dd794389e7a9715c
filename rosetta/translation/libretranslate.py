"""LibreTranslate (self-hosted): ``POST /translate`` with ``q`` as a list for batches, ``GET /languages``."""

from __future__ import annotations

from typing import Any

from rosetta.translation.base import Provider, ProviderError, primary

# LibreTranslate (Argos) names Traditional Chinese "zt" and Simplified "zh"; every other code is primary.
TRADITIONAL_CHINESE = ("zh-tw", "zh-hk", "zh-mo", "zh-hant")


def libre_code(code: str) -> str:
    lowered = code.lower()
    if lowered in TRADITIONAL_CHINESE or lowered.startswith("zh-hant"):
        return "zt"
    return primary(code)


class LibreTranslate(Provider):
    name = "libretranslate"

    @property
    def base(self) -> str:
        return (self.config.url or "http://localhost:5000").rstrip("/")

    async def translate_batch(self, texts: list[str], source: str, target: str) -> list[str]:
        body: dict[str, Any] = {"q": texts, "source": libre_code(source), "target": libre_code(target),
                                "format": "text"}
        if self.config.api_key:
            body["api_key"] = self.config.api_key
        answer = await self.request_json("POST", f"{self.base}/translate", body)
        translated = answer.get("translatedText") if isinstance(answer, dict) else None
        if isinstance(translated, str) and len(texts) == 1:
            translated = [translated]  # older servers answer a string for a one-element list
        if not isinstance(translated, list) or not all(isinstance(t, str) for t in translated):
            raise ProviderError("libretranslate answered without a translatedText list")
        return translated

    async def languages(self) -> list[dict[str, str]]:
        answer = await self.request_json("GET", f"{self.base}/languages")
        if not isinstance(answer, list):
            raise ProviderError("libretranslate /languages is not a list")
        return [{"code": str(item["code"]), "name": str(item.get("name", item["code"]))}
                for item in answer if isinstance(item, dict) and "code" in item]
