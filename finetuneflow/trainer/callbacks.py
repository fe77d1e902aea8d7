"""Trainer callbacks: progress events, the stop request, early stopping and divergence."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from finetuneflow.core import child_protocol as protocol
from finetuneflow.core.child_protocol import (
    CheckpointEvent,
    EvalEvent,
    LogEvent,
    StartedEvent,
)
from finetuneflow.core.training.stopping import EvalWatch
from finetuneflow.trainer.channel import EventChannel
from finetuneflow.trainer.checkpoints import is_complete
from finetuneflow.trainer.stop import StopSignal


@dataclass
class Outcome:
    """How the loop ended; filled in by the callbacks."""

    reason: str = protocol.COMPLETED  # or EARLY_STOPPING, DIVERGENCE, STOPPED (on request)
    message: str = ""


@dataclass
class Progress:
    """This process's clock and token count (a resumed run restarts both)."""

    started_at: float = 0.0
    start_step: int = 0
    tokens_before: int = 0  # tokens seen by earlier processes of a resumed run
    tokens_now: int = 0  # tokens seen by this process, as TRL counts them
    eval_losses: list[float] = field(default_factory=list)

    @property
    def tokens_seen(self) -> int:
        return self.tokens_before + self.tokens_now

    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    def tokens_per_second(self) -> float | None:
        elapsed = self.elapsed()
        return self.tokens_now / elapsed if elapsed > 0 and self.tokens_now else None

    def eta(self, step: int, total: int) -> float | None:
        done = step - self.start_step
        return (total - step) * self.elapsed() / done if done > 0 else None


def tokens_in_history(history: list[dict[str, Any]]) -> int:
    """Tokens trained on before this process. TRL's running count restarts at 0 each time a
    run is resumed, so every drop in the logged count closes an earlier stretch."""
    total = last = 0
    for entry in history:
        count = int(entry.get("num_tokens", 0)) if "loss" in entry else None
        if count is None:
            continue
        if count < last:
            total += last
        last = count
    return total + last


def perplexity(loss: float | None) -> float | None:
    if loss is None or not math.isfinite(loss):
        return None
    return math.exp(loss) if loss < 700 else None  # exp overflows a float beyond ~709


class ProtocolCallback(TrainerCallback):
    """Reports the loop to the parent: started, log, eval and checkpoint events."""

    def __init__(self, channel: EventChannel, started: StartedEvent, progress: Progress,
                 memory: Callable[[], int | None] = lambda: None) -> None:
        self.channel = channel
        self.started = started
        self.progress = progress
        self.memory = memory

    def on_train_begin(self, args: TrainingArguments, state: TrainerState,
                       control: TrainerControl, **kwargs: Any) -> None:
        history = state.log_history
        self.progress.started_at = time.monotonic()
        self.progress.start_step = state.global_step
        self.progress.tokens_before = tokens_in_history(history)
        self.progress.eval_losses = [entry["eval_loss"] for entry in history
                                     if "eval_loss" in entry]
        self.started.total_steps = state.max_steps
        self.started.start_step = state.global_step
        self.channel.emit(self.started)

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if not logs or "loss" not in logs:
            return
        if "num_tokens" in logs:
            self.progress.tokens_now = int(logs["num_tokens"])
        self.channel.emit(LogEvent(
            step=state.global_step, total_steps=state.max_steps, loss=logs.get("loss"),
            learning_rate=logs.get("learning_rate"), grad_norm=logs.get("grad_norm"),
            epoch=logs.get("epoch"), tokens_seen=self.progress.tokens_seen,
            tokens_per_second=self.progress.tokens_per_second(),
            elapsed_s=round(self.progress.elapsed(), 3),
            eta_s=self.progress.eta(state.global_step, state.max_steps),
            peak_memory_bytes=self.memory()))

    def on_evaluate(self, args: TrainingArguments, state: TrainerState,
                    control: TrainerControl, metrics: dict[str, float] | None = None,
                    **kwargs: Any) -> None:
        loss = (metrics or {}).get("eval_loss")
        if loss is None:
            return
        self.progress.eval_losses.append(loss)
        finite = [value for value in self.progress.eval_losses if math.isfinite(value)]
        self.channel.emit(EvalEvent(step=state.global_step, eval_loss=loss,
                                    perplexity=perplexity(loss),
                                    best_eval_loss=min(finite) if finite else None))

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                **kwargs: Any) -> None:
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if is_complete(path):
            self.channel.emit(CheckpointEvent(step=state.global_step, path=str(path)))


class GuardCallback(TrainerCallback):
    """Early stopping (patience) and the divergence guard, on every evaluation."""

    def __init__(self, watch: EvalWatch, outcome: Outcome) -> None:
        self.watch = watch
        self.outcome = outcome
        self.active = True

    def on_train_begin(self, args: TrainingArguments, state: TrainerState,
                       control: TrainerControl, **kwargs: Any) -> None:
        # A resumed run rebuilds best loss and patience from the evaluations before it.
        self.watch.replay(entry["eval_loss"] for entry in state.log_history
                          if "eval_loss" in entry)

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if self.active and logs and "loss" in logs:
            self._decide(self.watch.observe_train_loss(logs["loss"]), control)

    def on_evaluate(self, args: TrainingArguments, state: TrainerState,
                    control: TrainerControl, metrics: dict[str, float] | None = None,
                    **kwargs: Any) -> None:
        loss = (metrics or {}).get("eval_loss")
        if self.active and loss is not None:
            self._decide(self.watch.observe(loss), control)

    def _decide(self, decision: Any, control: TrainerControl) -> None:
        if decision is None or self.outcome.reason != protocol.COMPLETED:
            return
        self.outcome.reason = decision.reason
        self.outcome.message = decision.message
        control.should_training_stop = True


class StopCallback(TrainerCallback):
    """Honours a stop request after the current optimiser step, with a checkpoint."""

    def __init__(self, stop: StopSignal, outcome: Outcome) -> None:
        self.stop = stop
        self.outcome = outcome

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        if not _any_rank(self.stop.requested, args.device):
            return
        self.outcome.reason = protocol.STOPPED
        self.outcome.message = f"Stopped at step {state.global_step} on request."
        control.should_training_stop = True
        control.should_save = True


def _any_rank(flag: bool, device: torch.device) -> bool:
    """Under DDP every rank must stop at the same step, or the others wait forever."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return flag
    tensor = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())
