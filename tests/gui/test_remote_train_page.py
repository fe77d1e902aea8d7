"""The Train page training on a machine over SSH, offscreen: the real OpenSSH client against a
real sshd on 127.0.0.1 (tests/helpers/sshd.py), the real trainer there on the tiny model, in a
remote home of its own. Stop, a lost connection, a closed window and Reattach; the Hardware
page's choice of machine kept per project."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtWidgets import QLabel, QPushButton
from pytestqt.qtbot import QtBot

from finetuneflow.gui.main_window import MainWindow
from finetuneflow.gui.pages.hardware_page import HardwarePage
from finetuneflow.gui.pages.train_page import TrainPage
from finetuneflow.services import remote_training
from finetuneflow.services.context import AppContext
from finetuneflow.services.jobs import JobService
from finetuneflow.services.machines import add_machine, remove_machine
from finetuneflow.services.train_location import choose_train_location, train_location
from finetuneflow.services.training import TrainingService
from finetuneflow.storage.tables import JobKind, JobStatus
from tests.helpers.gui_projects import project_with_examples
from tests.helpers.images import assert_not_blank
from tests.helpers.processes import processes
from tests.helpers.sshd import Sshd, free_port, running_sshd
from tests.integration.test_machines import trusted_machine
from tests.integration.test_remote_training import remote_pid

pytestmark = pytest.mark.slow
SHOTS = Path("/tmp/remotegui-shots")
RUN_S = 600_000  # a run there: the model's upload, loading it, the steps, the copies back


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    (tmp_path / "sshd").mkdir()
    with running_sshd(tmp_path / "sshd") as server:
        yield server


@pytest.fixture
def remote_home(tmp_path: Path) -> Path:
    return tmp_path / "remote-home"


@pytest.fixture
def machine(context: AppContext, sshd: Sshd, remote_home: Path) -> str:
    """The sshd as the machine "box", its host key trusted, runs going to `remote_home`."""
    trusted_machine(context.home.root, sshd)
    listing = context.home.root / "machines.json"
    machines = json.loads(listing.read_text())
    machines["machines"][0]["remote_home"] = str(remote_home)
    listing.write_text(json.dumps(machines))
    return "box"


def remote_project(window: MainWindow, context: AppContext, model: Path, folder: Path,
                   machine: str, steps: int, save_steps: int) -> str:
    project = project_with_examples(window, context, model, folder, "Remote", 40)
    training = TrainingService(context)
    training.save_config(project, training.config_for(project, "quick").replace(
        max_steps=steps, logging_steps=1, eval_steps=save_steps, save_steps=save_steps,
        per_device_batch_size=2, gradient_accumulation_steps=1))
    choose_train_location(context, project, machine)
    return project


def train_page(window: MainWindow, project: str) -> TrainPage:
    window.resize(1100, 800)
    page = window.open_project(project, "train").currentPage()
    assert isinstance(page, TrainPage)
    return page


def shot(window: MainWindow, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    window.grab().save(str(SHOTS / name))
    assert_not_blank(SHOTS / name)


def stored_losses(home: Path, project: str, run_id: int = 1) -> list[tuple[int, float]]:
    path = home / "storage" / project / "artifacts" / f"run-{run_id}" / "events.jsonl"
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(e["step"], e["loss"]) for e in events if e["type"] == "log" and "loss" in e]


def charted(page: TrainPage) -> list[tuple[int, float]]:
    return list(zip(page.chart.train[0], page.chart.train[1], strict=True))


def train_job(context: AppContext, project: str) -> JobStatus:
    job = JobService(context).latest(project, JobKind.TRAIN)
    assert job is not None
    return job.status


def ended(page: TrainPage) -> bool:
    return not page.controller.running and not page.tasks.is_running("prepare")


def kill_the_follow() -> None:
    """The ssh client that streams the events: as a dropped connection does to it."""
    for pid, command in processes(parent=os.getpid()):
        if " follow " in command:
            os.kill(pid, signal.SIGKILL)


def test_a_run_there_charts_every_stored_event_and_ends_as_finished(
        qtbot: QtBot, window: MainWindow, context: AppContext, machine: str,
        tiny_model_dir: Path, tmp_path: Path, remote_home: Path) -> None:
    project = remote_project(window, context, tiny_model_dir, tmp_path, machine, 8, 4)
    page = train_page(window, project)
    assert page.where.text() == "Trains on: box — chosen on the Hardware step."
    said: list[str] = []
    page.controller.remote_message.connect(said.append)
    page.start_button.click()
    qtbot.waitUntil(lambda: page.controller.running, timeout=120_000)
    assert page.where.text().startswith("Training on box over SSH")
    assert page.stop_button.isEnabled()
    qtbot.waitUntil(lambda: len(page.chart.train[0]) >= 2 or ended(page), timeout=RUN_S)
    shot(window, "train_remote_running.png")
    qtbot.waitUntil(lambda: ended(page), timeout=RUN_S)

    assert any(text.startswith("Uploading model.safetensors to box") for text in said), said
    assert any(text.startswith("Training on box") for text in said)
    steps = [step for step, _loss in charted(page)]
    assert steps == list(range(1, 9))
    assert charted(page) == stored_losses(context.home.root, project)
    assert page.state.text().startswith("Finished (")
    assert train_job(context, project) is JobStatus.SUCCEEDED
    run = TrainingService(context).latest_run(project)
    assert run is not None and run["status"] == "succeeded"
    adapter = Path(run["artifacts"]["adapter"])
    assert adapter.parent == context.home.root / "storage" / project / "artifacts"
    assert (adapter / "adapter_model.safetensors").is_file()
    assert (remote_home / "runs" / project / "run-1" / "adapter").is_dir()
    assert not page.reattach_button.isVisible() and page.start_button.isEnabled()
    # The status bar reads the jobs table each second.
    status = window.findChild(QLabel, "runningJobs")
    qtbot.waitUntil(lambda: "Training" not in status.text(), timeout=3000)
    shot(window, "train_remote_finished.png")


def test_stop_on_the_page_stops_the_trainer_there(
        qtbot: QtBot, window: MainWindow, context: AppContext, machine: str,
        tiny_model_dir: Path, tmp_path: Path) -> None:
    project = remote_project(window, context, tiny_model_dir, tmp_path, machine, 400, 5)
    page = train_page(window, project)
    page.start_button.click()
    checkpoints = context.home.root / "storage" / project / "artifacts" / "run-1" / "checkpoints"
    qtbot.waitUntil(lambda: (checkpoints / "checkpoint-5" / "trainer_state.json").is_file(),
                    timeout=RUN_S)
    page.stop_button.click()
    assert page.state.text().startswith("Stopping on box after the current step")
    qtbot.waitUntil(lambda: ended(page), timeout=RUN_S)
    assert page.state.text().startswith("Stopped at step"), page.state.text()
    assert train_job(context, project) is JobStatus.CANCELLED
    assert page.resume_button.isEnabled() and not page.reattach_button.isVisible()
    assert max(page.chart.train[0]) < 400
    assert charted(page) == stored_losses(context.home.root, project)


def test_a_lost_connection_offers_reattach_which_shows_every_step(
        qtbot: QtBot, window: MainWindow, context: AppContext, machine: str, sshd: Sshd,
        tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given up on after two quick retries rather than two minutes of them.
    monkeypatch.setattr(remote_training, "RECONNECT_DELAYS_S", (0.2, 0.2))
    project = remote_project(window, context, tiny_model_dir, tmp_path, machine, 30, 10)
    page = train_page(window, project)
    page.start_button.click()
    qtbot.waitUntil(lambda: len(page.chart.train[0]) >= 1, timeout=RUN_S)
    sshd.stop()  # sessions already open live on: their follow is cut as well
    kill_the_follow()
    qtbot.waitUntil(lambda: ended(page), timeout=120_000)
    assert page.state.text().startswith("Lost the connection to box; the training goes on")
    assert page.reattach_button.isVisible() and not page.resume_button.isEnabled()
    assert not page.start_button.isEnabled()  # not a second run beside the one there
    assert train_job(context, project) is JobStatus.INTERRUPTED
    shot(window, "train_remote_lost.png")

    sshd.start()
    page.reattach_button.click()
    qtbot.waitUntil(lambda: page.controller.running, timeout=60_000)
    qtbot.waitUntil(lambda: ended(page), timeout=RUN_S)
    assert [step for step, _loss in charted(page)] == list(range(1, 31))
    assert charted(page) == stored_losses(context.home.root, project)
    assert train_job(context, project) is JobStatus.SUCCEEDED
    assert not page.reattach_button.isVisible()


def test_closing_the_window_leaves_the_run_there_and_reopening_reattaches(
        qtbot: QtBot, window: MainWindow, context: AppContext, machine: str,
        tiny_model_dir: Path, tmp_path: Path, remote_home: Path,
        answer_yes: list[str]) -> None:
    project = remote_project(window, context, tiny_model_dir, tmp_path, machine, 30, 10)
    page = train_page(window, project)
    page.start_button.click()
    qtbot.waitUntil(lambda: len(page.chart.train[0]) >= 1, timeout=RUN_S)
    window.close()
    assert "It goes on there while FineTuneFlow is closed" in answer_yes[-1]
    job = JobService(context).latest(project, JobKind.TRAIN)
    assert job is not None and job.status is JobStatus.INTERRUPTED
    assert job.message.startswith("FineTuneFlow was closed while the run trained on box")
    trainer = remote_pid(remote_home, project, 1)
    assert (remote_home / "runs" / project / "run-1" / "exit_code").exists() or \
        Path(f"/proc/{trainer}").exists()  # not stopped: it trains on (or finished) there

    again = MainWindow(context)
    qtbot.addWidget(again)
    again.show()
    banner = again.resume_banner.findChild(QPushButton, f"resumeJob{job.id}")
    assert banner is not None and banner.text() == "Reattach"  # it calls the page's resume()
    reopened = train_page(again, project)
    assert reopened.reattach_button.isVisible()
    assert "may still be training on box" in reopened.state.text()
    qtbot.waitUntil(lambda: reopened.chart.built, timeout=10_000)
    qtbot.wait(1000)  # its first paint
    shot(again, "train_remote_reopened.png")
    before = len(reopened.chart.train[0])
    assert before >= 1
    reopened.reattach_button.click()
    qtbot.waitUntil(lambda: reopened.controller.running, timeout=60_000)
    qtbot.waitUntil(lambda: ended(reopened), timeout=RUN_S)
    assert [step for step, _loss in charted(reopened)] == list(range(1, 31))
    assert charted(reopened) == stored_losses(context.home.root, project)
    assert train_job(context, project) is JobStatus.SUCCEEDED


def test_the_hardware_choice_is_kept_and_a_removed_machine_falls_back_here(
        qtbot: QtBot, window: MainWindow, context: AppContext, tiny_model_dir: Path,
        tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    key.write_text("only the path is kept")
    add_machine(context.home, "box", f"ssh://alice@127.0.0.1:{free_port()}", key=str(key),
                python=sys.executable)
    project = project_with_examples(window, context, tiny_model_dir, tmp_path, "Kept", 20)
    page = window.open_project(project, "hardware").currentPage()
    assert isinstance(page, HardwarePage)
    assert page.machine() is None and page.remote_note.isHidden()
    page.train_on.setCurrentIndex(page.train_on.findData("box"))
    assert train_location(context, project).machine == "box"
    assert page.remote_note.text().startswith("The Train step trains on box")
    qtbot.waitUntil(lambda: "refused the connection" in page.findings.text(), timeout=60_000)

    windows = []  # kept: a window nobody refers to is deleted with its pages

    def reopened(step: str) -> HardwarePage | TrainPage:
        again = MainWindow(context)
        qtbot.addWidget(again)
        again.show()
        windows.append(again)
        shown = again.open_project(project, step).currentPage()
        assert isinstance(shown, HardwarePage | TrainPage)
        return shown

    hardware = reopened("hardware")
    assert isinstance(hardware, HardwarePage) and hardware.machine() == "box"
    qtbot.waitUntil(lambda: not hardware.tasks.is_running("probe"), timeout=60_000)

    # The machine is down: the run fails with the reason, as `train --on` does.
    train = reopened("train")
    assert isinstance(train, TrainPage)
    train.start_button.click()
    qtbot.waitUntil(lambda: train.controller.outcome is not None and ended(train),
                    timeout=120_000)
    assert "box (127.0.0.1:" in train.state.text() and "refused the connection" in \
        train.state.text()
    assert train_job(context, project) is JobStatus.FAILED
    assert train.start_button.isEnabled() and not train.reattach_button.isVisible()

    remove_machine(context.home, "box")
    hardware = reopened("hardware")
    assert isinstance(hardware, HardwarePage) and hardware.machine() is None
    assert not hardware.remote_note.isHidden()
    assert "The machine box was removed" in hardware.remote_note.text()
    train = reopened("train")
    assert isinstance(train, TrainPage)
    assert train.where.text().startswith("The machine box was removed from Settings → Machines")
    assert train_location(context, project).note == train.where.text()
