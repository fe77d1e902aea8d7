"""`finetuneflow train PROJECT --on A,B --processes-per-machine N`: one run over two machines.

Both machines are the real sshd on 127.0.0.1 (tests/helpers/sshd.py), each with a remote home
of its own, so each runs its own trainer under accelerate's multi-machine launch (gloo on the
CPU); the ranks meet on a port of the first machine, as they would across a network.
"""

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

from finetuneflow.storage.tables import JobStatus
from tests.helpers.cli import run_cli, run_cli_json
from tests.helpers.processes import processes
from tests.helpers.sshd import Sshd, running_sshd
from tests.integration.test_remote_training import (
    events_of,
    losses,
    read_until,
    remote_pid,
    start_train,
    train_job,
)
from tests.integration.test_training_service import save_settings, training_project

pytestmark = pytest.mark.slow
NODES = ("alpha", "beta")
ON = ",".join(NODES)


def add_machines(home: Path, sshd: Sshd, homes: dict[str, Path]) -> None:
    """Machines reaching the sshd, each with the remote home given; its host key trusted."""
    for name in homes:
        run_cli_json(home, "machine", "add", name, sshd.url, "--key", str(sshd.user_key),
                     "--python", sys.executable)
    machines = json.loads((home / "machines.json").read_text())
    for entry in machines["machines"]:
        if entry["name"] in homes:
            entry["remote_home"] = str(homes[entry["name"]])
    (home / "machines.json").write_text(json.dumps(machines))
    scan = subprocess.run(["ssh-keyscan", "-p", str(sshd.port), "127.0.0.1"],
                          capture_output=True, text=True, check=True)
    (home / "ssh").mkdir(exist_ok=True)
    with (home / "ssh" / "known_hosts").open("a") as known_hosts:
        known_hosts.write(scan.stdout)


@pytest.fixture
def remote_homes(tmp_path: Path) -> dict[str, Path]:
    return {name: tmp_path / f"remote-{name}" for name in NODES}


@pytest.fixture
def machines(home: Path, sshd: Sshd, remote_homes: dict[str, Path]) -> str:
    add_machines(home, sshd, remote_homes)
    return ON


@pytest.fixture
def project(home: Path, tiny_model_dir: Path, tmp_path: Path) -> str:
    return training_project(home, tiny_model_dir, tmp_path)


def trainers_of(run_dirs: list[Path]) -> list[tuple[int, str]]:
    """(pid, command line) of running processes whose command line names one of these runs."""
    return processes(naming=[str(folder / "job.json") for folder in run_dirs])


def final_step(events: list[dict[str, Any]]) -> int:
    return int(next(e for e in events if e["type"] == "finished")["step"])


def run_dirs(remote_homes: dict[str, Path], project: str, run_id: int) -> list[Path]:
    return [root / "runs" / project / f"run-{run_id}" for root in remote_homes.values()]


def test_two_machines_train_one_run_and_only_rank_0_reports(
        home: Path, project: str, machines: str, remote_homes: dict[str, Path]) -> None:
    result = run_cli(home, "train", project, "--preset", "quick", "--max-steps", "5", "--json",
                     "--on", machines, "--processes-per-machine", "1", timeout=900)
    assert result.returncode == 0, result.stderr
    events = events_of(result.stdout)
    started = [e for e in events if e["type"] == "started"]
    assert len(started) == 1 and started[0]["processes"] == 2
    assert losses(events) and final_step(events) == 5
    final = events[-1]
    assert final["status"] == "finished", result.stderr
    artifacts = home / "storage" / project / "artifacts"
    assert final["adapter_dir"] == str(artifacts / "adapter-1")
    assert (artifacts / "adapter-1" / "adapter_model.safetensors").is_file()
    assert "Training on alpha, beta (1 process each; alpha reports)" in result.stderr
    assert train_job(home, project).status is JobStatus.SUCCEEDED
    # Each machine trained from its own copy of the files, in its own remote home.
    alpha, beta = run_dirs(remote_homes, project, 1)
    for folder in (alpha, beta):
        assert (folder / "train.jsonl").is_file() and (folder / "job.json").is_file()
        assert json.loads((folder / "job.json").read_text())["log_dir"] == str(folder)
    assert (alpha / "adapter" / "adapter_model.safetensors").is_file()
    stored = (artifacts / "run-1" / "events.jsonl").read_text()
    assert str(remote_homes["alpha"]) not in stored and str(remote_homes["beta"]) not in stored
    logs = home / "storage" / project / "logs"
    assert (logs / "train-1.log").stat().st_size > 0
    assert (logs / "train-1.beta.log").is_file()
    assert trainers_of([alpha, beta]) == []


