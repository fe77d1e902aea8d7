from __future__ import annotations

import pytest

from finetuneflow.core.training.config import TrainingConfig, describe_settings
from finetuneflow.core.training.timing import (
    EtaSmoother,
    MeasuredSpeed,
    estimate_run,
    format_seconds,
    planned_steps,
)


def test_planned_steps_count_as_the_trainer_does() -> None:
    config = TrainingConfig(per_device_batch_size=4, gradient_accumulation_steps=4,
                            num_epochs=3.0)
    assert planned_steps(config, 100) == 3 * 7  # 25 batches → 7 optimiser steps an epoch
    assert planned_steps(config, 100, processes=2) == 3 * 4
    assert planned_steps(config.replace(max_steps=60), 100) == 60
    assert planned_steps(config, 1) == 3


def test_the_estimate_is_measured_step_time_times_planned_steps_plus_start_up() -> None:
    speed = MeasuredSpeed(step_s=0.5, startup_s=8.0, device="cpu", steps_timed=3)
    config = TrainingConfig(max_steps=100, eval_steps=50, per_device_batch_size=2,
                            gradient_accumulation_steps=1)
    alone = estimate_run(speed, config, train_examples=500)
    assert alone.seconds == pytest.approx(8.0 + 100 * 0.5) and alone.eval_s == 0
    with_eval = estimate_run(speed, config, train_examples=500, eval_examples=10)
    # three evaluations (steps 50, 100, final) of five forward-only batches
    assert with_eval.eval_s == pytest.approx(3 * 5 * 0.5 / 3)
    assert "100 steps × 0.5 s measured on cpu" in with_eval.summary()


def test_the_eta_is_smoothed_over_recent_steps() -> None:
    eta = EtaSmoother()
    assert eta.update(1, 5.0, 100) is None  # one point: no pace yet
    assert eta.update(10, 14.0, 100) == pytest.approx(90 * 1.0)
    steady = eta.update(20, 24.0, 100)
    spiked = eta.update(30, 64.0, 100)  # one slow stretch (4 s a step) …
    assert steady is not None and spiked is not None
    raw = 70 * 4.0
    assert spiked < raw / 2  # … moves the ETA a fifth of the way, not all of it
    calm = eta.update(40, 74.0, 100)
    assert calm is not None and calm < spiked


def test_a_resumed_process_restarts_the_average() -> None:
    eta = EtaSmoother()
    eta.update(10, 100.0, 50)
    eta.update(20, 200.0, 50)  # 10 s a step
    assert eta.update(22, 1.0, 50) is None  # a new clock: no pace yet
    assert eta.update(24, 3.0, 50) == pytest.approx(26 * 1.0)


def test_numbers_for_people() -> None:
    assert format_seconds(0.05) == "0.05 s"
    assert format_seconds(0.6176) == "0.62 s"
    assert format_seconds(3.14) == "3.1 s"
    line = describe_settings(TrainingConfig(max_steps=60, lora_r=8, lora_alpha=16))
    assert "LoRA rank 8" in line and "60 steps" in line and "learning rate 2e-4" in line
    assert "3 epochs" in describe_settings(TrainingConfig())
