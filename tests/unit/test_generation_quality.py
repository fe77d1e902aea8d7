"""Grounding, duplicates and length checks on generated examples."""

from __future__ import annotations

import random
import string
import threading
from difflib import SequenceMatcher
from typing import Any

import pytest

from finetuneflow.core.generation.quality import (
    Deduplicator,
    content_hash,
    grounding_score,
    is_grounded,
    normalise,
    partial_ratio,
    similarity,
    too_long,
)

CHUNK = (
    "Section 4.2 — Cooling.\n\nThe reactor core operates at three hundred degrees during normal "
    "load. Coolant flows through twelve separate loops every hour; operators inspect the "
    "pressure valves on Monday mornings. A backup generator starts within ten seconds of a grid "
    "failure, and the control room is staffed by four engineers at all times."
)


def test_normalise_ignores_case_punctuation_and_spacing() -> None:
    expected = "the reactor s core operates at 300 c"
    assert normalise("  The  Reactor's CORE—operates,\n at 300°C!  ") == expected
    assert normalise("Ｆｕｌｌ width") == "full width"  # NFKC


# -- grounding ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "quote",
    [
        "Coolant flows through twelve separate loops every hour",
        "coolant flows through twelve separate loops every hour.",  # case, punctuation
        "Coolant  flows through\ntwelve separate loops every hour",  # whitespace
        "operators inspect the pressure valves on monday mornings",
        "Coolant flows thru twelve separate loops every hour",  # a small slip
    ],
)
def test_quotes_from_the_chunk_are_grounded(quote: str) -> None:
    assert is_grounded(quote, CHUNK)


@pytest.mark.parametrize(
    "quote",
    [
        "The reactor is cooled by liquid sodium pumped from the lake",
        "Twelve engineers inspect the loops every Monday",  # the chunk's words, reshuffled
        "The reactor core operates at 300 degrees during normal load",  # not word for word
    ],
)
def test_made_up_or_paraphrased_quotes_are_not(quote: str) -> None:
    assert not is_grounded(quote, CHUNK)
    assert grounding_score(quote, CHUNK) < 0.9


def test_an_exact_substring_scores_one() -> None:
    assert grounding_score("backup generator", CHUNK) == 1.0
    assert partial_ratio("", "anything") == 0.0


def test_a_quote_longer_than_the_chunk_is_compared_whole() -> None:
    assert grounding_score(CHUNK + " And one more sentence.", CHUNK) > 0.9


def test_grounding_in_a_long_chunk() -> None:
    rng = random.Random(4)
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(3000)]
    long_chunk = " ".join(words)
    quote = " ".join(words[1500:1520])
    slipped = quote.replace(words[1510], words[1510][:-1] + "x")
    assert is_grounded(slipped, long_chunk)
    assert not is_grounded(" ".join(reversed(words[1500:1520])), long_chunk)


# -- similarity -----------------------------------------------------------------------------


def test_similarity_matches_difflib_on_near_duplicates() -> None:
    rng = random.Random(7)
    for _ in range(200):
        a = " ".join(rng.choice(["what", "is", "the", "rate", "of", "flow", "in", "loop", "seven"])
                     for _ in range(rng.randint(3, 12)))
        b = list(a)
        for _ in range(rng.randint(0, 3)):
            b.insert(rng.randrange(len(b) + 1), rng.choice(string.ascii_lowercase))
        b = "".join(b)
        expected = SequenceMatcher(None, a, b, autojunk=False).ratio()
        assert similarity(a, b) == pytest.approx(expected, abs=0.08)


def test_similarity_bounds_return_zero_below_the_floor() -> None:
    assert similarity("abc", "abcdefghijklmnop", at_least=0.9) == 0.0
    assert similarity("", "") == 1.0
    assert similarity("same text", "same text", at_least=0.9) == 1.0


