"""How long a training run takes: from a speed measured on this machine, and live, while it runs.

The trainer child's speed probe (`trainer speed`) times a few optimiser steps of the chosen
model at the chosen settings; `estimate_run` turns that into the time of a whole run. During a
run, `EtaSmoother` turns the step times into an ETA that does not swing with each step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from finetuneflow.core.training.config import TrainingConfig

# Evaluation runs the forward pass only: about a third of a training micro-batch.
EVAL_SHARE_OF_MICRO_BATCH = 1 / 3
ETA_SMOOTHING = 0.2  # weight of the newest step time in the moving average


@dataclass(frozen=True)
class MeasuredSpeed:
    """What the speed probe measured: seconds per optimiser step and the fixed start-up cost
    (process start, imports, tokenizer and model load, trainer set-up), on `device`."""

    step_s: float
    startup_s: float
    device: str
    steps_timed: int
    measured_at: float = 0.0  # epoch seconds


@dataclass(frozen=True)
class RunEstimate:
    seconds: float
    steps: int
    step_s: float
    startup_s: float
    eval_s: float
    device: str

    def summary(self) -> str:
        from finetuneflow.core.units import format_duration

        return (f"about {format_duration(self.seconds)} ({self.steps} steps × "
                f"{format_seconds(self.step_s)} measured on {self.device}, plus "
                f"{format_duration(self.startup_s)} to start"
                + (f" and {format_duration(self.eval_s)} of evaluation" if self.eval_s >= 1
                   else "") + ")")


def format_seconds(seconds: float) -> str:
    """'0.05 s', '1.2 s', '12 s': a step time as people read it."""
    if seconds < 1:
        return f"{seconds:.2g} s"
    if seconds < 10:
        return f"{seconds:.1f} s"
    return f"{seconds:.0f} s"


def planned_steps(config: TrainingConfig, train_examples: int, processes: int = 1) -> int:
    """Optimiser steps the trainer will run, as transformers counts them."""
    if config.max_steps:
        return config.max_steps
    batches = math.ceil(train_examples / (config.per_device_batch_size * max(1, processes)))
    per_epoch = max(1, math.ceil(batches / config.gradient_accumulation_steps))
    return max(1, math.ceil(config.num_epochs * per_epoch))


def evaluations(config: TrainingConfig, steps: int, eval_examples: int) -> int:
    """Evaluation passes: one every `eval_steps`, plus the final one."""
    if eval_examples <= 0:
        return 0
    return steps // config.eval_steps + 1


def estimate_run(speed: MeasuredSpeed, config: TrainingConfig, train_examples: int,
                 eval_examples: int = 0, processes: int = 1) -> RunEstimate:
    """Measured seconds per step × planned steps, plus start-up and evaluations."""
    steps = planned_steps(config, train_examples, processes)
    micro_batch_s = speed.step_s / config.gradient_accumulation_steps
    eval_batches = math.ceil(eval_examples / config.per_device_batch_size)
    eval_s = (evaluations(config, steps, eval_examples) * eval_batches * micro_batch_s
              * EVAL_SHARE_OF_MICRO_BATCH)
    seconds = speed.startup_s + steps * speed.step_s + eval_s
    return RunEstimate(seconds, steps, speed.step_s, speed.startup_s, eval_s, speed.device)


class EtaSmoother:
    """An ETA from an exponential moving average of the recent seconds per step.

    Fed with (step, seconds since the loop started) from each log event. A resumed run
    restarts its clock: a clock that goes back starts the average afresh."""

    def __init__(self, smoothing: float = ETA_SMOOTHING) -> None:
        self.smoothing = smoothing
        self.step_s: float | None = None
        self._last: tuple[int, float] | None = None

    def update(self, step: int, elapsed_s: float | None, total_steps: int) -> float | None:
        if elapsed_s is None:
            return self.eta(step, total_steps)
        last = self._last
        if last is not None and (elapsed_s < last[1] or step < last[0]):
            self.step_s, last = None, None  # a new process (resumed): start again
        if last is not None and step > last[0]:
            sample = (elapsed_s - last[1]) / (step - last[0])
            self.step_s = sample if self.step_s is None else (
                self.smoothing * sample + (1 - self.smoothing) * self.step_s)
        if last is None or step > last[0]:
            self._last = (step, elapsed_s)
        return self.eta(step, total_steps)

    def eta(self, step: int, total_steps: int) -> float | None:
        if self.step_s is None:
            return None
        return max(0, total_steps - step) * self.step_s
