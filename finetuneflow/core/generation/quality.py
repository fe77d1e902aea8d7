"""Checks on generated examples: grounding, duplicates and length.

Text comparisons (grounding, near duplicates) run on a normalised form (Unicode NFKC,
case-folded, punctuation turned into spaces, whitespace collapsed), so "What is X?" and
"what is x" are the same text. An example's identity, `content_hash`, is stricter.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Literal

import orjson

Message = dict[str, str]
CountTokens = Callable[[list[Message]], int]

GROUNDING_THRESHOLD = 0.9
DUPLICATE_THRESHOLD = 0.9

FLAG_UNGROUNDED = "ungrounded"
FLAG_DUPLICATE = "duplicate"
FLAG_NEAR_DUPLICATE = "near_duplicate"
FLAG_TOO_LONG = "too_long"

_NON_WORD = re.compile(r"[\W_]+")


def normalise(text: str) -> str:
    """Case, punctuation and spacing removed: what two texts must share to be 'the same'."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_NON_WORD.sub(" ", folded).split())


def content_hash(messages: Sequence[Message]) -> str:
    """The identity of an example: the `content_hash` of every stored row, generated, imported
    or edited, and the key of exact duplicates. sha256 of its roles and turns in order, each
    turn in Unicode NFKC with spaces, tabs and line breaks folded to one space.

    Case and punctuation count: "2+2=4" and "2*2=4", or `f(x)` and `f[x]`, are different
    examples, and an imported dataset of sums or code must not lose half its rows. Copies that
    differ only in case or punctuation are near duplicates (`Deduplicator`, on `normalise`d
    text), which generation rejects as well.
    """
    try:
        canonical = _canonical_json(messages)
    except (orjson.JSONEncodeError, TypeError):  # a role not text, a lone surrogate: as always
        canonical = _HASH_JSON.encode([(m.get("role", ""), _folded(m.get("content", "")))
                                       for m in messages]).encode()
    return hashlib.sha256(canonical).hexdigest()


_HASH_JSON = json.JSONEncoder(ensure_ascii=False)
_string = orjson.dumps  # a JSON string as `_HASH_JSON` writes it (see below)
_ROLE_HEADS: dict[str, bytes] = {}  # '"user", ' for each role met (a few)


def _canonical_json(messages: Sequence[Message]) -> bytes:
    """`json.dumps` of the (role, folded text) pairs as lists (`ensure_ascii=False`), what
    every stored hash was made of, written a string at a time by orjson: imports hash millions
    of rows, in half the time. orjson writes a string exactly as `json` does (a test checks
    every character); the brackets and separators between strings are written here. Raises
    TypeError for a role that is not text, JSONEncodeError for a lone surrogate."""
    if not messages:
        return b"[]"
    pairs = [_role_head(m.get("role", "")) + _string(_folded(m.get("content", "")))
             for m in messages]
    return b"[[" + b"], [".join(pairs) + b"]]"


def _role_head(role: object) -> bytes:
    """The role as JSON and the separator after it; TypeError for a role that is not text."""
    if type(role) is not str:
        raise TypeError(f"a role of type {type(role).__name__}")
    head = _ROLE_HEADS.get(role)
    if head is None:
        head = _string(role) + b", "
        if len(_ROLE_HEADS) < 100:
            _ROLE_HEADS[role] = head
    return head


def _folded(text: str) -> str:
    """NFKC, with spaces, tabs and line breaks folded to one space."""
    return " ".join(_nfkc(text).split())


def _nfkc(text: str) -> str:
    # ASCII text is already NFKC; the check costs far less than normalising.
    return text if text.isascii() else unicodedata.normalize("NFKC", text)


# -- similarity -----------------------------------------------------------------------------


def _common_prefix_length(a: str, b: str) -> int:
    low, high = 0, min(len(a), len(b))
    while low < high:  # binary search with C-speed slice comparisons
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _common_suffix_length(a: str, b: str, limit: int) -> int:
    low, high = 0, min(len(a), len(b), limit)
    while low < high:
        middle = (low + high + 1) // 2
        if a[len(a) - middle :] == b[len(b) - middle :]:
            low = middle
        else:
            high = middle - 1
    return low


def similarity(a: str, b: str, at_least: float = 0.0) -> float:
    """difflib's ratio 2·M/(|a|+|b|), with the common prefix and suffix matched first.

    Anchoring the shared ends gives the ratio difflib finds on the whole strings in practice and
    costs far less: only the differing middle goes through SequenceMatcher. Returns 0.0 as soon
    as a cheap bound shows the ratio is below `at_least`.
    """
    total = len(a) + len(b)
    if total == 0:
        return 1.0
    if 2 * min(len(a), len(b)) < at_least * total:
        return 0.0
    prefix = _common_prefix_length(a, b)
    suffix = _common_suffix_length(a, b, min(len(a), len(b)) - prefix)
    middle_a, middle_b = a[prefix : len(a) - suffix], b[prefix : len(b) - suffix]
    needed = at_least * total / 2 - prefix - suffix  # matches the middles must still supply
    if needed > min(len(middle_a), len(middle_b)):
        return 0.0
    if needed > 0 and sum((Counter(middle_a) & Counter(middle_b)).values()) < needed:
        return 0.0  # not even the characters are there
    blocks = SequenceMatcher(None, middle_a, middle_b, autojunk=False).get_matching_blocks()
    matched = prefix + suffix + sum(block.size for block in blocks)
    return 2 * matched / total


