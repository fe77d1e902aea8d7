"""What an evaluation shows a person: one row per question and the run's summary.

The evaluation service builds these from the database; the Export page, the report,
`metrics.json` and `evaluate --json` all read the same objects, so every surface shows the
same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from finetuneflow.core.evaluation.judge import Outcome
from finetuneflow.core.evaluation.stats import Tally

# An evaluation's state, as stored: running (or killed: resumable), stopped (resumable),
# succeeded, failed.
EVALUATION_STATUSES = ("running", "stopped", "succeeded", "failed")


@dataclass(frozen=True)
class QuestionResult:
    """One held-out (or typed) question with both models' answers and its scores."""

    question_id: int
    question: str
    reference: str | None  # None for a question the user typed
    passage: str | None  # the source passage; None for a typed question
    base_answer: str | None  # None: not answered yet
    tuned_answer: str | None
    base_f1: float | None = None  # token F1 against the reference
    tuned_f1: float | None = None
    base_rouge_l: float | None = None
    tuned_rouge_l: float | None = None
    base_grounded: bool | None = None  # key facts found in the passage
    tuned_grounded: bool | None = None
    outcome: Outcome | None = None  # the judge's result for the fine-tuned model
    reason: str = ""  # the judge's one line, or why the question was not judged


@dataclass(frozen=True)
class EvaluationSummary:
    """One evaluation of one run: what the Export page's headline and the report lead with."""

    evaluation_id: int
    run_id: int
    status: str  # one of EVALUATION_STATUSES
    questions: int  # questions in this evaluation
    answered: int  # questions both models have answered
    tally: Tally | None  # None: the judge was not used
    headline: str  # core.evaluation.headline(tally), or a sentence on why there is none
    base_eval_loss: float | None = None
    tuned_eval_loss: float | None = None
    base_perplexity: float | None = None
    tuned_perplexity: float | None = None
    base_f1: float | None = None  # means over the answered questions with a reference
    tuned_f1: float | None = None
    base_rouge_l: float | None = None
    tuned_rouge_l: float | None = None
    base_grounded_share: float | None = None
    tuned_grounded_share: float | None = None
    judge_requests: int = 0  # requests sent to the judge so far
    judge_tokens: int = 0
    message: str = ""  # why it failed or stopped


@dataclass(frozen=True)
class Evaluation:
    summary: EvaluationSummary
    rows: list[QuestionResult] = field(default_factory=list)

    def needing_a_look(self) -> list[QuestionResult]:
        """Losses first, then unjudged questions, then the rest, each in question order:
        the order the Export page and the report list them."""
        rank = {"loss": 0, None: 1, "tie": 2, "win": 3}
        return sorted(self.rows, key=lambda row: (rank[row.outcome], row.question_id))


@dataclass(frozen=True)
class RunScores:
    """One line of `finetuneflow runs` and of the Train page's comparison: a run's settings
    and its latest evaluation's scores (None where it has none)."""

    run_id: int
    status: str
    base_model: str
    method: str  # "lora" / "qlora"
    settings: dict[str, object]  # epochs, learning rate, rank, … as stored on the run
    final_eval_loss: float | None
    evaluation: EvaluationSummary | None
