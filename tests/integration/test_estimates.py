"""The Hardware step on the command line: the time a run takes, measured on this computer;
what `train` says before it starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetuneflow.services.context import AppContext
from finetuneflow.services.hardware import HardwareService
from tests.helpers.cli import run_cli, run_cli_json
from tests.integration.test_training_service import training_project

pytestmark = pytest.mark.slow


@pytest.fixture
def project(home: Path, tiny_model_dir: Path, tmp_path: Path) -> str:
    return training_project(home, tiny_model_dir, tmp_path)


def test_hardware_for_a_project_times_the_model_and_caches_it(home: Path,
                                                              project: str) -> None:
    result = run_cli_json(home, "hardware", "--project", project)
    assert {"gpus", "cpu_cores", "ram_total_bytes"} <= set(result)  # the old keys stay
    plan = result["plan"]
    estimate = plan["estimate"]
    assert estimate["measured"] and estimate["device"] == "cpu"
    assert 0 < estimate["step_s"] < 60 and estimate["startup_s"] > 0
    assert estimate["steps"] > 0 and estimate["seconds"] == pytest.approx(
        estimate["startup_s"] + estimate["steps"] * estimate["step_s"] + estimate["eval_s"])
    assert plan["train_examples"] + plan["eval_examples"] == 60
    speed_cache = home / "speed.json"
    measured = json.loads(speed_cache.read_text())
    assert len(measured) == 1

    human = run_cli(home, "hardware", "--project", project)  # from the cache: same numbers
    assert human.returncode == 0, human.stderr
    assert "Recommendation: LoRA on CPU" in human.stdout
    assert f"{estimate['steps']} steps ×" in human.stdout and "measured on cpu" in human.stdout
    assert json.loads(speed_cache.read_text()) == measured


def test_the_cache_is_per_model_and_settings(context: AppContext, tiny_model_dir: Path,
                                             project: str) -> None:
    from finetuneflow.services.training import TrainingService

    service = TrainingService(context)
    config = service.config_for(project, "quick")
    hardware = HardwareService(context)
    assert hardware.cached_speed(tiny_model_dir, config) is None
    first = service.estimate_time(project, config)
    assert first is not None
    assert hardware.cached_speed(tiny_model_dir, config) is not None
    assert hardware.cached_speed(tiny_model_dir, config.replace(max_seq_length=256)) is None
    # Settings that change the number of steps, not their time, reuse the measurement.
    longer = service.cached_time(project, config.replace(max_steps=120))
    assert longer is not None and longer.steps == 120 and longer.step_s == first.step_s


def test_train_prints_its_settings_and_warns_of_a_small_evaluation_set(
        home: Path, project: str) -> None:
    result = run_cli(home, "train", project, "--preset", "quick", "--max-steps", "5",
                     timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    settings = next(line for line in lines if line.startswith("Settings: "))
    assert "LoRA rank 8" in settings and "5 steps" in settings
    assert lines.index(settings) < next(i for i, line in enumerate(lines) if "step " in line)
    assert any(line.startswith("warning: Only 6 evaluation examples") for line in lines)

    as_json = run_cli(home, "train", project, "--preset", "quick", "--max-steps", "5",
                      "--json", timeout=300)
    final = json.loads(as_json.stdout.splitlines()[-1])
    assert final["type"] == "result" and final["settings"]["max_steps"] == 5
    assert final["settings"]["lora_r"] == 8


def test_qlora_without_cuda_is_refused_with_the_reason(home: Path, project: str) -> None:
    probe = run_cli_json(home, "hardware")
    if probe["gpus"]:
        pytest.skip("this computer has CUDA")
    result = run_cli(home, "train", project, "--method", "qlora", "--max-steps", "10")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "finetuneflow: error: QLoRA needs an NVIDIA GPU with CUDA (bitsandbytes loads the "
        "model in 4-bit there), and none was found on this computer. Train with --method "
        "lora, or on a computer with one.")
    assert run_cli_json(home, "project", "list")[0]["latest_job"] is None