# Long enough that the kill after the first checkpoint came back still finds them training.
LONG_RUN_STEPS = 400


def long_run(home: Path, project: str, steps: int = LONG_RUN_STEPS) -> None:
    save_settings(home, project, max_steps=steps, eval_steps=10, save_steps=10, logging_steps=1,
                  per_device_batch_size=2, gradient_accumulation_steps=1)


@pytest.mark.parametrize("victim", ["beta", "alpha"])
def test_a_killed_node_fails_the_run_and_no_trainer_is_left_on_the_other(
        home: Path, project: str, machines: str, remote_homes: dict[str, Path],
        victim: str) -> None:
    long_run(home, project)
    child = start_train(home, project, "--on", machines, "--processes-per-machine", "1")
    read_until(child, "checkpoint")
    # The launcher dies with its group; its rank (a session of its own) is left over.
    os.killpg(remote_pid(remote_homes[victim], project, 1), signal.SIGKILL)
    out, err = child.communicate(timeout=600)
    assert child.returncode == 1, err
    assert events_of(out)[-1]["status"] == "interrupted"
    expected = (f"The run stopped on every machine: the trainer on {victim} ended without "
                "finishing (it was killed).")
    assert expected in err
    assert f"--resume --on {ON} --processes-per-machine 1" in err
    job = train_job(home, project)
    assert job.status is JobStatus.FAILED and expected in job.error
    checkpoints = home / "storage" / project / "artifacts" / "run-1" / "checkpoints"
    assert (checkpoints / "checkpoint-10" / "trainer_state.json").is_file()
    assert trainers_of(run_dirs(remote_homes, project, 1)) == []


