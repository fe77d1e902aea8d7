"""`trainer answer`: the real child on the tiny model, with an adapter trained a few steps.

One module-scoped fixture trains once (as test_trainer does) and answers the questions with
batches of 8 and the evaluation split; the other runs compare with it.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from finetuneflow.core import child_protocol as protocol
from finetuneflow.core.child_protocol import (
    AnswerJob,
    ErrorEvent,
    EvalLossEvent,
    FinishedEvent,
    QuestionAnswerEvent,
    StoppedEvent,
)
from tests.integration.test_trainer import FAST, TrainerRun, make_job, run_to_end, start

VARIANTS = [protocol.BASE, protocol.FINETUNED]


def questions(count: int) -> list[dict[str, Any]]:
    """Ids out of order and far apart, prompts of different lengths, one multi-turn chat."""
    items = [{"id": 1000 - 7 * i, "messages": [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": f"What is {i} plus {i}?" + " Explain." * (i % 5)}]}
        for i in range(count)]
    items[0]["messages"] += [{"role": "assistant", "content": "0 plus 0 is 0."},
                             {"role": "user", "content": "And 1 plus 1?"}]
    return items


@dataclass
class Trained:
    root: Path
    model_dir: Path
    adapter_dir: Path
    eval_path: Path
    final_eval_loss: float


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("answer")
    job_path = make_job(root, tiny_model_dir, {"max_steps": 8, "eval_steps": 4,
                                               "save_steps": 4})
    run, code = run_to_end(root / "home", "run", str(job_path))
    assert code == 0, run.log()
    finished = run.of(FinishedEvent)[0]
    assert finished.final_eval_loss is not None
    return Trained(root, tiny_model_dir, Path(finished.adapter_dir),
                   root / "datasets" / "eval.jsonl", finished.final_eval_loss)


def answer(trained: Trained, name: str, **fields: Any) -> tuple[TrainerRun, int]:
    job = AnswerJob(**{"model_path": str(trained.model_dir),
                       "adapter_dir": str(trained.adapter_dir), "questions": questions(20),
                       "max_new_tokens": 12, **fields})
    path = job.write(trained.root / f"{name}.json")
    return run_to_end(trained.root / "home", "answer", str(path))


def texts(run: TrainerRun) -> dict[tuple[int, str], str]:
    return {(event.question_id, event.variant): event.text
            for event in run.of(QuestionAnswerEvent)}


@pytest.fixture(scope="module")
def batched(trained: Trained) -> TrainerRun:
    """Batches of 4 (the training's batch size, so its evaluation loss is comparable)."""
    run, code = answer(trained, "batched", batch_size=4, eval_path=str(trained.eval_path),
                       max_seq_length=FAST["max_seq_length"])
    assert code == 0, run.log()
    return run


@pytest.mark.slow
def test_every_question_is_answered_once_by_each_variant(batched: TrainerRun) -> None:
    answered = Counter((event.question_id, event.variant)
                       for event in batched.of(QuestionAnswerEvent))
    assert answered == Counter({(item["id"], variant): 1
                                for item in questions(20) for variant in VARIANTS})
    assert all(event.new_tokens > 0 for event in batched.of(QuestionAnswerEvent))
    assert not batched.of(ErrorEvent) and not batched.of(StoppedEvent)


@pytest.mark.slow
def test_batched_answers_are_the_one_by_one_answers(trained: Trained,
                                                     batched: TrainerRun) -> None:
    one_by_one, code = answer(trained, "one-by-one", batch_size=1)
    assert code == 0, one_by_one.log()
    assert texts(one_by_one) == texts(batched)
    assert len(set(texts(batched).values())) > 1  # the answers differ: padding could show


@pytest.mark.slow
def test_eval_losses_come_first_and_the_tuned_one_is_the_trainings(
        trained: Trained, batched: TrainerRun) -> None:
    losses = {event.variant: event for event in batched.of(EvalLossEvent)}
    assert set(losses) == set(VARIANTS)
    first_answer = batched.types().index(QuestionAnswerEvent.TYPE)
    assert all(batched.events.index(event) < first_answer for event in losses.values())
    for event in losses.values():
        assert event.loss is not None and math.isfinite(event.loss)
        assert event.perplexity == pytest.approx(math.exp(event.loss))
    assert losses[protocol.FINETUNED].loss == pytest.approx(trained.final_eval_loss, rel=1e-4)
    assert losses[protocol.FINETUNED].loss < losses[protocol.BASE].loss


@pytest.mark.slow
def test_a_stop_line_ends_after_the_batch_and_keeps_what_was_sent(trained: Trained) -> None:
    job = AnswerJob(model_path=str(trained.model_dir), adapter_dir=str(trained.adapter_dir),
                    questions=questions(60), batch_size=2, max_new_tokens=16)
    run = start(trained.root / "home", "answer", str(job.write(trained.root / "stop.json")))
    run.until(lambda event: isinstance(event, QuestionAnswerEvent))
    run.send(protocol.STOP_COMMAND)
    assert run.finish() == 0, run.log()
    sent = run.of(QuestionAnswerEvent)
    assert run.types()[-1] == StoppedEvent.TYPE and not run.of(ErrorEvent)
    assert 2 <= len(sent) < 120 and len(sent) % 2 == 0  # whole batches only
    assert run.of(StoppedEvent)[0].step == len(sent)
    assert len({(event.question_id, event.variant) for event in sent}) == len(sent)


@pytest.mark.slow
def test_a_missing_adapter_fails_with_an_error_event(trained: Trained) -> None:
    run, code = answer(trained, "no-adapter", adapter_dir=str(trained.root / "gone"))
    assert code == 1
    error = run.of(ErrorEvent)[0]
    assert error.kind == protocol.MODEL_NOT_FOUND and "gone" in error.message
    assert not run.of(QuestionAnswerEvent)


@pytest.mark.slow
@pytest.mark.parametrize(("fields", "words"), [
    ({"questions": [{"id": 1, "messages": "hello"}]}, "question 1 needs"),
    ({"questions": [{"id": 1, "messages": [{"role": "user", "content": "a"}]}] * 2},
     "share an id"),
    ({"variants": ["merged"]}, "unknown variants merged"),
    ({"batch_size": 0}, "at least 1"),
])
def test_a_job_the_trainer_cannot_use_is_explained(trained: Trained, fields: dict[str, Any],
                                                   words: str) -> None:
    run, code = answer(trained, "bad", **fields)
    assert code == 1
    error = run.of(ErrorEvent)[0]
    assert error.kind == protocol.CONFIG and words in error.message, error.message
    assert error.detail is None


@pytest.mark.slow
def test_an_unreadable_evaluation_split_fails_before_the_model_loads(trained: Trained) -> None:
    bad = trained.root / "bad-eval.jsonl"
    bad.write_text("not json\n", encoding="utf-8")
    run, code = answer(trained, "bad-eval", eval_path=str(bad))
    assert code == 1
    assert run.of(ErrorEvent)[0].kind == protocol.DATASET
    assert "loading_model" not in [getattr(event, "phase", "") for event in run.events]
