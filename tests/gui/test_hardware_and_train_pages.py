from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from PySide6.QtWidgets import QScrollArea
from pytestqt.qtbot import QtBot

from finetuneflow.core.steps import step_index
from finetuneflow.gui.main_window import MainWindow
from finetuneflow.gui.pages.hardware_page import HardwarePage
from finetuneflow.gui.pages.train_page import TrainPage
from finetuneflow.services.context import AppContext
from finetuneflow.services.hardware import HardwareService
from finetuneflow.services.training import TrainingService
from tests.helpers.gui_projects import project_with_examples
from tests.helpers.images import assert_not_blank
from tests.helpers.processes import processes

pytestmark = pytest.mark.slow


@pytest.fixture
def project_id(window: MainWindow, context: AppContext, tiny_model_dir: Path,
               tmp_path: Path) -> str:
    return project_with_examples(window, context, tiny_model_dir, tmp_path, "Train page", 40)


def test_hardware_page_probes_and_recommends(window: MainWindow, qtbot: QtBot,
                                             project_id: str, tmp_path: Path) -> None:
    page = window.open_project(project_id, "hardware").currentPage()
    assert isinstance(page, HardwarePage)
    qtbot.waitUntil(page.isComplete, timeout=120_000)
    assert "CPU" in page.findings.text() and "LORA" in page.recommendation.text()
    assert "Only 40 examples" in page.warnings.text()
    assert re.search(r"Only \d evaluation examples", page.warnings.text())
    assert page.bar.parts() and page.bar.budget > 0
    # The time is measured here, in the trainer child: steps × seconds a step, not a constant.
    qtbot.waitUntil(lambda: "measured on cpu" in page.duration.text(), timeout=240_000)
    assert " steps × " in page.duration.text()
    # Numbers as people write them, a zero that says what it means, no scroll area inside.
    assert page.form.editors["learning_rate"].text() == "0.0002"
    assert page.form.editors["lora_dropout"].text() == "0.05"
    assert page.form.editors["max_steps"].text() == "0 (run the epochs)"
    assert not page.findChildren(QScrollArea)
    page.preset.setCurrentIndex(page.preset.findData("quick"))
    page.preset.activated.emit(page.preset.currentIndex())
    assert TrainingService(page.context).config_for(project_id).max_steps == 60
    assert page.preset.currentText() == "Quick test"  # after fitting it to this computer
    # New settings, new measurement (max steps alone reuses it: only the step count changes).
    qtbot.waitUntil(lambda: "measured on cpu" in page.duration.text(), timeout=240_000)
    assert "60 steps × " in page.duration.text()
    shot = tmp_path / "hardware.png"
    window.grab().save(str(shot))
    assert_not_blank(shot)
    reopened = window.open_project(project_id, "hardware").currentPage()
    assert isinstance(reopened, HardwarePage) and reopened.preset.currentText() == "Quick test"


def speed_timers() -> list[tuple[int, str]]:
    """The trainer children timing training steps for the Hardware step's estimate."""
    return processes(parent=os.getpid(), naming=[" speed "])


def test_leaving_the_hardware_step_stops_its_timing_and_coming_back_times_again(
        window: MainWindow, qtbot: QtBot, project_id: str) -> None:
    """The timing's trainer child would compete with the training started next (for the CPU,
    or the GPU's memory)."""
    wizard = window.open_project(project_id, "hardware")
    page = wizard.currentPage()
    assert isinstance(page, HardwarePage)
    qtbot.waitUntil(lambda: bool(speed_timers()), timeout=120_000)
    wizard.go_to_index(step_index("train"))
    qtbot.waitUntil(lambda: not speed_timers() and not page.tasks.is_running("speed"),
                    timeout=10_000)
    assert "measured" not in page.duration.text() and "unknown" not in page.duration.text()
    wizard.go_to_index(step_index("hardware"))
    assert page.duration.text() == "Expected time: timing a few training steps on this computer…"
    qtbot.waitUntil(lambda: "measured on cpu" in page.duration.text(), timeout=240_000)


def test_train_page_runs_the_child_fills_the_chart_and_stops(
        window: MainWindow, qtbot: QtBot, project_id: str, context: AppContext,
        tmp_path: Path) -> None:
    service = TrainingService(context)
    service.save_config(project_id, service.config_for(project_id, "quick").replace(
        max_steps=400, logging_steps=2, eval_steps=20, save_steps=20,
        per_device_batch_size=2, gradient_accumulation_steps=1))
    page = window.open_project(project_id, "train").currentPage()
    assert isinstance(page, TrainPage) and not page.isComplete()
    page.start_button.click()  # prepares in the background, then starts the trainer
    assert not page.start_button.isEnabled() and page.stop_button.isEnabled()
    qtbot.waitUntil(lambda: window.training.running, timeout=60_000)
    assert not page.start_button.isEnabled()
    qtbot.waitUntil(lambda: len(page.chart.train[0]) >= 3, timeout=180_000)
    assert page.progress.maximum() == 400 and "/ 400" in page.stats["Step"].text()
    assert page.stats["Memory"].text().endswith("B")  # peak memory, live
    assert page.eta.step_s is not None and page.stats["ETA"].text()[0].isdigit()  # smoothed
    page.stop_button.click()
    qtbot.waitUntil(lambda: not window.training.running, timeout=180_000)
    assert "Stopped at step" in page.state.text()
    assert page.resume_button.isEnabled() and not page.isComplete()
    run = service.latest_run(project_id)
    assert run is not None and run["status"] == "cancelled"
    shot = tmp_path / "train.png"
    window.grab().save(str(shot))
    assert_not_blank(shot)

    # The same page built again (the app reopened) shows the stored chart.
    reopened = window.open_project(project_id, "train").currentPage()
    assert len(reopened.chart.train[0]) == len(page.chart.train[0])
    for chart in (page.chart, reopened.chart):  # drawn a moment later, all points at once
        qtbot.waitUntil(lambda chart=chart: list(chart.train_curve.xData
                                                 if chart.train_curve.xData is not None
                                                 else []) == chart.train[0], timeout=5_000)


def test_a_run_that_cannot_be_prepared_says_why_and_starts_nothing(
        window: MainWindow, qtbot: QtBot, context: AppContext, tmp_path: Path) -> None:
    """Preparing runs in the background (it may download the weights); its error comes back
    to the page."""
    project = window.dashboard.create_project("No model yet")
    page = window.open_project(project.id, "train").currentPage()
    assert isinstance(page, TrainPage)
    page.start_button.click()
    # A generous wait: on a busy machine the background preparation took over 10 s to answer
    qtbot.waitUntil(lambda: "Choose a base model first" in page.state.text(), timeout=60_000)
    qtbot.waitUntil(page.start_button.isEnabled, timeout=5_000)
    assert not window.training.running and not page.stop_button.isEnabled()


def test_qlora_without_cuda_is_refused_with_what_to_do(
        window: MainWindow, qtbot: QtBot, project_id: str, context: AppContext) -> None:
    if HardwareService(context).probe().cuda_available:
        pytest.skip("this computer has CUDA")
    service = TrainingService(context)
    service.save_config(project_id, service.config_for(project_id, "quick").replace(
        method="qlora"))
    page = window.open_project(project_id, "train").currentPage()
    assert isinstance(page, TrainPage)
    page.start_button.click()
    qtbot.waitUntil(lambda: "QLoRA needs an NVIDIA GPU" in page.state.text(), timeout=120_000)
    assert page.state.text().endswith("Choose LoRA as the Method on the Hardware step.")
    assert not window.training.running and service.latest_run(project_id) is None