def test_stop_reaches_every_machine_and_resume_continues_on_both(
        home: Path, project: str, machines: str, remote_homes: dict[str, Path]) -> None:
    long_run(home, project, 40)
    child = start_train(home, project, "--on", machines, "--processes-per-machine", "1")
    read_until(child, "log")  # early: the stop comes long before the last step
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=600)
    assert child.returncode == 0, err
    stopped = events_of(out)[-1]
    assert stopped["status"] == "stopped" and stopped["step"] < 40, err
    assert trainers_of(run_dirs(remote_homes, project, 1)) == []
    # beta saw only its own part of the checkpoints: the resume sends it the ones copied back.
    resumed = run_cli(home, "train", project, "--resume", "--json", "--on", machines,
                      "--processes-per-machine", "1", timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    events = events_of(resumed.stdout)
    started = next(e for e in events if e["type"] == "started")
    assert started["start_step"] == stopped["step"] and started["processes"] == 2
    assert events[-1]["status"] == "finished"
    beta_checkpoints = run_dirs(remote_homes, project, 1)[1] / "checkpoints"
    assert (beta_checkpoints / f"checkpoint-{started['start_step']}" /
            "trainer_state.json").is_file()


# Long enough to be training still when beta comes back, short enough for a quick test.
OUTAGE_RUN_STEPS = 80


def test_a_machine_out_of_reach_for_a_moment_does_not_stop_the_run(
        home: Path, project: str, sshd: Sshd, remote_homes: dict[str, Path],
        tmp_path: Path) -> None:
    """beta's SSH server goes down and its watch is cut; its trainer (which meets alpha's
    directly, not over SSH, at the address given: 127.1 is 127.0.0.1 written another way)
    goes on, and the watch picks it up again once it is back."""
    (tmp_path / "sshd-beta").mkdir()
    with running_sshd(tmp_path / "sshd-beta") as beta_server:
        add_machines(home, sshd, {"alpha": remote_homes["alpha"]})
        add_machines(home, beta_server, {"beta": remote_homes["beta"]})
        long_run(home, project, OUTAGE_RUN_STEPS)
        child = start_train(home, project, "--on", ON, "--processes-per-machine", "1",
                            "--main-address", "127.1")
        seen = read_until(child, "log")
        beta_server.stop()
        beta_run = str(run_dirs(remote_homes, project, 1)[1])
        assert any("--main_process_ip 127.1 " in command
                   for _pid, command in processes(naming=[beta_run]))
        (watch,) = [pid for pid, command in processes(parent=child.pid)
                    if " follow " in command and beta_run in command]
        os.kill(watch, signal.SIGKILL)
        time.sleep(3)
        beta_server.start()
        out, err = child.communicate(timeout=900)
    assert child.returncode == 0, err
    events = seen + events_of(out)
    assert [step for step, _ in losses(events)] == list(range(1, OUTAGE_RUN_STEPS + 1))
    assert events[-1]["status"] == "finished"
    assert train_job(home, project).status is JobStatus.SUCCEEDED


@pytest.mark.parametrize(("arguments", "message"), [
    (("--on", "alpha,nowhere"), "No machine is named 'nowhere'"),
    (("--on", "alpha,alpha"), "alpha is named more than once in --on"),
    (("--on", "alpha,"), "without empty names"),
    (("--on", ON, "--processes", "2"), "with several, use --processes-per-machine N"),
    (("--on", ON, "--processes-per-machine", "0"), "--processes-per-machine must be 1 or more"),
    (("--processes-per-machine", "2",), "--processes-per-machine goes with --on A,B"),
    (("--on", ON, "--attach"), "resume it with --resume --on alpha,beta"),
    (("--on", "alpha", "--processes", "2", "--processes-per-machine", "3"),
     "Give the processes once"),
    (("--main-address", "10.0.0.2"), "--main-address goes with --on A,B"),
    (("--on", "alpha", "--main-address", "10.0.0.2"), "--main-address goes with --on A,B"),
    (("--on", ON, "--main-address", "a; rm -rf ~"), "is not a host name or an IP address"),
])
def test_wrong_machine_lists_are_refused_before_anything_runs(
        home: Path, project: str, machines: str, arguments: tuple[str, ...],
        message: str) -> None:
    result = run_cli(home, "train", project, *arguments)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert train_job(home, project) is None


def test_two_names_for_the_same_remote_folder_are_refused(
        home: Path, project: str, sshd: Sshd, tmp_path: Path) -> None:
    shared = tmp_path / "remote-shared"
    add_machines(home, sshd, {"one": shared, "two": shared})
    result = run_cli(home, "train", project, "--on", "one,two")
    assert result.returncode == 1
    assert "one and two are the same account on the same machine" in result.stderr
    assert train_job(home, project) is None


def test_killing_a_run_there_ends_the_ranks_of_accelerates_launcher_too(
        home: Path, project: str, machines: str, remote_homes: dict[str, Path]) -> None:
    """torch's launcher starts each rank in a session of its own, out of reach of a kill of
    the launcher's process group: the kill finds them by their job file."""
    from finetuneflow.services.remote_training import RemoteMachine
    from finetuneflow.storage.home import Home
    from finetuneflow.storage.machines import MachineStore

    long_run(home, project)
    child = start_train(home, project, "--on", "alpha", "--processes", "2")
    read_until(child, "log")
    (folder, _) = run_dirs(remote_homes, project, 1)
    assert len(trainers_of([folder])) >= 3  # the launcher and its two ranks
    store = MachineStore(Home(home))
    RemoteMachine(store, store.get("alpha")).call("kill", str(folder))
    _out, err = child.communicate(timeout=300)
    assert child.returncode == 1, err
    assert "The trainer on alpha ended without finishing (it was killed)" in err
    deadline = time.monotonic() + 10
    while trainers_of([folder]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert trainers_of([folder]) == []
