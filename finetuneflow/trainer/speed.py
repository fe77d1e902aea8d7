"""`trainer speed JOB.json`: how fast this computer trains the job's model at its settings.

The model, tokenizer and trainer are built exactly as a real run builds them (same code), then
a few optimiser steps run on a sample of the real examples. The median step after warm-up and
the time from the parent starting this process to the steady state are reported in one speed
event; the process then ends at once, since nothing it made is kept.
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from finetuneflow.core.child_protocol import ProtocolError, SpeedEvent, SpeedJob, TrainJob
from finetuneflow.core.training.config import TrainingConfig
from finetuneflow.trainer.channel import EventChannel
from finetuneflow.trainer.data import load_conversations
from finetuneflow.trainer.errors import ConfigError, RunContext, error_event
from finetuneflow.trainer.run import Attempt, Inputs
from finetuneflow.trainer.stop import StopSignal

log = logging.getLogger(__name__)


def run_speed(job_path: Path, channel: EventChannel, stop: StopSignal) -> int:
    try:
        job = SpeedJob.read(job_path)
        inputs = _inputs(job)
        attempt = Attempt(inputs, channel, stop)
        parts = attempt._build(None)
        clock = StepClock(job, channel, attempt.device.label)
        parts.trainer.add_callback(clock)
        parts.trainer.train()
    except _Measured:
        return 0
    except Exception as error:
        event = error_event(error, RunContext())
        log.error("Timing the training failed (%s): %s", event.kind, event.message,
                  exc_info=event.detail is not None)
        channel.emit(event)
        return 1
    return 0 if clock.reported else 1


def _inputs(job: SpeedJob) -> Inputs:
    try:
        config = TrainingConfig.from_dict(job.config).validate()
    except (ValueError, ProtocolError) as error:
        raise ConfigError(str(error)) from error
    steps = job.warmup_steps + job.timed_steps
    # Nothing to evaluate, save or stop early: only the steps are timed.
    config = config.replace(max_steps=steps, logging_steps=1, eval_steps=steps,
                            save_steps=100_000, early_stopping_patience=0)
    work = Path(job.work_dir)
    train_job = TrainJob(run_id="speed", model_path=job.model_path, train_path=job.train_path,
                         eval_path=None, checkpoints_dir=str(work / "checkpoints"),
                         adapter_dir=str(work / "adapter"), log_dir=str(work),
                         config=config.to_dict())
    return Inputs(train_job, config, load_conversations(Path(job.train_path),
                                                        name="timing sample"), None)


class _Measured(Exception):
    """Ends the loop once the steps are timed (the rest of a run is of no use here)."""


class StepClock(TrainerCallback):  # type: ignore[misc]
    """A trainer callback: the end time of every optimiser step."""

    def __init__(self, job: SpeedJob, channel: EventChannel, device: str) -> None:
        super().__init__()
        self.job = job
        self.channel = channel
        self.device = device
        self.ends: list[float] = []  # epoch seconds, the parent's clock
        self.reported = False

    def on_step_end(self, *_args: Any, **_kwargs: Any) -> None:
        self.ends.append(time.time())
        if len(self.ends) < self.job.warmup_steps + self.job.timed_steps:
            return
        warmup = self.job.warmup_steps
        steady = [b - a for a, b in zip(self.ends[warmup - 1:], self.ends[warmup:],
                                        strict=False)]
        step_s = statistics.median(steady)
        # Everything before the steady state (imports, loading, the slower first steps)
        # beyond what those steps would cost at the steady pace.
        startup_s = max(0.0, self.ends[warmup - 1] - self.job.spawned_at - warmup * step_s)
        self.channel.emit(SpeedEvent(step_s=step_s, startup_s=startup_s, device=self.device,
                                     steps_timed=len(steady)))
        self.reported = True
        raise _Measured