# -- grounding ------------------------------------------------------------------------------


def partial_ratio(needle: str, haystack: str) -> float:
    """The best similarity of `needle` to a same-sized window of `haystack` (normalised text).

    Windows are word-aligned and anchored where runs of the needle's words occur in the
    haystack (found by SequenceMatcher over words, cheap even for long chunks); each window of
    len(needle) words, one word shorter or longer, is scored with `similarity`.
    """
    if not needle:
        return 0.0
    if needle in haystack:
        return 1.0
    needle_words, hay_words = needle.split(), haystack.split()
    if len(needle_words) >= len(hay_words):
        return similarity(needle, haystack)
    matcher = SequenceMatcher(None, needle_words, hay_words, autojunk=False)
    starts = {max(0, block.b - block.a) for block in matcher.get_matching_blocks() if block.size}
    best = 0.0
    for start in starts:
        for size in (len(needle_words) - 1, len(needle_words), len(needle_words) + 1):
            window = " ".join(hay_words[start : start + max(1, size)])
            best = max(best, similarity(needle, window, at_least=best))
    return best


def grounding_score(quote: str, chunk_text: str) -> float:
    return partial_ratio(normalise(quote), normalise(chunk_text))


def is_grounded(quote: str, chunk_text: str, threshold: float = GROUNDING_THRESHOLD) -> bool:
    return grounding_score(quote, chunk_text) >= threshold


# -- duplicates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Duplicate:
    kind: Literal["exact", "near"]
    of: Hashable  # the key of the earlier example it duplicates
    similarity: float


class Deduplicator:
    """Finds exact duplicates (content_hash of the whole example) and near duplicates
    (similarity >= threshold of the normalised user turn) among everything added so far.

    Near duplicates: a sorted-neighbourhood index. The texts are held in two sorted lists,
    one by the text and one by the reversed text (bisect: O(log n) to find, a memmove to
    insert). A near duplicate differs from its original in one place or a few close together —
    a typo, a changed or added word, different punctuation — so it shares a long prefix or a
    long suffix with it and sorts right next to it in one of the two lists; each new text is
    compared with `neighbours` texts on each side in both. That is O(log n) plus a constant per
    example: 100k synthetic questions took 9 s (about 0.1 ms each) on a 2-core machine, and
    99 % of the planted near duplicates among them were caught (tests/bench/dedup.py).

    Why not MinHash/LSH over shingles: pure Python pays one hash per shingle per permutation
    (slow for 100k), and generated questions share templates ("What does the text say about
    …") whose shingles make unrelated questions look 30 % similar, so bands that keep recall
    high flood the verifier with candidates. Why not difflib on all pairs: 5·10⁹ pairs.
    The trade-off: two texts edited at both ends (a new opening and a new ending) can sort
    apart in both lists and be missed; exact duplicates never are. Memory: the normalised
    texts, about three times over.

    Thread-safe: the GUI's workers and run_generation share one.
    """

    def __init__(self, threshold: float = DUPLICATE_THRESHOLD, neighbours: int = 3) -> None:
        self.threshold = threshold
        self.neighbours = neighbours
        self._hashes: dict[str, Hashable] = {}
        self._texts: list[str] = []
        self._keys: list[Hashable] = []
        self._forward: list[tuple[str, int]] = []
        self._backward: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._texts)

    def check(self, key: Hashable, example_hash: str, text: str) -> Duplicate | None:
        """The earlier example this one duplicates, or None. Unless it is an exact duplicate,
        the text joins the index: a third variant may be closer to the second than the first."""
        normalised = normalise(text)
        with self._lock:
            if example_hash in self._hashes:
                return Duplicate("exact", self._hashes[example_hash], 1.0)
            near = self._nearest(normalised)
            self._add(key, example_hash, normalised)
            return near

    def add(self, key: Hashable, example_hash: str, text: str) -> None:
        """Index an example without checking it (the examples kept by an earlier run)."""
        with self._lock:
            if example_hash not in self._hashes:
                self._add(key, example_hash, normalise(text))

    def _add(self, key: Hashable, example_hash: str, normalised: str) -> None:
        self._hashes[example_hash] = key
        index = len(self._texts)
        self._texts.append(normalised)
        self._keys.append(key)
        bisect.insort(self._forward, (normalised, index))
        bisect.insort(self._backward, (normalised[::-1], index))

    def _nearest(self, text: str) -> Duplicate | None:
        for ordered, probe in ((self._forward, text), (self._backward, text[::-1])):
            position = bisect.bisect_left(ordered, (probe,))
            low, high = max(0, position - self.neighbours), position + self.neighbours
            for _, index in ordered[low:high]:
                score = similarity(text, self._texts[index], at_least=self.threshold)
                if score >= self.threshold:
                    return Duplicate("near", self._keys[index], score)
        return None


# -- length ---------------------------------------------------------------------------------


def too_long(
    messages: list[Message], count_tokens: CountTokens, max_seq_length: int
) -> tuple[int, bool]:
    """The example's token count under the base model's chat template, and whether it is over."""
    count = count_tokens(messages)
    return count, count > max_seq_length
