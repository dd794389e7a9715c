"""The provider interface: translate a batch of texts from one language to another; list languages.

Owns talking HTTP to a translation engine: per-call timeout, bounded concurrency (one semaphore per
provider, ``translation.concurrency``), batches of at most ``translation.batch_size`` texts. It knows
nothing of messages, masking or the queue; a failure of any kind is a ``ProviderError``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from rosetta.config import TranslationConfig
from rosetta.errors import JSON_ERRORS
from rosetta.text import storable
from rosetta.translation.keepalive import BadAnswer, KeepAliveClient


class ProviderError(Exception):
    """The engine did not give a usable answer (unreachable, timeout, non-2xx, wrong shape)."""


class Provider:
    """Base of every provider. ``translate`` splits into batches and bounds concurrency."""

    name = "none"

    def __init__(self, config: TranslationConfig) -> None:
        self.config = config
        self.batch_size = config.batch_size
        self._semaphore = asyncio.Semaphore(config.concurrency)
        self._http: KeepAliveClient | None = None
        self.calls = 0  # engine calls made, for the benchmark and `doctor`

    @property
    def enabled(self) -> bool:
        return True

    @property
    def base(self) -> str:
        """The engine's base URL: the configured one, else the engine's usual address."""
        return ""

    async def translate(self, texts: list[str], source: str, target: str) -> list[str]:
        """``texts`` translated from ``source`` to ``target``, in order; ProviderError on any failure."""
        if not texts:
            return []
        chunks = [texts[i:i + self.batch_size] for i in range(0, len(texts), self.batch_size)]
        results = await asyncio.gather(*(self._bounded(chunk, source, target) for chunk in chunks))
        out = [storable(text) for chunk in results for text in chunk]  # an engine's answer is shown as it comes
        if len(out) != len(texts):
            raise ProviderError(f"{self.name} answered {len(out)} texts for {len(texts)}")
        return out

    async def _bounded(self, chunk: list[str], source: str, target: str) -> list[str]:
        async with self._semaphore:
            self.calls += 1
            result = await self.translate_batch(chunk, source, target)
        if len(result) != len(chunk):
            raise ProviderError(f"{self.name} answered {len(result)} texts for {len(chunk)}")
        return result

    async def translate_batch(self, texts: list[str], source: str, target: str) -> list[str]:
        raise ProviderError("translation is off (translation.provider = none)")

    async def languages(self) -> list[dict[str, str]]:
        """Target languages the engine offers: ``[{"code", "name"}]``."""
        return []

    # HTTP -----------------------------------------------------------------------------------------

    @property
    def http(self) -> KeepAliveClient:
        if self._http is None:
            # Idle connections kept: one per call the semaphore lets run at once, plus the languages call.
            self._http = KeepAliveClient(max_idle=self.config.concurrency + 1)
        return self._http

    async def request_json(self, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
                           raw_body: bytes | None = None) -> Any:
        """One call with the configured timeout; the decoded JSON answer, or ProviderError."""
        all_headers = {"Accept": "application/json", **(headers or {})}
        payload = raw_body
        if body is not None:
            payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
            all_headers.setdefault("Content-Type", "application/json")
        try:
            answer = await self.http.fetch(method, url, all_headers, payload, self.config.timeout_s)
        except TimeoutError:
            raise ProviderError(f"{self.name} {url}: no answer within {self.config.timeout_s:g} s") from None
        except (OSError, BadAnswer) as exc:
            raise ProviderError(f"{self.name} {url} unreachable: {exc}") from None
        if not 200 <= answer.code < 300:
            detail = answer.body[:200].decode("utf-8", "replace")
            raise ProviderError(f"{self.name} {url} answered {answer.code} {detail}".strip())
        try:
            return json.loads(answer.body)
        except JSON_ERRORS:
            raise ProviderError(f"{self.name} {url} answered something that is not JSON") from None

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None


class NoProvider(Provider):
    """``translation.provider = none``: nothing is queued, readers of other languages see ``skipped``."""

    @property
    def enabled(self) -> bool:
        return False


def build_provider(config: TranslationConfig) -> Provider:
    """The configured provider (imports are local: each module is small, none is needed with ``none``)."""
    if config.provider == "libretranslate":
        from rosetta.translation.libretranslate import LibreTranslate

        return LibreTranslate(config)
    if config.provider == "deepl":
        from rosetta.translation.deepl import DeepL

        return DeepL(config)
    if config.provider == "openai":
        from rosetta.translation.openai import OpenAICompatible

        return OpenAICompatible(config)
    return NoProvider(config)


def primary(code: str) -> str:
    """``pt-BR`` → ``pt``."""
    return code.split("-")[0].lower()
