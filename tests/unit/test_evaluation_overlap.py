"""Token F1 and ROUGE-L of an answer against the reference answer."""

from __future__ import annotations

import pytest

from finetuneflow.core.evaluation.overlap import lcs_length, rouge_l, token_f1, tokens


def test_tokens_are_normalised_squad_style() -> None:
    expected = ["reactors", "core", "runs", "at", "300c"]
    assert tokens("The Reactor's CORE — runs at 300°C!") == expected
    assert tokens("An apple a day") == ["apple", "day"]
    assert tokens("Ｆｕｌｌ width") == ["full", "width"]  # NFKC


def test_tokens_keep_non_latin_words() -> None:
    assert tokens("Η Αθήνα είναι η πρωτεύουσα.") == ["η", "αθήνα", "είναι", "η", "πρωτεύουσα"]
    assert tokens("Москва — столица России.") == ["москва", "столица", "россии"]


def test_token_f1_hand_worked() -> None:
    # Answer: [cat, sat, on, mat] (articles dropped); reference: [cat, sat]. Matched 2:
    # precision 2/4, recall 2/2, F1 = 2·0.5·1/1.5 = 2/3.
    assert token_f1("The cat sat on the mat.", "A cat sat") == pytest.approx(2 / 3)
    # A repeated word counts as often as both sides have it: [x x y] and [x y y] share x, y.
    assert token_f1("x x y", "x y y") == pytest.approx(2 / 3)
    assert token_f1("Paris", "paris!") == 1.0
    assert token_f1("Berlin", "Paris") == 0.0


def test_empty_answers() -> None:
    assert token_f1("", "") == 1.0
    assert token_f1("The.", "a") == 1.0  # nothing left on either side after normalising
    assert token_f1("", "Paris") == 0.0
    assert rouge_l("Paris", "") == 0.0
    assert rouge_l("", "") == 1.0


def test_lcs_length() -> None:
    assert lcs_length(list("abcbdab"), list("bdcaba")) == 4  # the textbook example (bcba)
    assert lcs_length([], ["a"]) == 0
    assert lcs_length(["a", "b"], ["a", "b"]) == 2


def test_rouge_l_hand_worked() -> None:
    # LCS of [police, killed, gunman] and [police, kill, gunman] is 2: P = R = 2/3.
    assert rouge_l("Police killed the gunman", "police kill the gunman") == pytest.approx(2 / 3)
    # Word order matters for ROUGE-L but not for F1.
    assert rouge_l("b c d e f g", "g f e d c b") == pytest.approx(1 / 6)
    assert token_f1("b c d e f g", "g f e d c b") == 1.0


# Values from rouge-score 0.1.2 (RougeScorer(["rougeL"]), no stemmer) on texts where its
# tokenizer and ours give the same tokens: lower-case ASCII words without articles.
ROUGE_SCORE_VALUES = [
    ("police killed gunman", "police kill gunman", 0.6666666666666666),
    ("gunman was shot down by police", "police killed gunman", 0.2222222222222222),
    ("coolant flows through twelve loops every hour",
     "every hour coolant flows through twelve separate loops", 0.6666666666666666),
    ("four engineers staff control room at all times",
     "control room is staffed by four engineers at all times", 0.5555555555555556),
    ("b c d e f g", "g f e d c b", 0.16666666666666666),
    ("x y z", "p q r", 0.0),
]


@pytest.mark.parametrize(("answer", "reference", "expected"), ROUGE_SCORE_VALUES)
def test_rouge_l_matches_rouge_score(answer: str, reference: str, expected: float) -> None:
    assert rouge_l(answer, reference) == pytest.approx(expected)


def test_non_latin_answers_score() -> None:
    # rouge-score's [a-z0-9] tokenizer gives 0 here; the same answer must score 1.
    assert rouge_l("Η Αθήνα είναι πρωτεύουσα", "η αθήνα είναι πρωτεύουσα.") == 1.0
    assert token_f1("Москва — столица", "столица: Москва") == 1.0
