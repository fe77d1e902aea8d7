"""Overlap of an answer with the reference answer: token F1 and ROUGE-L F-measure.

Both work on the same tokens, normalised SQuAD-style: Unicode NFKC, case-folded, punctuation
and symbols removed, the English articles a/an/the dropped, split on whitespace. Removing
(not spacing) punctuation follows SQuAD: "don't" is one token, "dont".

Why not the `rouge-score` package: its tokenizer keeps only [a-z0-9], so an answer in Greek,
Russian or Chinese has no tokens at all and scores 0; and it pulls in nltk, absl and numpy for
a longest common subsequence. ROUGE-L here matches rouge-score's (same F-measure, beta 1) on
the same tokens: tests/unit/test_evaluation_overlap.py holds cases checked against it.
"""

from __future__ import annotations

import unicodedata
from collections import Counter

ARTICLES = frozenset({"a", "an", "the"})


def tokens(text: str) -> list[str]:
    """The normalised words of `text` that F1 and ROUGE-L compare."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    kept = "".join(ch for ch in folded if unicodedata.category(ch)[0] not in "PS")
    return [word for word in kept.split() if word not in ARTICLES]


def _f_measure(matched: int, predicted: int, reference: int) -> float:
    if predicted == 0 and reference == 0:
        return 1.0  # both empty: nothing to disagree about (SQuAD's convention)
    if matched == 0:
        return 0.0
    precision, recall = matched / predicted, matched / reference
    return 2 * precision * recall / (precision + recall)


def token_f1(answer: str, reference: str) -> float:
    """SQuAD's F1: the harmonic mean of precision and recall over the bag of tokens."""
    predicted, wanted = tokens(answer), tokens(reference)
    matched = sum((Counter(predicted) & Counter(wanted)).values())
    return _f_measure(matched, len(predicted), len(wanted))


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence, one row of the table at a time."""
    if len(a) < len(b):
        a, b = b, a
    row = [0] * (len(b) + 1)
    for word in a:
        diagonal = 0  # the cell above-left
        for j, other in enumerate(b, start=1):
            above = row[j]
            row[j] = diagonal + 1 if word == other else max(above, row[j - 1])
            diagonal = above
    return row[-1]


def rouge_l(answer: str, reference: str) -> float:
    """ROUGE-L F-measure: precision and recall of the longest common subsequence of tokens."""
    predicted, wanted = tokens(answer), tokens(reference)
    return _f_measure(lcs_length(predicted, wanted), len(predicted), len(wanted))
