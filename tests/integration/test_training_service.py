from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from finetuneflow.services.context import AppContext
from finetuneflow.services.errors import UserError
from finetuneflow.services.jobs import JobService
from finetuneflow.services.projects import ProjectService
from finetuneflow.services.training import TrainingService, complete_checkpoints
from finetuneflow.storage.tables import JobKind
from tests.helpers.cli import REPO_ROOT, cli_env, run_cli, run_cli_json

pytestmark = pytest.mark.slow


def arithmetic_dataset(path: Path, count: int = 60) -> Path:
    lines = [json.dumps({"prompt": f"What is {i} plus 1?", "completion": f"{i + 1}"})
             for i in range(count)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def training_project(home: Path, model_dir: Path, folder: Path) -> str:
    """A project made with the CLI: the tiny model and arithmetic examples."""
    project_id = run_cli_json(home, "project", "create", "Train")["id"]
    run_cli_json(home, "model", "set", project_id, str(model_dir))
    run_cli_json(home, "dataset", "import", project_id, str(arithmetic_dataset(folder / "d")))
    return project_id


@pytest.fixture
def project(home: Path, tiny_model_dir: Path, tmp_path: Path) -> str:
    return training_project(home, tiny_model_dir, tmp_path)


def test_cli_train_streams_json_events_and_stores_the_run(home: Path, project: str) -> None:
    result = run_cli(home, "train", project, "--preset", "quick", "--max-steps", "6", "--json",
                     timeout=300)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    types = [event["type"] for event in events]
    assert types[-2:] == ["finished", "result"] and "started" in types and "log" in types
    final = events[-1]
    assert final["run_id"] == 1 and final["status"] == "finished"
    assert (Path(final["adapter_dir"]) / "adapter_model.safetensors").is_file()
    listed = run_cli_json(home, "project", "list")[0]
    assert listed["latest_job"] == {"kind": "train", "status": "succeeded"}
    events_file = home / "storage" / project / "artifacts" / "run-1" / "events.jsonl"
    assert len(events_file.read_text().splitlines()) == len(events) - 1  # all but the summary
    assert (home / "storage" / project / "logs" / "train-1.log").stat().st_size > 0


def save_settings(home: Path, project: str, **settings: object) -> None:
    context = AppContext.open()
    service = TrainingService(context)
    service.save_config(project, service.config_for(project, "quick").replace(**settings))
    context.close()


def _start_cli_train(home: Path, project: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "finetuneflow", "train", project, "--json", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(home),
        cwd=REPO_ROOT)


def test_ctrl_c_stops_with_a_checkpoint_and_resume_finishes(home: Path, project: str) -> None:
    save_settings(home, project, max_steps=60, eval_steps=20, save_steps=20, logging_steps=5,
                  per_device_batch_size=2, gradient_accumulation_steps=1)
    child = _start_cli_train(home, project)
    assert child.stdout is not None
    for line in child.stdout:
        event = json.loads(line)
        if event["type"] == "checkpoint":
            child.send_signal(signal.SIGINT)
            break
    out, err = child.communicate(timeout=300)
    assert child.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["status"] == "stopped" and summary["checkpoint"]
    stopped_at = summary["step"]
    assert stopped_at < 60
    assert "Traceback" not in err

    resumed = run_cli(home, "train", project, "--resume", "--json", timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    events = [json.loads(line) for line in resumed.stdout.splitlines()]
    started = next(e for e in events if e["type"] == "started")
    assert started["start_step"] >= 20 and started["resumed_from"]
    assert events[-1]["status"] == "finished" and events[-2]["step"] == 60


def test_only_one_training_at_a_time(context: AppContext) -> None:
    project_id = ProjectService(context).create("Busy").id
    jobs = JobService(context)
    job_id = jobs.create(project_id, JobKind.TRAIN)
    jobs.start(job_id)  # owned by this (living) process
    service = TrainingService(context)
    with pytest.raises(UserError, match="Another training is running"):
        service.prepare(project_id, service.config_for(project_id, "quick"))


def test_nothing_to_resume_is_explained(home: Path, project: str) -> None:
    result = run_cli(home, "train", project, "--resume")
    assert result.returncode == 1 and "no stopped or interrupted run" in result.stderr


def test_complete_checkpoints_ignore_half_written_ones(tmp_path: Path) -> None:
    for step, complete in ((10, True), (20, True), (30, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["checkpoint-10", "checkpoint-20"]


def test_out_of_memory_suggests_the_next_smaller_settings(context: AppContext,
                                                          tiny_model_dir: Path,
                                                          tmp_path: Path) -> None:
    from finetuneflow.core.child_protocol import ErrorEvent, encode
    from finetuneflow.services.base_model import ModelService
    from finetuneflow.services.datasets import DatasetService
    from finetuneflow.services.training import RunRecorder

    project_id = ProjectService(context).create("OOM").id
    ModelService(context).choose(project_id, str(tiny_model_dir))
    DatasetService(context).import_file(project_id, arithmetic_dataset(tmp_path / "d"))
    service = TrainingService(context)
    config = service.config_for(project_id, "balanced")
    recorder = RunRecorder(context, service.prepare(project_id, config))
    recorder.begin()
    recorder.handle_line(encode(ErrorEvent(kind="oom", step=3, message=(
        "Out of GPU memory at step 3 (batch 4, sequence 1024): try QLoRA, a smaller batch or "
        "a shorter sequence."))))
    recorder.process_ended(1)
    job = JobService(context).latest(project_id, JobKind.TRAIN)
    assert job is not None and "Suggested: Turned on activation checkpointing" in job.error
    smaller = service.suggested_config(project_id)
    assert smaller is not None and smaller.activation_checkpointing
    assert smaller.effective_batch_size == config.effective_batch_size


def test_two_processes_under_accelerate_report_once(home: Path, project: str) -> None:
    """The multi-GPU path (accelerate launch, DDP), run on the CPU with gloo."""
    result = run_cli(home, "train", project, "--preset", "quick", "--max-steps", "6",
                     "--processes", "2", "--json", timeout=300)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    started = [e for e in events if e["type"] == "started"]
    assert len(started) == 1 and started[0]["processes"] == 2
    assert [e["type"] for e in events][-2:] == ["finished", "result"]
