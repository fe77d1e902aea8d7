"""`trainer run JOB.json`: train one LoRA/QLoRA adapter and report every step of the way.

Order matters for the user: the job and the datasets are checked before the ML stack is
imported (a bad line fails in a second), the tokenizer before the weights (a wrong model name
fails before minutes of loading), and every failure ends as one error event.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetuneflow.core import child_protocol as protocol
from finetuneflow.core.atomic import atomic_write_text
from finetuneflow.core.child_protocol import (
    FinishedEvent,
    ProtocolError,
    StatusEvent,
    StoppedEvent,
    TrainJob,
    WarningEvent,
)
from finetuneflow.core.training.config import METHOD_LABELS, TrainingConfig
from finetuneflow.trainer import checkpoints
from finetuneflow.trainer.channel import EventChannel, is_main_rank
from finetuneflow.trainer.data import LoadedDataset, load_conversations
from finetuneflow.trainer.errors import (
    ConfigError,
    ModelNotFoundError,
    RunContext,
    error_event,
    is_local_path,
    model_not_found_message,
)
from finetuneflow.trainer.stop import StopSignal

log = logging.getLogger(__name__)


@dataclass
class Inputs:
    job: TrainJob
    config: TrainingConfig
    train: LoadedDataset
    eval: LoadedDataset | None


def run_job(job_path: Path, channel: EventChannel, stop: StopSignal) -> int:
    """Train the job; 0 when finished or stopped on request, 1 after an error event."""
    attempt: Attempt | None = None
    try:
        inputs = read_inputs(job_path, channel)
        attempt = Attempt(inputs, channel, stop)
        return attempt.run()
    except Exception as error:
        context = attempt.context() if attempt else RunContext()
        event = error_event(error, context)
        # The traceback goes to the log unless the message says it all (dataset, settings).
        log.error("Training failed (%s): %s", event.kind, event.message,
                  exc_info=event.detail is not None)
        channel.emit(event)
        return 1


def read_inputs(job_path: Path, channel: EventChannel) -> Inputs:
    try:
        job = TrainJob.read(job_path)
    except ProtocolError as error:
        raise ConfigError(f"The training job cannot be read: {error}.") from error
    try:
        config = job.training_config()
    except ValueError as error:
        raise ConfigError(str(error)) from error
    channel.emit(StatusEvent("validating_data", "Checking the datasets…"))
    train = load_conversations(Path(job.train_path), name="training set")
    evaluation = (load_conversations(Path(job.eval_path), name="evaluation set")
                  if job.eval_path else None)
    return Inputs(job, config, train, evaluation)


class Attempt:
    """One `train()` call, from loading the model to the finished (or stopped) event."""

    def __init__(self, inputs: Inputs, channel: EventChannel, stop: StopSignal) -> None:
        self.inputs = inputs
        self.job = inputs.job
        self.config = inputs.config
        self.channel = channel
        self.stop = stop
        self.trainer: Any = None
        self.device: Any = None

    def context(self) -> RunContext:
        step = None
        if self.trainer is not None and self.trainer.state.global_step is not None:
            step = self.trainer.state.global_step + 1  # the step that was running
        return RunContext(step=step, batch=self.config.per_device_batch_size,
                          seq_len=self.config.max_seq_length,
                          device=self.device.kind if self.device else "cuda",
                          output_dir=self.job.checkpoints_dir)

    def run(self) -> int:
        resume_from = self._resume_point()
        parts = self._build(resume_from)
        if self.stop.requested:  # asked to stop while loading: nothing new to save
            return self._stopped(resume_from)
        output = self.trainer.train(
            resume_from_checkpoint=str(resume_from) if resume_from else None)
        if parts.outcome.reason == protocol.STOPPED:
            return self._stopped(self._latest_checkpoint())
        parts.guard.active = False  # the final evaluation must not decide anything
        return self._finish(output, parts)

    def _build(self, resume_from: Path | None) -> Any:
        """Import the stack, load tokenizer and model, assemble the trainer."""
        model_path = self.job.model_path
        if is_local_path(model_path) and not Path(model_path).expanduser().is_dir():
            raise ModelNotFoundError(model_not_found_message(model_path))  # before the imports
        from finetuneflow.trainer import build

        self.device = build.pick_device()
        method = METHOD_LABELS[self.config.method]
        self.channel.emit(StatusEvent("loading_model", f"Loading {model_path} "
                                      f"({method}, {self.device.label})…"))
        if self.config.method == "qlora" and self.device.kind != "cuda":
            self.channel.emit(WarningEvent("qlora_without_cuda", (
                "QLoRA runs here without an NVIDIA GPU: 4-bit layers are slow on this device. "
                "LoRA is faster when the model fits in memory.")))
        tokenizer = build.load_tokenizer(model_path)
        plan = build.plan_loss(tokenizer, self.config.assistant_only_loss)
        if plan.warning:
            self.channel.emit(plan.warning)
        model = build.load_model(model_path, self.config, self.device)
        self.channel.emit(StatusEvent("preparing_data", "Tokenising the datasets…"))
        parts = build.build_trainer(self.inputs, model, tokenizer, plan, self.device,
                                    self.channel, self.stop, resume_from)
        self.trainer = parts.trainer
        return parts

    def _resume_point(self) -> Path | None:
        folder = Path(self.job.checkpoints_dir)
        if is_main_rank():
            checkpoints.set_aside_incomplete(folder)
        latest = checkpoints.latest_complete(folder)
        if self.job.resume:
            if latest is None:
                self.channel.emit(WarningEvent("nothing_to_resume", (
                    "There is no complete checkpoint to resume from, so training starts from "
                    "the beginning.")))
            return latest
        if latest is not None:
            raise ConfigError(f"The checkpoint folder {folder} already holds checkpoints from an "
                              "earlier run: resume that run, or start a new one.")
        return None

    def _latest_checkpoint(self) -> Path | None:
        return checkpoints.latest_complete(Path(self.job.checkpoints_dir))

    def _stopped(self, checkpoint: Path | None) -> int:
        step = self.trainer.state.global_step if self.trainer else 0
        if checkpoint is not None:
            step = max(step, checkpoints.checkpoint_step(checkpoint) or 0)
        if checkpoint is None:
            message = "Stopped before any checkpoint was saved: a new run starts from scratch."
        else:
            message = f"Stopped at step {step}. Resume continues from {checkpoint.name}."
        self.channel.emit(StoppedEvent(step=step, message=message,
                                       checkpoint=str(checkpoint) if checkpoint else None))
        return 0

    def _finish(self, output: Any, parts: Any) -> int:
        if parts.outcome.reason == protocol.DIVERGENCE and not (
                self.trainer.state.best_model_checkpoint):
            self.channel.emit(WarningEvent("diverged_adapter", (
                "The loss diverged before any evaluated checkpoint could be kept, so the saved "
                "adapter is from the last step and is probably unusable. Lower the learning "
                "rate and train again.")))
        self.channel.emit(StatusEvent("saving", "Saving the adapter…"))
        self.trainer.save_model(self.job.adapter_dir)  # with the tokenizer
        final_loss = None
        if self.inputs.eval is not None:
            self.channel.emit(StatusEvent("evaluating", "Final evaluation…"))
            final_loss = self.trainer.evaluate().get("eval_loss")
        finished = self._finished_event(output, parts, final_loss)
        if is_main_rank():
            write_metrics(self.job.metrics_path, self._metrics(finished, parts))
        self.channel.emit(finished)
        return 0

    def _finished_event(self, output: Any, parts: Any, final_loss: float | None
                        ) -> FinishedEvent:
        from finetuneflow.trainer import build

        runtime = float(output.metrics.get("train_runtime") or parts.progress.elapsed())
        new_tokens = build.tokens_this_process(self.trainer, parts.progress)
        return FinishedEvent(
            step=self.trainer.state.global_step, reason=parts.outcome.reason,
            message=parts.outcome.message or "Training finished.",
            adapter_dir=self.job.adapter_dir, metrics_path=str(self.job.metrics_path),
            final_eval_loss=final_loss, perplexity=build.perplexity(final_loss),
            train_loss=output.metrics.get("train_loss"), runtime_s=round(runtime, 3),
            tokens_seen=parts.progress.tokens_before + new_tokens,
            tokens_per_second=new_tokens / runtime if runtime > 0 else None,
            peak_memory_bytes=build.peak_memory_bytes(self.device),
            best_checkpoint=self.trainer.state.best_model_checkpoint)

    def _metrics(self, finished: FinishedEvent, parts: Any) -> dict[str, Any]:
        history = self.trainer.state.log_history
        return {
            "run_id": self.job.run_id,
            "model": self.job.model_path,
            "device": self.device.label,
            "method": self.config.method,
            "loss_on": parts.started.loss_on,
            "reason": finished.reason,
            "steps": finished.step,
            "total_steps": self.trainer.state.max_steps,
            # What was trained, not what was set: max steps overrides the epochs setting.
            "epochs": self.trainer.state.epoch,
            "train_examples": parts.started.train_examples,
            "eval_examples": parts.started.eval_examples,
            "trainable_params": parts.started.trainable_params,
            "total_params": parts.started.total_params,
            "final_eval_loss": finished.final_eval_loss,
            "perplexity": finished.perplexity,
            "train_loss": finished.train_loss,
            "runtime_s": finished.runtime_s,
            "tokens_seen": finished.tokens_seen,
            "tokens_per_second": finished.tokens_per_second,
            "peak_memory_bytes": finished.peak_memory_bytes,
            "best_checkpoint": finished.best_checkpoint,
            "loss_history": [_pick(entry, "step", "epoch", "loss", "learning_rate", "grad_norm")
                             for entry in history if "loss" in entry],
            "eval_history": [_pick(entry, "step", "epoch", "eval_loss")
                             for entry in history if "eval_loss" in entry],
            "config": self.config.to_dict(),
        }


def _pick(entry: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {key: entry[key] for key in keys if key in entry}


def _finite(value: Any) -> Any:
    """NaN/inf → None, recursively: metrics.json stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    """Complete or not at all: a crash never leaves half a metrics.json."""
    atomic_write_text(path, json.dumps(_finite(metrics), indent=2, allow_nan=False) + "\n")


def configure_logging() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
