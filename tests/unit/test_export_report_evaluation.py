"""report.md's Evaluation section and metrics.json's evaluation entry, from the read model."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from finetuneflow.core.evaluation import headline, tally
from finetuneflow.core.evaluation.results import Evaluation, EvaluationSummary, QuestionResult
from finetuneflow.core.export.report import (
    evaluation_json,
    evaluation_section,
    render_report,
    score_rows,
)
from tests.unit.test_export_report import report_input


def row(number: int, outcome: str | None, reason: str = "") -> QuestionResult:
    return QuestionResult(number, f"What is {number} plus {number}? | pipe", str(2 * number),
                          None, f"base {number}", f"tuned {number}", 0.25, 0.75, 0.2, 0.7,
                          None, True, outcome, reason)  # type: ignore[arg-type]


ROWS = [row(1, "win", "tuned is right"), row(2, "loss", "base is right"), row(3, "tie"),
        row(4, None, "not judged — base first: unreadable verdict"), row(5, "win")]
TALLY = tally(r.outcome for r in ROWS)
SUMMARY = EvaluationSummary(
    evaluation_id=7, run_id=3, status="succeeded", questions=5, answered=5, tally=TALLY,
    headline=headline(TALLY), base_eval_loss=2.34567, tuned_eval_loss=1.23456,
    base_perplexity=10.4339, tuned_perplexity=3.43698, base_f1=0.25, tuned_f1=0.75,
    base_rouge_l=0.2, tuned_rouge_l=0.7, base_grounded_share=None, tuned_grounded_share=0.8,
    judge_requests=8, judge_tokens=4321)
EVALUATION = Evaluation(SUMMARY, ROWS)


def test_the_section_leads_with_the_headline_and_the_scores_per_model() -> None:
    text = evaluation_section(EVALUATION)
    assert text.startswith("## Evaluation\n\n**The fine-tuned model wins 2 of 4, ties 1, "
                           "loses 1 — 62 % ± 34 %; 1 more not judged**")
    for line in ("| Eval loss | 2.3457 | 1.2346 |", "| Perplexity | 10.43 | 3.44 |",
                 "| Token F1 | 0.250 | 0.750 |", "| ROUGE-L | 0.200 | 0.700 |",
                 "| Grounded answers | n/a | 80 % |", "8 requests and 4,321 tokens"):
        assert line in text, line
    assert score_rows(SUMMARY)[0] == ("Eval loss", "2.3457", "1.2346")


def test_the_questions_that_need_a_look_come_first() -> None:
    text = evaluation_section(EVALUATION)
    table = text.split("### Questions to look at first (5 of 5)")[1]
    order = [table.index(f"| {n} | What is {n} plus") for n in (2, 4, 3, 1, 5)]
    assert order == sorted(order)  # the loss, the unjudged one, the tie, then the wins
    assert "| base better | base is right |" in table
    assert "What is 2 plus 2? \\| pipe" in table  # a pipe cannot break the table


def test_the_report_carries_the_section_only_with_an_evaluation() -> None:
    assert "## Evaluation" not in render_report(report_input())
    text = render_report(report_input(evaluation=EVALUATION))
    assert text.index("## Evaluation") < text.index("## Use it")


def test_metrics_json_holds_the_read_model_with_the_rate_and_interval() -> None:
    data = json.loads(json.dumps(evaluation_json(EVALUATION)))
    assert data["summary"]["headline"] == SUMMARY.headline
    assert data["summary"]["tally"] == {
        "wins": 2, "ties": 1, "losses": 1, "unjudged": 1, "judged": 4, "rate": 0.625,
        "interval_low": pytest.approx(0.2194, abs=1e-4),
        "interval_high": pytest.approx(0.9081, abs=1e-4)}
    assert [q["outcome"] for q in data["questions"]] == ["win", "loss", "tie", None, "win"]
    no_judge = evaluation_json(Evaluation(replace(SUMMARY, tally=None), ROWS))
    assert no_judge["summary"]["tally"] is None
