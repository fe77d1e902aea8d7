"""`trainer answer JOB.json`: each variant's greedy answer to each evaluation question.

One load serves every variant (see `inference`). The questions are sorted by prompt length and
answered `batch_size` at a time, one `generate` per batch: neighbours of similar length waste
little on padding. Each answer is sent as soon as its batch ends, so a stop (after the current
batch) or a kill keeps every answer already sent. With an `eval_path`, each variant's loss on
that split is sent first, computed as the training computes it (see `_evaluator`).

Imported only once the protocol owns stdout (see `channel`).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from finetuneflow.core.child_protocol import (
    BASE,
    VARIANTS,
    AnswerJob,
    EvalLossEvent,
    ProtocolError,
    QuestionAnswerEvent,
    StatusEvent,
    StoppedEvent,
)
from finetuneflow.trainer.channel import EventChannel
from finetuneflow.trainer.data import ROLES, LoadedDataset, load_conversations
from finetuneflow.trainer.errors import ConfigError, RunContext, error_event
from finetuneflow.trainer.inference import (
    Loaded,
    generate,
    generation_config,
    load_with_adapter,
    prompt_ids,
    use,
)
from finetuneflow.trainer.model import pick_device
from finetuneflow.trainer.stop import StopSignal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Question:
    id: int
    prompt: list[int]  # the chat's tokens up to the answer


def run_answer(job_path: Path, channel: EventChannel, stop: StopSignal) -> int:
    """0 when every answer is sent or on a stop request, 1 after an error event."""
    device = pick_device()
    batch_size: int | None = None
    try:
        job = read_job(job_path)
        batch_size = job.batch_size
        evaluation = (load_conversations(Path(job.eval_path), name="evaluation set")
                      if job.eval_path else None)
        loaded = load_with_adapter(job.model_path, job.adapter_dir, device, channel)
        torch.manual_seed(job.seed)
        if evaluation is not None and not _send_losses(loaded, evaluation, job, channel, stop):
            return _stopped(channel, 0, job)
        sent_before_stop = answer_questions(loaded, job, channel, stop)
        return 0 if sent_before_stop is None else _stopped(channel, sent_before_stop, job)
    except Exception as error:
        event = error_event(error, RunContext(device=device.kind, batch=batch_size,
                                              activity="Answering the evaluation questions"))
        log.error("Answering failed (%s): %s", event.kind, event.message,
                  exc_info=event.detail is not None)
        channel.emit(event)
        return 1


def read_job(job_path: Path) -> AnswerJob:
    """The job, checked before anything loads (ConfigError says what is wrong)."""
    try:
        job = AnswerJob.read(job_path)
    except ProtocolError as error:
        raise ConfigError(f"The answer job cannot be read: {error}.") from error
    problem = _problem(job)
    if problem:
        raise ConfigError(f"The answer job cannot be used: {problem}.")
    return job


def _problem(job: AnswerJob) -> str | None:
    if job.batch_size < 1 or job.max_new_tokens < 1:
        return "batch_size and max_new_tokens must be at least 1"
    unknown = sorted(set(job.variants) - set(VARIANTS))
    if unknown:
        return f"unknown variants {', '.join(unknown)} (use {' or '.join(VARIANTS)})"
    ids = [item.get("id") if isinstance(item, dict) else None for item in job.questions]
    if not all(isinstance(key, int) and not isinstance(key, bool) for key in ids):
        return 'every question needs an integer "id"'
    if len(set(ids)) < len(ids):
        return "two questions share an id"
    for item in job.questions:
        if not _is_chat(item.get("messages")):
            return (f'question {item["id"]} needs "messages": a list of {{"role", "content"}} '
                    f"with a role among {', '.join(ROLES)}")
    return None


def _is_chat(messages: Any) -> bool:
    return isinstance(messages, list) and bool(messages) and all(
        isinstance(message, dict) and message.get("role") in ROLES
        and isinstance(message.get("content"), str) for message in messages)


def answer_questions(loaded: Loaded, job: AnswerJob, channel: EventChannel,
                     stop: StopSignal) -> int | None:
    """Send every variant's answers, batch by batch: None when all are sent, else the number
    sent when the stop request came."""
    questions = sorted((Question(item["id"], prompt_ids(loaded.tokenizer, item["messages"]))
                        for item in job.questions), key=lambda question: len(question.prompt))
    sent = 0
    for start, batch, variant in _batches(questions, job):
        if stop.requested:
            return sent
        sent += _answer_batch(loaded, start, batch, variant, job, channel)
    return None


def _batches(questions: list[Question], job: AnswerJob
             ) -> Iterator[tuple[int, list[Question], str]]:
    """(position of the batch's first question, the batch, the variant answering)."""
    for variant in job.variants:
        for start in range(0, len(questions), job.batch_size):
            yield start, questions[start:start + job.batch_size], variant


def _answer_batch(loaded: Loaded, start: int, batch: list[Question], variant: str,
                  job: AnswerJob, channel: EventChannel) -> int:
    channel.emit(StatusEvent("answering", (
        f"The {_label(variant)} model answers questions {start + 1}–"
        f"{start + len(batch)} of {len(job.questions)}…")))
    config = generation_config(loaded, max_new_tokens=job.max_new_tokens, temperature=0.0)
    answers = generate(loaded, [question.prompt for question in batch], config, variant=variant)
    for question, reply in zip(batch, answers, strict=True):
        channel.emit(QuestionAnswerEvent(question.id, variant, reply.text, reply.new_tokens))
    return len(batch)


def _send_losses(loaded: Loaded, evaluation: LoadedDataset, job: AnswerJob,
                 channel: EventChannel, stop: StopSignal) -> bool:
    """Each variant's loss on the evaluation split; False when stopped first."""
    from finetuneflow.trainer.callbacks import perplexity

    channel.emit(StatusEvent("preparing_data", "Tokenising the evaluation set…"))
    with tempfile.TemporaryDirectory(prefix="finetuneflow-answer-") as scratch:
        evaluator = _evaluator(loaded, evaluation, job, Path(scratch))
        for variant in job.variants:
            if stop.requested:
                return False
            channel.emit(StatusEvent("evaluating", (
                f"Computing the {_label(variant)} model's loss on the evaluation set…")))
            with use(loaded, variant):
                loss = evaluator.evaluate().get("eval_loss")
            channel.emit(EvalLossEvent(variant, loss, perplexity(loss)))
    return True


def _evaluator(loaded: Loaded, evaluation: LoadedDataset, job: AnswerJob, scratch: Path) -> Any:
    """An SFTTrainer that only evaluates: the tokenising, the loss mask (see `chat`) and the
    averaging of the training's evaluation, so the numbers are comparable."""
    from trl import SFTConfig, SFTTrainer

    from finetuneflow.trainer.build import (
        checkpointing_arguments,
        plan_loss,
        precision_arguments,
        sft_dataset,
    )

    plan = plan_loss(loaded.tokenizer, job.assistant_only_loss)
    arguments = SFTConfig(
        output_dir=str(scratch), per_device_eval_batch_size=job.batch_size,
        max_length=job.max_seq_length, assistant_only_loss=plan.assistant_only_loss,
        report_to="none", disable_tqdm=True,
        dataloader_num_workers=0, **checkpointing_arguments(False),
        **precision_arguments(loaded.device))
    dataset = sft_dataset(evaluation, plan, loaded.tokenizer)
    # SFTTrainer insists on a training set; nothing is trained on it.
    return SFTTrainer(model=loaded.model, args=arguments, processing_class=loaded.tokenizer,
                      train_dataset=dataset, eval_dataset=dataset)


def _label(variant: str) -> str:
    return "base" if variant == BASE else "fine-tuned"


def _stopped(channel: EventChannel, sent: int, job: AnswerJob) -> int:
    total = len(job.questions) * len(job.variants)
    channel.emit(StoppedEvent(step=sent, message=(
        f"Stopped after {sent} of {total} answers; the answers sent are kept.")))
    return 0
