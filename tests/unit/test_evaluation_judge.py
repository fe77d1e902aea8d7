"""The pairwise judge: prompt, verdict parsing, and the two orders combined."""

from __future__ import annotations

import pytest

from finetuneflow.core.evaluation.judge import (
    SAME_ANSWERS,
    VERDICT_SCHEMA,
    JudgeCase,
    Verdict,
    combine,
    judge_messages,
    needs_judging,
    parse_verdict,
    tuned_outcome,
    unreadable,
)
from finetuneflow.core.generation.parse import validate

CASE = JudgeCase(
    question="How many cooling loops are there?",
    passage="Coolant flows through twelve separate loops every hour.",
    reference="Twelve.",
    base_answer="There are eight loops.",
    tuned_answer="Twelve separate loops.",
)


def test_the_prompt_shows_everything_in_the_asked_order() -> None:
    base_first = judge_messages(CASE, "base_first")[-1]["content"]
    tuned_first = judge_messages(CASE, "tuned_first")[-1]["content"]
    for text in (CASE.question, CASE.passage, CASE.reference):
        assert text in base_first and text in tuned_first
    assert "Answer A:\nThere are eight loops." in base_first
    assert "Answer B:\nTwelve separate loops." in base_first
    assert "Answer A:\nTwelve separate loops." in tuned_first
    assert "Answer B:\nThere are eight loops." in tuned_first


def test_an_empty_answer_is_shown_as_empty() -> None:
    case = JudgeCase("Q?", "P.", "R.", base_answer="  ", tuned_answer="R.")
    assert "Answer A:\n(empty)" in judge_messages(case, "base_first")[-1]["content"]


def test_the_schema_accepts_exactly_the_verdicts() -> None:
    assert validate({"winner": "A", "reason": "correct"}, VERDICT_SCHEMA) == []
    assert validate({"winner": "C", "reason": "x"}, VERDICT_SCHEMA) != []
    assert validate({"winner": "tie"}, VERDICT_SCHEMA) != []


@pytest.mark.parametrize(
    ("answer", "winner", "reason"),
    [
        ('{"winner": "A", "reason": "A matches the reference."}', "A", "A matches the reference."),
        ('```json\n{"winner": "B", "reason": "B is right"}\n```', "B", "B is right"),
        ("<think>hmm, A or B?</think>{'winner': 'tie', 'reason': 'both wrong',}", "tie",
         "both wrong"),
        ('Verdict: {"winner": "answer b", "reason": "complete"}', "B", "complete"),
        ('{"winner": "Tie."}', "tie", ""),  # no reason: still a verdict
        ('[{"winner": "a", "reason": "line one\\nline two"}]', "A", "line one line two"),
    ],
)
def test_verdicts_are_read_robustly(answer: str, winner: str, reason: str) -> None:
    assert parse_verdict(answer) == Verdict(winner, reason)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ("", "empty"),
        ("I think A is better.", "no JSON"),
        ('{"winner": "C", "reason": "?"}', "'C' is not A, B or tie"),
        ('{"reason": "forgot the winner"}', "the JSON holds no verdict"),
        ('{"winner": ""}', "winner"),
        ("[" * 5000, "verdict"),
    ],
)
def test_unreadable_verdicts_are_reasons_not_errors(answer: str, why: str) -> None:
    verdict = parse_verdict(answer)
    assert verdict.winner is None
    assert verdict.reason.startswith("unreadable verdict")
    assert why in verdict.reason
    assert "\n" not in verdict.reason


def test_a_long_reason_is_cut_to_one_line() -> None:
    verdict = parse_verdict('{"winner": "A", "reason": "' + "word " * 200 + '"}')
    assert len(verdict.reason) <= 300 and verdict.reason.endswith("…")


def test_letters_map_to_the_tuned_model_by_order() -> None:
    assert tuned_outcome(Verdict("B", ""), "base_first") == "win"
    assert tuned_outcome(Verdict("A", ""), "base_first") == "loss"
    assert tuned_outcome(Verdict("A", ""), "tuned_first") == "win"
    assert tuned_outcome(Verdict("B", ""), "tuned_first") == "loss"
    assert tuned_outcome(Verdict("tie", ""), "tuned_first") == "tie"
    assert tuned_outcome(unreadable("timeout"), "tuned_first") is None


def test_both_orders_agreeing_decide() -> None:
    result = combine(Verdict("B", "tuned is right"), Verdict("A", "tuned is right too"))
    assert (result.outcome, result.reason, result.orders_agree) == ("win", "tuned is right", True)
    assert combine(Verdict("A", "base"), Verdict("B", "base")).outcome == "loss"
    assert combine(Verdict("tie", "same"), Verdict("tie", "same")).outcome == "tie"


def test_a_position_flip_is_a_tie() -> None:
    # The judge picked A both times: the first answer, whichever model wrote it.
    result = combine(Verdict("A", "first is better"), Verdict("A", "first is better"))
    assert result.outcome == "tie" and not result.orders_agree
    assert "disagree" in result.reason and "base wins base first" in result.reason
    assert combine(Verdict("B", "x"), Verdict("tie", "y")).outcome == "tie"


def test_an_unreadable_order_leaves_the_question_unjudged() -> None:
    result = combine(Verdict("B", "tuned"), unreadable("the request failed: server error 500"))
    assert result.outcome is None
    assert result.reason == "not judged — tuned first: the request failed: server error 500"
    both = combine(parse_verdict("nope"), unreadable("timeout"))
    assert both.outcome is None and "base first: unreadable" in both.reason
    assert "tuned first: timeout" in both.reason


def test_a_verdict_survives_storage() -> None:
    for verdict in (Verdict("A", "why"), Verdict("tie", ""), unreadable("cut off")):
        assert Verdict.from_dict(verdict.to_dict()) == verdict
    assert Verdict.from_dict({"winner": "Z"}) == Verdict(None, "")


def test_the_same_answer_twice_needs_no_judge() -> None:
    same = JudgeCase("Q?", "P.", "R.", base_answer="Twelve  loops.", tuned_answer="Twelve loops.")
    assert not needs_judging(same)
    assert SAME_ANSWERS.outcome == "tie"
    assert needs_judging(CASE)
    # Case and punctuation can change the meaning: those answers go to the judge.
    assert needs_judging(JudgeCase("Q?", "P.", "R.", "2+2=4", "2*2=4"))
    assert needs_judging(JudgeCase("Q?", "P.", "R.", "Yes.", "yes"))
