"""`finetuneflow train PROJECT --on NAME`: the real CLI, the real OpenSSH client against a real
sshd on 127.0.0.1 (tests/helpers/sshd.py), the real trainer there on the tiny model, in a
remote home of its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from finetuneflow.services.context import AppContext
from finetuneflow.services.jobs import JobService
from finetuneflow.services.remote_training import RemoteMachine, RemoteRun
from finetuneflow.storage.machines import MachineStore
from finetuneflow.storage.tables import JobKind, JobStatus
from tests.helpers.cli import REPO_ROOT, cli_env, run_cli, run_cli_json
from tests.helpers.processes import processes
from tests.helpers.sshd import Sshd
from tests.integration.test_training_service import save_settings, training_project

pytestmark = pytest.mark.slow
MACHINE = "box"


@pytest.fixture
def remote_home(tmp_path: Path) -> Path:
    return tmp_path / "remote-home"


@pytest.fixture
def machine(home: Path, sshd: Sshd, remote_home: Path) -> str:
    """The sshd as a machine whose host key is trusted, with its own remote home."""
    run_cli_json(home, "machine", "add", MACHINE, sshd.url, "--key", str(sshd.user_key),
                 "--python", sys.executable)
    machines = json.loads((home / "machines.json").read_text())
    machines["machines"][0]["remote_home"] = str(remote_home)
    (home / "machines.json").write_text(json.dumps(machines))
    scan = subprocess.run(["ssh-keyscan", "-p", str(sshd.port), "127.0.0.1"],
                          capture_output=True, text=True, check=True)
    (home / "ssh").mkdir(exist_ok=True)
    (home / "ssh" / "known_hosts").write_text(scan.stdout)
    return MACHINE


@pytest.fixture
def project(home: Path, tiny_model_dir: Path, tmp_path: Path) -> str:
    return training_project(home, tiny_model_dir, tmp_path)


def events_of(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def losses(events: list[dict[str, Any]]) -> list[tuple[int, float]]:
    return [(e["step"], e["loss"]) for e in events if e["type"] == "log" and "loss" in e]


def start_train(home: Path, project: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "finetuneflow", "train", project, "--json", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(home),
        cwd=REPO_ROOT)


def read_until(child: subprocess.Popen[str], kind: str) -> list[dict[str, Any]]:
    """The events the CLI printed up to and including the first of `kind`."""
    assert child.stdout is not None
    seen = []
    for line in child.stdout:
        seen.append(json.loads(line))
        if seen[-1]["type"] == kind:
            return seen
    raise AssertionError(f"no {kind} event: {child.communicate()[1]}")


def remote_pid(remote_home: Path, project: str, run_id: int) -> int:
    return int((remote_home / "runs" / project / f"run-{run_id}" / "pid").read_text())


def train_job(home: Path, project: str) -> Any:
    context = AppContext.open()
    try:
        return JobService(context).latest(project, JobKind.TRAIN)
    finally:
        context.close()


def test_remote_run_matches_local_losses_and_its_adapter_exports(
        home: Path, project: str, machine: str, remote_home: Path) -> None:
    local = run_cli(home, "train", project, "--preset", "quick", "--max-steps", "6", "--json",
                    timeout=600)
    assert local.returncode == 0, local.stderr
    remote = run_cli(home, "train", project, "--preset", "quick", "--max-steps", "6", "--json",
                     "--on", machine, timeout=600)
    assert remote.returncode == 0, remote.stderr
    local_events, remote_events = events_of(local.stdout), events_of(remote.stdout)
    (local_steps, local_losses), (remote_steps, remote_losses) = (
        zip(*losses(local_events), strict=True), zip(*losses(remote_events), strict=True))
    assert remote_steps == local_steps and len(remote_steps) >= 2
    assert remote_losses == pytest.approx(local_losses, rel=1e-4)
    final = remote_events[-1]
    assert final["status"] == "finished" and final["run_id"] == 2
    run_dir = home / "storage" / project / "artifacts" / "run-2"
    assert final["adapter_dir"] == str(home / "storage" / project / "artifacts" / "adapter-2")
    assert (Path(final["adapter_dir"]) / "adapter_model.safetensors").is_file()
    assert final["metrics_path"] == str(run_dir / "metrics.json")
    assert json.loads((run_dir / "metrics.json").read_text())
    stored = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert [e["type"] for e in stored] == [e["type"] for e in remote_events[:-1]]
    assert str(remote_home) not in (run_dir / "events.jsonl").read_text()
    assert "Training on box" in remote.stderr
    assert (home / "storage" / project / "logs" / "train-2.log").stat().st_size > 0
    assert train_job(home, project).status is JobStatus.SUCCEEDED
    # The model went once into the remote home's models; the run's files beside the run.
    assert len(list((remote_home / "models").iterdir())) == 1
    assert (remote_home / "runs" / project / "run-2" / "adapter").is_dir()

    chat = run_cli(home, "chat", project, "What is 2 plus 2?", "--max-tokens", "4",
                   "--temperature", "0", timeout=300)
    assert chat.returncode == 0, chat.stderr
    exported = run_cli(home, "export", project, "--no-merged", "--sample-tokens", "4",
                       "--out", str(home / "out.zip"), "--json", timeout=600)
    assert exported.returncode == 0, exported.stderr
    assert any(f["path"].startswith("adapter/") for f in json.loads(exported.stdout)["files"])


def test_the_model_goes_once_and_a_broken_upload_continues(
        home: Path, machine: str, tiny_model_dir: Path, remote_home: Path) -> None:
    """What `train --on` sends of a local model (the run above sends it whole): a partial
    upload (a `.part` file left by a broken transfer) continues from where it broke, and a
    model already there is not sent again."""
    context = AppContext.open()
    try:
        store = MachineStore(context.home)
        remote = RemoteMachine(store, store.get(machine))
    finally:
        context.close()
    home_there = remote.home()

    def send() -> tuple[str, list[str]]:
        said: list[str] = []
        return RemoteRun.upload_model(remote, home_there, str(tiny_model_dir), said.append), said

    model_dir, said = send()
    assert Path(model_dir).parent == remote_home / "models"
    sent = {path.name for path in tiny_model_dir.iterdir() if path.is_file()}
    # The manifest last: a folder that holds it is whole.
    assert {line.split()[1] for line in said[:-1] if line.startswith("Uploading")} == sent
    assert said[-1] == "Uploading manifest.json to box"
    weights = next(Path(model_dir).glob("*.safetensors"))
    whole = weights.read_bytes()
    weights.unlink()
    (Path(model_dir) / ".finetuneflow-manifest.json").unlink()
    Path(f"{weights}.part").write_bytes(whole[: len(whole) // 2])

    again, said = send()
    assert again == model_dir
    assert said == ["Checking the base model's files",
                    f"Uploading {weights.name} to box (from byte {len(whole) // 2})",
                    "Uploading manifest.json to box"]
    assert weights.read_bytes() == whole and not Path(f"{weights}.part").exists()
    assert send() == (model_dir, ["Checking the base model's files"])


# Long enough that a stop or a kill sent after the first checkpoint came back still finds the
# trainer training: 30 tiny steps can all be done while that checkpoint is being copied.
STOPPED_RUN_STEPS = 400


def long_run(home: Path, project: str, steps: int = 30) -> None:
    save_settings(home, project, max_steps=steps, eval_steps=10, save_steps=10, logging_steps=1,
                  per_device_batch_size=2, gradient_accumulation_steps=1)


def test_a_killed_ssh_client_reconnects_and_every_step_shows_once(
        home: Path, project: str, machine: str) -> None:
    long_run(home, project)
    child = start_train(home, project, "--on", machine)
    seen = read_until(child, "log")
    (follower,) = [pid for pid, command in processes(parent=child.pid) if " follow " in command]
    os.kill(follower, signal.SIGKILL)
    out, err = child.communicate(timeout=600)
    assert child.returncode == 0, err
    events = seen + events_of(out)
    steps = [step for step, _ in losses(events)]
    assert steps == list(range(1, 31))
    assert events[-1]["status"] == "finished"
    assert "Lost the connection to box" in err


def test_a_dead_cli_reattaches_where_it_stopped(home: Path, project: str, machine: str) -> None:
    long_run(home, project)
    child = start_train(home, project, "--on", machine)
    seen = read_until(child, "log")
    child.kill()  # the laptop's command dies; the run goes on there
    child.communicate()
    attached = run_cli(home, "train", project, "--on", machine, "--attach", "--json",
                       timeout=600)
    assert attached.returncode == 0, attached.stderr
    events = seen + events_of(attached.stdout)
    stored = (home / "storage" / project / "artifacts" / "run-1" / "events.jsonl").read_text()
    stored_steps = [step for step, _ in losses(events_of(stored))]
    assert stored_steps == list(range(1, 31))
    # The killed command may have stored a step it had not printed yet: none is lost.
    assert set(step for step, _ in losses(events)) <= set(stored_steps)
    assert events[-1]["status"] == "finished"
    assert train_job(home, project).status is JobStatus.SUCCEEDED
    again = run_cli(home, "train", project, "--on", machine, "--attach")
    assert again.returncode == 1 and "nothing to reattach to" in again.stderr


def test_stop_reaches_the_remote_trainer_and_resume_continues_here(
        home: Path, project: str, machine: str) -> None:
    long_run(home, project, STOPPED_RUN_STEPS)
    child = start_train(home, project, "--on", machine)
    read_until(child, "checkpoint")
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=600)
    assert child.returncode == 0, err
    summary = events_of(out)[-1]
    assert summary["status"] == "stopped" and summary["step"] < STOPPED_RUN_STEPS
    local_checkpoint = Path(summary["checkpoint"])
    assert local_checkpoint.parent == home / "storage" / project / "artifacts" / "run-1" / \
        "checkpoints"
    assert (local_checkpoint / "trainer_state.json").is_file()
    resumed = run_cli(home, "train", project, "--resume", "--json", timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    events = events_of(resumed.stdout)
    started = next(e for e in events if e["type"] == "started")
    assert started["start_step"] >= 10 and events[-1]["status"] == "finished"


def test_a_stop_while_the_machine_is_out_of_reach_reaches_it_once_it_is_back(
        home: Path, project: str, machine: str, sshd: Sshd) -> None:
    long_run(home, project, STOPPED_RUN_STEPS)
    child = start_train(home, project, "--on", machine)
    read_until(child, "log")
    sshd.stop()  # no new connection gets through; the one following the run is cut too
    (follower,) = [pid for pid, command in processes(parent=child.pid) if " follow " in command]
    os.kill(follower, signal.SIGKILL)
    child.send_signal(signal.SIGINT)  # Stop, while the machine cannot be reached
    time.sleep(3)
    sshd.start()
    out, err = child.communicate(timeout=600)
    assert child.returncode == 0, err
    summary = events_of(out)[-1]
    assert summary["status"] == "stopped" and summary["step"] < STOPPED_RUN_STEPS, err
    assert train_job(home, project).status is JobStatus.CANCELLED


def test_a_killed_remote_trainer_fails_the_run_and_keeps_the_checkpoint(
        home: Path, project: str, machine: str, remote_home: Path) -> None:
    long_run(home, project, STOPPED_RUN_STEPS)
    child = start_train(home, project, "--on", machine)
    read_until(child, "checkpoint")
    os.killpg(remote_pid(remote_home, project, 1), signal.SIGKILL)
    out, err = child.communicate(timeout=600)
    assert child.returncode == 1
    assert events_of(out)[-1]["status"] == "interrupted"
    assert "The trainer on box ended without finishing (it was killed)" in err
    job = train_job(home, project)
    assert job.status is JobStatus.FAILED and "ended without finishing" in job.error
    checkpoints = home / "storage" / project / "artifacts" / "run-1" / "checkpoints"
    assert (checkpoints / "checkpoint-10" / "trainer_state.json").is_file()


def test_an_unknown_machine_is_refused_before_anything_runs(home: Path, project: str) -> None:
    result = run_cli(home, "train", project, "--on", "nowhere")
    assert result.returncode == 1 and "No machine is named 'nowhere'" in result.stderr
    attach = run_cli(home, "train", project, "--attach")
    assert attach.returncode == 1 and "add --on NAME" in attach.stderr


def test_attach_to_a_run_that_trained_here_changes_nothing(home: Path, project: str,
                                                            machine: str) -> None:
    nothing = run_cli(home, "train", project, "--on", machine, "--attach")
    assert nothing.returncode == 1 and "has no run yet" in nothing.stderr
    local = run_cli(home, "train", project, "--preset", "quick", "--max-steps", "5", timeout=600)
    assert local.returncode == 0, local.stderr
    refused = run_cli(home, "train", project, "--on", machine, "--attach")
    assert refused.returncode == 1
    assert "Run 1 did not train on another machine" in refused.stderr
    assert train_job(home, project).status is JobStatus.SUCCEEDED


def test_two_processes_there_report_once(home: Path, project: str, machine: str) -> None:
    """accelerate launch on the remote side (gloo on the CPU)."""
    result = run_cli(home, "train", project, "--preset", "quick", "--max-steps", "5", "--json",
                     "--on", machine, "--processes", "2", timeout=600)
    assert result.returncode == 0, result.stderr
    events = events_of(result.stdout)
    started = [e for e in events if e["type"] == "started"]
    assert len(started) == 1 and started[0]["processes"] == 2
    assert events[-1]["status"] == "finished"