# -- duplicates -----------------------------------------------------------------------------


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "S"}, {"role": "user", "content": text},
            {"role": "assistant", "content": "A"}]


def _check(dedup: Deduplicator, key: object, text: str) -> object:
    return dedup.check(key, content_hash(_user(text)), text)


def test_content_hash_keeps_the_stored_form() -> None:
    """The hash of every stored row: its exact bytes must never change, for ASCII text (which
    skips normalising) and for text that NFKC changes."""
    import hashlib

    def stored(canonical: str) -> str:
        return hashlib.sha256(canonical.encode()).hexdigest()

    assert content_hash(_user(" What  is\nX? ")) == stored(
        '[["system", "S"], ["user", "What is X?"], ["assistant", "A"]]')
    assert content_hash(_user("the ﬁle café")) == stored(
        '[["system", "S"], ["user", "the file café"], ["assistant", "A"]]')


def test_content_hash_ignores_spacing_and_unicode_form_only() -> None:
    assert content_hash(_user("What is X?")) == content_hash(_user(" What  is\nX? "))
    assert content_hash(_user("the ﬁle")) == content_hash(_user("the file"))  # NFKC
    assert content_hash(_user("What is X?")) != content_hash(_user("What is Y?"))
    assert content_hash(_user("What is X?")) != content_hash(_user("what is x"))
    assert content_hash(_user("2+2=4")) != content_hash(_user("2*2=4"))
    assert len(content_hash(_user("x"))) == 64  # fits the content_hash column


def test_exact_and_near_duplicates_are_found_and_point_to_the_original() -> None:
    dedup = Deduplicator()
    assert _check(dedup, "a", "What temperature does the reactor core reach under load?") is None
    exact = _check(dedup, "b", "What temperature does the reactor core  reach under load?")
    assert exact is not None and exact.kind == "exact" and exact.of == "a"
    case = _check(dedup, "b2", "what temperature does the reactor core reach under load")
    assert case is not None and case.kind == "near" and case.of == "a"
    near = _check(dedup, "c", "What temperature does the reactor core reach under full load?")
    assert near is not None and near.kind == "near" and near.of == "a"
    assert near.similarity >= 0.9


@pytest.mark.parametrize(
    "variant",
    [
        "Waht temperature does the reactor core reach under load?",  # typo at the start
        "What temperature does the reactor core reach under laod?",  # typo at the end
        "What temperature does the reactor's core reach under load?",  # a word in the middle
        "So, what temperature does the reactor core reach under load?",  # a new opening
    ],
)
def test_near_duplicates_edited_anywhere(variant: str) -> None:
    dedup = Deduplicator()
    for index, other in enumerate(["How many loops carry coolant?", "Who staffs the control room?",
                                   "What temperature does the reactor core reach under load?",
                                   "When are the pressure valves inspected?"]):
        assert _check(dedup, index, other) is None
    found = _check(dedup, "variant", variant)
    assert found is not None and found.of == 2


def test_different_questions_sharing_a_template_are_kept() -> None:
    dedup = Deduplicator()
    subjects = ["the reactor core temperature", "the coolant loops", "the backup generator",
                "the control room staff", "the pressure valve inspections"]
    for subject in subjects:
        assert _check(dedup, subject, f"What does the manual say about {subject}?") is None


def test_seeding_with_earlier_examples() -> None:
    dedup = Deduplicator()
    dedup.add(101, content_hash(_user("How many loops carry coolant?")),
              "How many loops carry coolant?")
    found = _check(dedup, "new", "How many loops carry the coolant?")
    assert found is not None and found.of == 101
    assert len(dedup) == 2


