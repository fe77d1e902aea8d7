"""Evaluations of finished runs: their questions, answers, scores and the judge's verdicts.

Each answer, loss and verdict is written by its own small call as it arrives, so a killed
evaluation keeps everything already received. A question is unique within its evaluation by
its key (`uq_evaluation_questions_key`), and an answer already stored is never overwritten:
a resumed evaluation can neither repeat a question nor replace what it had.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.sqlite import insert

from finetuneflow.core.child_protocol import BASE
from finetuneflow.storage.tables import (
    Chunk,
    DatasetExample,
    EvaluationQuestion,
    EvaluationRecord,
    ExampleSplit,
    ExampleStatus,
    Run,
    utcnow,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

Messages = list[dict[str, str]]
ORDER_COLUMNS = {"base_first": ("base_first_winner", "base_first_reason"),
                 "tuned_first": ("tuned_first_winner", "tuned_first_reason")}


@dataclass(frozen=True)
class HeldOut:
    """A kept example of the evaluation split, with the passage it was made from."""

    example_id: int
    messages: Messages
    content_hash: str
    passage: str | None  # None for an imported example


@dataclass(frozen=True)
class NewQuestion:
    key: str
    example_id: int | None
    prompt: Messages  # the chat up to the answer
    question: str
    reference: str | None
    passage: str | None


@dataclass(frozen=True)
class Scores:
    """One answer's scores against the reference and the passage (None: nothing to score)."""

    f1: float | None = None
    rouge_l: float | None = None
    grounded: bool | None = None


class EvaluationRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    # --- the questions ---------------------------------------------------------------------------

    def held_out(self, project_id: str) -> list[HeldOut]:
        """The project's kept examples on the evaluation side of the split, in id order."""
        rows = self._session.execute(
            select(DatasetExample.id, DatasetExample.messages, DatasetExample.content_hash,
                   Chunk.text)
            .outerjoin(Chunk, Chunk.id == DatasetExample.chunk_id)
            .where(DatasetExample.project_id == project_id,
                   DatasetExample.split == ExampleSplit.EVAL,
                   DatasetExample.status != ExampleStatus.REJECTED)
            .order_by(DatasetExample.id)).all()
        return [HeldOut(*row) for row in rows]

    def add(self, run_id: int, *, judge: bool, max_questions: int | None,
            max_new_tokens: int) -> EvaluationRecord:
        record = EvaluationRecord(run_id=run_id, judge=judge, max_questions=max_questions,
                                  max_new_tokens=max_new_tokens, status="running")
        self._session.add(record)
        self._session.flush()
        return record

    def add_questions(self, evaluation_id: int, questions: Sequence[NewQuestion]) -> int:
        """Add the questions whose key the evaluation does not hold yet, after the others;
        how many were added."""
        held = set(self._session.scalars(select(EvaluationQuestion.key).where(
            EvaluationQuestion.evaluation_id == evaluation_id)))
        fresh = [q for q in dict((q.key, q) for q in questions).values() if q.key not in held]
        if not fresh:
            return 0
        start = int(self._session.scalar(select(func.max(EvaluationQuestion.ordinal)).where(
            EvaluationQuestion.evaluation_id == evaluation_id)) or 0)
        self._session.execute(insert(EvaluationQuestion).on_conflict_do_nothing(), [
            {"evaluation_id": evaluation_id, "key": q.key, "ordinal": start + i,
             "example_id": q.example_id, "prompt": q.prompt, "question": q.question,
             "reference": q.reference, "passage": q.passage, "reason": ""}
            for i, q in enumerate(fresh, start=1)])
        return len(fresh)

    # --- reading ---------------------------------------------------------------------------------

    def get(self, evaluation_id: int) -> EvaluationRecord | None:
        return self._session.get(EvaluationRecord, evaluation_id)

    def latest(self, run_id: int) -> EvaluationRecord | None:
        return self._session.scalars(select(EvaluationRecord).where(
            EvaluationRecord.run_id == run_id).order_by(EvaluationRecord.id.desc())
            .limit(1)).first()

    def questions(self, evaluation_id: int) -> list[EvaluationQuestion]:
        return list(self._session.scalars(select(EvaluationQuestion).where(
            EvaluationQuestion.evaluation_id == evaluation_id)
            .order_by(EvaluationQuestion.ordinal)))

    def question(self, question_id: int) -> EvaluationQuestion:
        question = self._session.get(EvaluationQuestion, question_id)
        if question is None:
            raise LookupError(f"there is no evaluation question {question_id}")
        return question

    def runs_with_latest(self, project_id: str) -> list[tuple[Run, EvaluationRecord | None]]:
        """Every run of the project, newest first, with its latest evaluation."""
        latest = (select(EvaluationRecord.run_id, func.max(EvaluationRecord.id).label("id"))
                  .group_by(EvaluationRecord.run_id).subquery())
        rows = self._session.execute(
            select(Run, EvaluationRecord)
            .outerjoin(latest, latest.c.run_id == Run.id)
            .outerjoin(EvaluationRecord, EvaluationRecord.id == latest.c.id)
            .where(Run.project_id == project_id).order_by(Run.id.desc())).all()
        return [(run, record) for run, record in rows]

    # --- writing as results arrive ---------------------------------------------------------------

    def record_answer(self, evaluation_id: int, question_id: int, variant: str, text: str,
                      scores: Scores) -> bool:
        """Store one model's answer to a question of this evaluation, unless it has one
        already; whether it was stored."""
        prefix = "base" if variant == BASE else "tuned"
        answer = getattr(EvaluationQuestion, f"{prefix}_answer")
        result = self._session.execute(
            update(EvaluationQuestion)
            .where(EvaluationQuestion.id == question_id,
                   EvaluationQuestion.evaluation_id == evaluation_id, answer.is_(None))
            .values({f"{prefix}_answer": text, f"{prefix}_f1": scores.f1,
                     f"{prefix}_rouge_l": scores.rouge_l,
                     f"{prefix}_grounded": scores.grounded}))
        return bool(getattr(result, "rowcount", 0))

    def record_loss(self, evaluation_id: int, variant: str, loss: float | None,
                    perplexity: float | None) -> None:
        prefix = "base" if variant == BASE else "tuned"
        self._set(evaluation_id, **{f"{prefix}_eval_loss": loss,
                                    f"{prefix}_perplexity": perplexity})

    def record_verdict(self, question_id: int, order: str, winner: str | None,
                       reason: str) -> None:
        winner_column, reason_column = ORDER_COLUMNS[order]
        self._session.execute(update(EvaluationQuestion).where(
            EvaluationQuestion.id == question_id).values(
            {winner_column: winner, reason_column: reason}))

    def record_outcome(self, question_id: int, outcome: str | None, reason: str) -> None:
        self._session.execute(update(EvaluationQuestion).where(
            EvaluationQuestion.id == question_id).values(outcome=outcome, reason=reason))

    def count_judge_usage(self, evaluation_id: int, requests: int, tokens: int) -> None:
        self._session.execute(update(EvaluationRecord).where(
            EvaluationRecord.id == evaluation_id).values(
            judge_requests=EvaluationRecord.judge_requests + requests,
            judge_tokens=EvaluationRecord.judge_tokens + tokens))

    def begin(self, evaluation_id: int, job_id: int, judge: bool) -> None:
        """The evaluation runs (again) under this job; `judge` as asked this time."""
        self._set(evaluation_id, status="running", job_id=job_id, judge=judge, message="",
                  finished_at=None)

    def finish(self, evaluation_id: int, status: str, message: str = "") -> None:
        self._set(evaluation_id, status=status, message=message, finished_at=utcnow())

    def _set(self, evaluation_id: int, **values: Any) -> None:
        self._session.execute(update(EvaluationRecord).where(
            EvaluationRecord.id == evaluation_id).values(**values, updated_at=utcnow()))
