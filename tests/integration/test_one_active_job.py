"""One running job per project and kind, across processes; a killed training resumes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.cli import REPO_ROOT, cli_env, run_cli
from tests.helpers.fake_llm import FakeLLMServer
from tests.integration.test_generation_resume import new_project, unique_document
from tests.integration.test_training_service import save_settings, training_project

pytestmark = pytest.mark.slow

BUSY = "already has a {kind} job running (job "


def _start(home: Path, *args: str) -> subprocess.Popen[str]:
    """The real CLI in its own process group (a kill -9 of the group takes its children)."""
    return subprocess.Popen([sys.executable, "-m", "finetuneflow", *args], env=cli_env(home),
                            cwd=REPO_ROOT, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)


def _one_refused(children: list[subprocess.Popen[str]], kind: str, timeout: float
                 ) -> None:
    results = [(child, *child.communicate(timeout=timeout)) for child in children]
    refused = [err for child, _out, err in results if child.returncode != 0]
    finished = [child for child, _out, _err in results if child.returncode == 0]
    assert len(refused) == 1 and len(finished) == 1, [err for *_, err in results]
    message = refused[0].strip().splitlines()[-1]
    assert BUSY.format(kind=kind) in message or "Another training is running" in message, \
        message
    assert "Traceback" not in refused[0]


def test_two_generations_of_one_project_one_is_refused(home: Path, tmp_path: Path,
                                                       tiny_model_dir: Path) -> None:
    with FakeLLMServer(latency_ms=300) as server:
        project = new_project(home, tiny_model_dir, unique_document(tmp_path), server)
        children = [_start(home, "generate", project, "--full") for _ in range(2)]
        _one_refused(children, "generate", timeout=300)
    with sqlite3.connect(home / "finetuneflow.db") as db:
        rows, hashes = db.execute(
            "SELECT count(*), count(DISTINCT content_hash) FROM dataset_examples "
            "WHERE split != 'preview' AND status = 'accepted'").fetchone()
        jobs = db.execute("SELECT status, count(*) FROM jobs WHERE kind = 'generate' "
                          "GROUP BY status").fetchall()
    assert rows == hashes > 0
    assert jobs == [("succeeded", 1)]  # the refused job never ran: nothing is kept of it


def test_refused_with_the_running_jobs_name_and_process(home: Path, tmp_path: Path,
                                                        tiny_model_dir: Path) -> None:
    with FakeLLMServer(latency_ms=300) as server:
        project = new_project(home, tiny_model_dir, unique_document(tmp_path), server)
        first = _start(home, "generate", project, "--full")
        try:
            _wait_for(lambda: _running_job(home, "generate") is not None, first)
            job_id = _running_job(home, "generate")
            second = run_cli(home, "generate", project, "--full")
        finally:
            first.kill()
            first.communicate()
    assert second.returncode == 1
    assert second.stderr.strip().splitlines()[-1] == (
        f"finetuneflow: error: “Ledgers” already has a generate job running (job {job_id}, "
        f"process {first.pid}): wait for it or stop it first.")


def _running_job(home: Path, kind: str) -> int | None:
    with sqlite3.connect(home / "finetuneflow.db") as db:
        row = db.execute("SELECT id FROM jobs WHERE kind = ? AND status = 'running'",
                         (kind,)).fetchone()
    return row[0] if row else None


def _wait_for(condition, child: subprocess.Popen[str], seconds: float = 120) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        assert child.poll() is None, child.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.fixture
def project(home: Path, tiny_model_dir: Path, tmp_path: Path) -> str:
    return training_project(home, tiny_model_dir, tmp_path)


def test_two_trainings_of_one_project_one_is_refused(home: Path, project: str) -> None:
    save_settings(home, project, max_steps=20, eval_steps=10, save_steps=10, logging_steps=5,
                  per_device_batch_size=2, gradient_accumulation_steps=1)
    children = [_start(home, "train", project) for _ in range(2)]
    _one_refused(children, "train", timeout=600)


def test_kill_9_during_training_then_resume_from_the_last_checkpoint(home: Path,
                                                                     project: str) -> None:
    save_settings(home, project, max_steps=60, eval_steps=20, save_steps=20, logging_steps=5,
                  per_device_batch_size=2, gradient_accumulation_steps=1)
    child = _start(home, "train", project, "--json")
    assert child.stdout is not None
    checkpoint = None
    for line in child.stdout:
        event = json.loads(line)
        if event["type"] == "checkpoint":
            checkpoint = event
            break
    assert checkpoint is not None, child.communicate()[1]
    os.killpg(child.pid, signal.SIGKILL)  # the CLI and the trainer child, no goodbye
    child.communicate()
    # A checkpoint cut by the kill: no trainer_state.json, so resume must not use it.
    half = Path(checkpoint["path"]).with_name(f"checkpoint-{checkpoint['step'] + 20}")
    half.mkdir()
    (half / "adapter_model.safetensors").write_bytes(b"cut short")

    resumed = run_cli(home, "train", project, "--resume", "--json", timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    events = [json.loads(line) for line in resumed.stdout.splitlines()]
    started = next(e for e in events if e["type"] == "started")
    assert started["start_step"] == checkpoint["step"] > 0
    assert Path(started["resumed_from"]).name == Path(checkpoint["path"]).name
    assert events[-1]["status"] == "finished" and events[-1]["run_id"] == 1
    with sqlite3.connect(home / "finetuneflow.db") as db:
        assert db.execute("SELECT status FROM runs").fetchall() == [("succeeded",)]
        assert db.execute("SELECT status FROM jobs WHERE kind = 'train' ORDER BY id"
                          ).fetchall() == [("interrupted",), ("succeeded",)]
