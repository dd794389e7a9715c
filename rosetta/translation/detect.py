"""Source-language detection with py3langid (offline; its model ships inside the package).

Owns "which language is this message in". Chat text is full of things that are no language at all
(URLs, mentions, code, emoji) and of very short lines ("ok", "thx"), where any detector guesses;
those are stripped first, and when too few letters remain or the detector is unsure, the author's
own language is the answer — it is right far more often than a guess on six letters.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from functools import cache
from typing import Any

from rosetta.services.views import same_language
from rosetta.translation.mask import BASE_RE

# Below ~12 letters py3langid's answers are close to noise ("ok" → sr 0.01, "thanks" → xh 0.11).
MIN_LETTERS = 12
# Normalised probability under which we trust the author instead: clear sentences score 0.85-0.99,
# short mixed lines 0.3-0.7 (measured on a few dozen chat lines in en/es/fr/de/pt).
MIN_PROBABILITY = 0.7
LETTER_RE = re.compile(r"[^\W\d_]")
# A message's language shows in its first lines; the detector's cost grows with the text (~12 ms for
# a 10,000-character message, on the loop, at send time), its answer does not.
SAMPLE_CHARS = 1000


@cache
def _symbols_to_spaces() -> dict[int, str]:
    """A ``str.translate`` table: every symbol (category S*: emoji, arrows, currency, ...) to a space.

    Built once (~0.2 s over all of Unicode, done by the Detector off the loop); translating a chat line
    through it costs ~5 µs, where asking ``unicodedata.category`` character by character cost ~13-23.
    """
    return {cp: " " for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)).startswith("S")}


def strip_noise(text: str) -> str:
    """The text without URLs, mentions, channel references, code, shortcodes and emoji."""
    # Emoji and other symbols carry no language but skew the byte n-grams.
    return BASE_RE.sub(" ", text).translate(_symbols_to_spaces())


class Detector:
    """One loaded model; building it reads ~5 MB and takes about a second, so do it off the loop."""

    def __init__(self) -> None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier  # imported here: numpy is heavy

        self._identifier: Any = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        _symbols_to_spaces()  # built here, off the loop, not by the first message

    def guess(self, text: str) -> tuple[str | None, float]:
        """``(language, probability)`` for the start of ``text`` after stripping noise; None when too short to tell."""
        cleaned = strip_noise(text[:SAMPLE_CHARS])
        if len(LETTER_RE.findall(cleaned)) < MIN_LETTERS:
            return None, 0.0
        language, probability = self._identifier.classify(cleaned)
        return str(language), float(probability)

    def detect(self, text: str, author_language: str) -> str:
        """The message's source language: the detector's answer when it is sure, else the author's."""
        language, probability = self.guess(text)
        if language is None or probability < MIN_PROBABILITY:
            return author_language
        if same_language(language, author_language):
            return author_language  # keep the author's region ("en-GB"), the detector knows only "en"
        return language