def test_many_questions_with_planted_near_duplicates() -> None:
    """An index, not all pairs: 20k questions stay quick, and planted variants are found."""
    rng = random.Random(11)
    vocabulary = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9)))
                  for _ in range(4000)]
    openings = ["What is", "How does", "Why does", "When did", "What does the text say about"]
    questions = [
        f"{rng.choice(openings)} {' '.join(rng.choices(vocabulary, k=rng.randint(4, 9)))}?"
        for _ in range(20_000)
    ]
    planted = {}
    for index in rng.sample(range(len(questions)), 300):
        original = questions[index]
        cut = rng.randrange(len(original) - 1)
        planted[len(questions)] = index
        questions.append(original[:cut] + original[cut + 1 :])  # one character dropped
    dedup = Deduplicator()
    found = {i: _check(dedup, i, q) for i, q in enumerate(questions)}
    caught = sum(1 for i in planted if found[i] is not None)
    assert caught >= 0.97 * len(planted)
    false_alarms = [i for i in range(20_000) if found[i] is not None
                    and SequenceMatcher(None, normalise(questions[i]),
                                        normalise(questions[found[i].of])).ratio() < 0.85]
    assert false_alarms == []


def test_deduplicator_is_thread_safe() -> None:
    dedup = Deduplicator()
    texts = [f"Question number {i} about subject {i * 7919 % 10007}?" for i in range(2000)]
    results: list[object] = []
    lock = threading.Lock()

    def work(part: list[tuple[int, str]]) -> None:
        for key, text in part:
            outcome = _check(dedup, key, text)
            with lock:
                results.append(outcome)

    items = list(enumerate(texts * 2))
    threads = [threading.Thread(target=work, args=(items[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4000
    exact = [r for r in results if r is not None and r.kind == "exact"]  # type: ignore[attr-defined]
    assert len(exact) == 2000


# -- length ---------------------------------------------------------------------------------


def test_too_long_uses_the_callers_token_counter() -> None:
    def count(messages: list[dict[str, str]]) -> int:
        return sum(len(m["content"].split()) for m in messages) + 3

    assert too_long(_user("one two three"), count, max_seq_length=10) == (8, False)
    assert too_long(_user("one two three four five six seven"), count, max_seq_length=10) == (
        12,
        True,
    )


@pytest.mark.parametrize("text", [
    'a","b', '"],["', '],[', ",", "\\", '\\"', "end\\", '"', '", "', "\x00\x1f\x7f\u2028",
    "é😀 ﬁ", "", '["x"]', "tab\there",
])
def test_content_hash_is_the_sha256_of_json_dumps(text: str) -> None:
    """The hash is written without `json`, a string at a time: the bytes must stay those of
    `json.dumps`, whatever the turns hold, the separators' own characters too."""
    import hashlib
    import json
    import unicodedata

    messages = [{"role": "user", "content": text}, {"role": text or "x", "content": "y"},
                {"role": "assistant", "content": f"{text} and {text}"}]
    canonical = [[m["role"], " ".join(unicodedata.normalize("NFKC", m["content"]).split())]
                 for m in messages]
    assert content_hash(messages) == hashlib.sha256(
        json.dumps(canonical, ensure_ascii=False).encode()).hexdigest()


@pytest.mark.parametrize("messages", [
    [{"role": None, "content": "a"}, {"role": 3, "content": "b"}],
    [{"role": "user", "content": "a"}, {"role": ["x"], "content": "b"}],  # unhashable
    [{"role": True, "content": "a"}, {"content": "no role"}, {"role": "user"}],
    [{"role": "user", "content": "lone \ud800 surrogate"}],
    [],
])
def test_content_hash_of_odd_turns_is_json_s(messages: list[dict[str, Any]]) -> None:
    """Roles that are not text, missing fields, no turns: the hash is still that of
    `json.dumps`, and `json` fails where it always did (a lone surrogate)."""
    import hashlib
    import json

    canonical = [[m.get("role", ""), " ".join(m.get("content", "").split())] for m in messages]
    try:
        expected = hashlib.sha256(json.dumps(canonical, ensure_ascii=False).encode()).hexdigest()
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            content_hash(messages)
        return
    assert content_hash(messages) == expected
