"""Masking (pure): protected pieces never reach the provider, and always come back unchanged."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rosetta.translation.detect import Detector, strip_noise
from rosetta.translation.mask import PLACEHOLDER_RE, MaskError, mask, unmask

words = st.sampled_from(["hola", "amigo", "the", "build", "is", "green", "ça", "va", "日本語", "über", "ok", "!", ",",
                         "?", "(", ")", "x", "id", "<", ">", "&", "\n", "  "])
protected = st.one_of(
    st.builds(lambda a, b: f"https://{a}.example.org/{b}?q=1", st.sampled_from(["docs", "x-y"]),
              st.sampled_from(["a", "path/to", "a_b"])),
    st.builds(lambda n: f"@{n}", st.sampled_from(["ana", "bea.g", "luis_2", "x"])),
    st.builds(lambda n: f"#{n}", st.sampled_from(["general", "dev-ops", "q3"])),
    st.builds(lambda n: f":{n}:", st.sampled_from(["smile", "+1", "thumbs_up"])),
    st.builds(lambda c: f"`{c}`", st.sampled_from(["rm -rf /", "a<b", "x = 1"])),
    st.builds(lambda c: f"```\n{c}\n```", st.sampled_from(["def f():\n    return 1", "SELECT 1;"])),
    st.sampled_from(["😀", "🎉", "👍🏽", "ana@example.org", '<x id="0"/>', "Rosetta"]),
)
texts = st.lists(st.one_of(words, protected), max_size=25).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(texts)
def test_round_trip_through_an_identity_provider(text):
    masked = mask(text, ["Rosetta"])
    assert unmask(masked.text, masked) == text


@settings(max_examples=300, deadline=None)
@given(texts, st.sampled_from(["{}", "« {} »", "[es] {}", "{}\n"]))
def test_round_trip_through_a_provider_that_rewrites_the_words_around_placeholders(text, frame):
    masked = mask(text, ["Rosetta"])
    # A "translation": the words change, spaces appear inside the tags, the placeholders stay.
    translated = frame.format(PLACEHOLDER_RE.sub(lambda m: f'< x id = "{m.group(1)}" / >', masked.text.upper()))
    restored = unmask(translated, masked)
    for piece in masked.pieces:
        assert piece in restored


@settings(max_examples=200, deadline=None)
@given(st.lists(protected, min_size=1, max_size=6))
def test_protected_pieces_never_reach_the_provider(pieces):
    text = " and ".join(pieces)
    masked = mask(text, ["Rosetta"])
    assert len(masked.pieces) == len(pieces)
    for piece in pieces:
        if piece not in ("and",):
            assert piece not in masked.text or piece.startswith("<x")


def test_the_kinds_that_are_masked():
    masked = mask("Hi @ana, see https://x.org/a?b=1. Run `make` in #dev :tada: ```\ncode\n``` with Rosetta Pro!",
                  ["rosetta pro"])
    assert masked.pieces == ("@ana", "https://x.org/a?b=1", "`make`", "#dev", ":tada:", "```\ncode\n```",
                             "Rosetta Pro")
    assert masked.text.startswith('Hi <x id="0"/>, see <x id="1"/>. Run')
    assert masked.has_words
    assert not mask("https://x.org @ana :+1:").has_words


def test_e_mail_addresses_are_masked_whole_wherever_they_stand():
    masked = mask("x.ana+tag@example.org wrote (bea-b@mail.example.org); also:cid_1@example.org and @dee")
    assert masked.pieces == ("x.ana+tag@example.org", "bea-b@mail.example.org", "cid_1@example.org", "@dee")


def test_glossary_matches_whole_words_only():
    assert mask("Go is good", ["Go"]).pieces == ("Go",)
    assert mask("a goodbye", ["good"]).pieces == ()


def test_the_longest_glossary_term_that_matches_wins():
    masked = mask("Rosetta Pro, Rosetta Pros and ro; C++x and C++", ["Ro", "Rosetta", "Rosetta Pro", "C", "C++"])
    assert masked.pieces == ("Rosetta Pro", "Rosetta", "ro", "C", "C++")


glossary_words = st.sampled_from(["go", "Go", "good", "gone", "go on", "C++", "C", "Node.js", "über", "Über",
                                  "ÜBERALL"])


@settings(max_examples=300, deadline=None)
@given(st.lists(glossary_words, min_size=1, max_size=6),
       st.lists(st.one_of(glossary_words, st.sampled_from([" ", ", ", "x", "s", "+", ".", "\n"])), max_size=20))
def test_glossary_masks_as_the_plain_longest_first_alternation(terms, parts):
    """The trie-shaped pattern masks exactly what the rule says: whole words, any case, longest term first."""
    longest_first = sorted(set(terms), key=len, reverse=True)
    rule = re.compile("|".join(rf"(?<!\w){re.escape(t)}(?!\w)" for t in longest_first), re.IGNORECASE)
    text = "".join(parts)
    assert list(mask(text, terms).pieces) == rule.findall(text)


@pytest.mark.parametrize("translated", [
    "only words left",  # lost
    '<x id="0"/> <x id="0"/> <x id="1"/>',  # duplicated
    '<x id="0"/> <x id="1"/> <x id="2"/>',  # invented
])
def test_a_damaged_translation_fails(translated):
    masked = mask("hello @ana look https://x.org")
    with pytest.raises(MaskError):
        unmask(translated, masked)


def test_detection_strips_noise_and_falls_back_to_the_author():
    detector = Detector()
    assert detector.detect("Hola a todos, ¿cómo están? Nos vemos mañana en la oficina.", "en") == "es"
    assert detector.detect("Good morning everyone, the build is green again today.", "en-GB") == "en-GB"
    assert detector.detect("ok", "de") == "de"  # too short to tell
    assert detector.detect("gracias amigo", "fr") == "fr"  # short: the author's language
    url_heavy = "mira https://example.com/un/enlace/muy/largo/con/palabras/en/ingles @ana"
    assert detector.detect(url_heavy, "pt") == "pt"  # what is left after stripping is too short
    assert strip_noise("hi @ana 😀 `x` :tada:").split() == ["hi"]
    assert strip_noise("ok→5€ ✓ ©2026").split() == ["ok", "5", "2026"]  # every symbol (S*) is a space


def test_detection_reads_the_start_of_a_long_message():
    """Its first lines decide (the detector's cost grows with the text, its answer does not)."""
    spanish = "Hola a todos, ¿cómo están? Nos vemos mañana en la oficina. " * 20  # ~1,200 characters
    english = "Here is the full build log, the tests are green and the deploy went fine. " * 100
    assert Detector().detect(spanish + english, "en") == "es"
