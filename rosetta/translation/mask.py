"""Masking: what a translation provider must never change is swapped for placeholders and put back after.

Pure functions, no I/O. Protected: fenced code blocks, inline code spans, URLs, e-mail addresses,
@mentions, #channel references, emoji shortcodes (``:smile:``) and emoji, the workspace glossary terms, and any
text in the message that already looks like a placeholder (so a user cannot confuse the restore).

Placeholder choice: ``<x id="N"/>``, an empty XML element. DeepL's ``tag_handling=xml`` guarantees
to keep tags in place (that is what it is for), LLMs keep markup they are told to keep far more
reliably than private-use characters, and LibreTranslate/Argos copies ASCII markup through, though
sometimes with spaces inserted (``< x id = "0" / >``). Brackets like ``⟦0⟧`` are rare in training
data and NMT vocabularies turn them into ``⁇``. So the restore is tolerant of whitespace inside the
tag but strict about the set: every placeholder exactly once, or ``MaskError`` — a failed
translation is better than a message with a lost URL or a doubled mention.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property, lru_cache

PLACEHOLDER = '<x id="{}"/>'
# Tolerant: providers add spaces, drop the quotes or the slash, or change case.
PLACEHOLDER_RE = re.compile(r'<\s*[xX]\s+[iI][dD]\s*=\s*["\u201c\u201d\']?\s*(\d+)\s*["\u201c\u201d\']?\s*/?\s*>')
# Letters outside placeholders: a text without any has nothing to translate.
LETTER_RE = re.compile(r"[^\W\d_]")

_PATTERNS = [
    r"```.*?(?:```|\Z)",  # fenced block (an unclosed fence protects the rest of the message)
    r"`[^`\n]+`",  # inline code span
    PLACEHOLDER_RE.pattern,  # text that already looks like a placeholder
    r"\b(?:https?|ftp)://[^\s<>\"]*[^\s<>\"'.,;:!?)\]}]",  # URL, without trailing punctuation
    r"\bwww\.[^\s<>\"]*[^\s<>\"'.,;:!?)\]}]",
    # E-mail address (before mentions: ana@x.org is not @x). It starts where a run of address characters
    # starts: tried from every position inside a run too, the local part re-scanned the rest of the run
    # each time, so one 10,000-character word (a pasted hash or base64 blob) cost 0.75 s of the loop
    # to mask, and as much to detect its language at send time. A match found from inside a run would
    # have been found from the run's start anyway (leftmost wins), so the masks are the same.
    r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+",
    r"(?<![\w@])@[\w][\w.-]*[\w]|(?<![\w@])@\w",  # @mention
    r"(?<![\w#&])#[\w][\w-]*",  # #channel reference
    r"(?<![\w:]):[a-z0-9_+-]+:(?![\w:])",  # emoji shortcode
    # Emoji runs (with skin tones, VS16 and ZWJ sequences): NMT vocabularies often lack them and emit "⁇".
    r"(?:[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF](?:[\U0001F3FB-\U0001F3FF\uFE0F]"
    r"|\u200D[\U0001F000-\U0001FAFF\u2600-\u27BF])*)+",
]
BASE_RE = re.compile("|".join(f"(?:{p})" for p in _PATTERNS), re.DOTALL)


class MaskError(Exception):
    """The provider lost, duplicated or invented a placeholder: the translation cannot be trusted."""


@dataclass(frozen=True)
class Masked:
    text: str  # what the provider sees
    pieces: tuple[str, ...]  # pieces[N] is what placeholder N stands for

    @cached_property  # a message's Masked is shared by all its reader languages' jobs
    def has_words(self) -> bool:
        """Whether anything is left to translate once placeholders are set aside."""
        return LETTER_RE.search(PLACEHOLDER_RE.sub("", self.text)) is not None


@lru_cache(maxsize=64)  # a workspace's glossary is the same for each of its messages until an admin edits it
def _pattern(glossary: tuple[str, ...]) -> re.Pattern[str]:
    cleaned = {t.strip() for t in glossary if t.strip()}
    if not cleaned:
        return BASE_RE
    # Whole words only ("Go" must not protect the "go" in "good"), any case, restored as written.
    # After the base patterns: alternation is leftmost-first, so a term inside a URL stays in the URL.
    return re.compile(rf"{BASE_RE.pattern}|(?<!\w)(?i:{_trie(cleaned)})(?!\w)", re.DOTALL)


def _trie(terms: Iterable[str]) -> str:
    """One pattern for many terms, shaped as their trie ("go", "good", "gone" → ``go(?:(?:ne|od))?``).

    At each word start the engine follows one path instead of trying every term in turn: with the
    500 terms a glossary may hold, a plain alternation cost 1.3-2 ms to mask a chat line and 150-240 ms
    a 10,000-character message, on the worker's loop; the trie 0.05 and 5-7 ms. Each branch ends as
    late as it can (greedy ``?``), so the longest term that matches wins, as with longest-first.
    """
    root: dict[str, dict] = {}
    for term in terms:
        node = root
        for char in term:
            lower = char.lower()
            node = node.setdefault(lower if len(lower) == 1 else char, {})  # "İ" lowers to two characters
        node[""] = {}  # a term ends here

    def pattern(node: dict[str, dict]) -> str:
        branches = [re.escape(char) + pattern(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else f"(?:{'|'.join(branches)})"
        return f"(?:{body})?" if "" in node else body

    return pattern(root)


def mask(text: str, glossary: Iterable[str] = ()) -> Masked:
    """Replace every protected piece of ``text`` with a numbered placeholder."""
    pieces: list[str] = []

    def swap(match: re.Match[str]) -> str:
        pieces.append(match.group(0))
        return PLACEHOLDER.format(len(pieces) - 1)

    return Masked(_pattern(tuple(glossary)).sub(swap, text), tuple(pieces))


def unmask(translated: str, masked: Masked) -> str:
    """Put the pieces back into ``translated``; ``MaskError`` unless each placeholder is there exactly once."""
    seen: list[int] = []

    def restore(match: re.Match[str]) -> str:
        number = int(match.group(1))
        if number >= len(masked.pieces):
            raise MaskError(f"unknown placeholder {number}")
        seen.append(number)
        return masked.pieces[number]

    restored = PLACEHOLDER_RE.sub(restore, translated)
    if sorted(seen) != list(range(len(masked.pieces))):
        missing = sorted(set(range(len(masked.pieces))) - set(seen))
        raise MaskError(f"placeholders lost {missing} or duplicated in the translation")
    return restored
