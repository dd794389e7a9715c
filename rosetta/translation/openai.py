"""Any OpenAI-compatible chat endpoint (Ollama, vLLM, llama.cpp server, OpenAI): ``POST /v1/chat/completions``.

One text per call, deliberately. A JSON-array batch saves per-call overhead, but the small local
models people run (7-8B) regularly merge, split, reorder or drop array items and answer prose
around the JSON; one bad item then fails the whole batch, and we cannot tell which translation is
whose. Per-text calls keep failures to one message, run ``translation.concurrency`` at a time, and
the translation memory makes the many repeated chat lines free anyway.
"""

from __future__ import annotations

from typing import Any

from rosetta.translation.base import Provider, ProviderError

# Languages offered in the picker: an LLM has no /languages endpoint; these are the ones the common
# open models translate acceptably.
LANGUAGES = {
    "ar": "Arabic", "bn": "Bengali", "cs": "Czech", "da": "Danish", "de": "German", "el": "Greek",
    "en": "English", "es": "Spanish", "fa": "Persian", "fi": "Finnish", "fr": "French", "he": "Hebrew",
    "hi": "Hindi", "hu": "Hungarian", "id": "Indonesian", "it": "Italian", "ja": "Japanese", "ko": "Korean",
    "nl": "Dutch", "no": "Norwegian", "pl": "Polish", "pt": "Portuguese", "pt-BR": "Portuguese (Brazil)",
    "ro": "Romanian", "ru": "Russian", "sv": "Swedish", "th": "Thai", "tr": "Turkish", "uk": "Ukrainian",
    "vi": "Vietnamese", "zh": "Chinese (Simplified)", "zh-TW": "Chinese (Traditional)",
}

SYSTEM_PROMPT = (
    "You are a translation engine inside a chat app. Translate the user's message from {source} to {target}. "
    "Reply with ONLY the translated message: no quotes around it, no notes, no explanations, no preamble. "
    'The message contains tags like <x id="0"/>: copy every tag exactly as written, once each, at the '
    "matching place in the translation; never translate, change, add or remove a tag. Keep line breaks. "
    "If the message is already in {target}, reply with it unchanged."
)


def language_name(code: str) -> str:
    return LANGUAGES.get(code) or LANGUAGES.get(code.split("-")[0].lower()) or code


def clean_answer(answer: str, original: str) -> str:
    """Trim what chat models add around a translation: whitespace, and quotes the original did not have."""
    text = answer.strip()
    for left, right in (('"', '"'), ("“", "”"), ("«", "»")):
        if len(text) >= 2 and text[0] == left and text[-1] == right and not original.strip().startswith(left):
            text = text[1:-1].strip()
    return text


class OpenAICompatible(Provider):
    name = "openai"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_size = 1  # see the module docstring

    @property
    def base(self) -> str:
        url = (self.config.url or "http://localhost:11434").rstrip("/")
        return url[: -len("/v1")] if url.endswith("/v1") else url  # accept both ".../v1" and the bare host

    async def translate_batch(self, texts: list[str], source: str, target: str) -> list[str]:
        return [await self._one(text, source, target) for text in texts]

    async def _one(self, text: str, source: str, target: str) -> str:
        body = {
            "model": self.config.model,
            "temperature": 0,
            "stream": False,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT.format(source=language_name(source),
                                                                   target=language_name(target))},
                {"role": "user", "content": text},
            ],
        }
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        answer = await self.request_json("POST", f"{self.base}/v1/chat/completions", body, headers)
        try:
            content = answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise ProviderError("openai answered without choices[0].message.content") from None
        if not isinstance(content, str) or not content.strip():
            raise ProviderError("openai answered an empty translation")
        return clean_answer(content, text)

    async def languages(self) -> list[dict[str, str]]:
        return [{"code": code, "name": name} for code, name in LANGUAGES.items()]
