"""A failed ingest, training, export or chat shows on its page, live and when the page is opened
again, in the words the dashboard and the job row use. The real trainer child, the tiny model."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QThreadPool
from pytestqt.qtbot import QtBot

from finetuneflow.core.statuses import JobKind, JobStatus
from finetuneflow.gui.dashboard import COLUMNS
from finetuneflow.gui.main_window import MainWindow
from finetuneflow.gui.pages.data_page import DataPage
from finetuneflow.gui.pages.export_page import ExportPage
from finetuneflow.gui.pages.train_page import TrainPage
from finetuneflow.services.base_model import ModelService
from finetuneflow.services.context import AppContext
from finetuneflow.services.datasets import DatasetService
from finetuneflow.services.jobs import JobService
from finetuneflow.services.training import TrainingService
from tests.helpers.finished_run import arithmetic_chats, train

pytestmark = pytest.mark.slow

CHILD_TIMEOUT_MS = 300_000  # the trainer child on a busy 2-core machine


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the tiny model only loses time to threads
    yield
    QThreadPool.globalInstance().waitForDone(CHILD_TIMEOUT_MS)  # nothing outlives the home


def dashboard_word(window: MainWindow, name: str) -> str:
    """The project's row on the dashboard: its Latest job cell."""
    window.show_dashboard()
    table = window.dashboard.table
    row = next(r for r in range(table.rowCount()) if table.item(r, 0).text() == name)
    return table.item(row, len(COLUMNS) - 1).text()


def failed_job(context: AppContext, project_id: str, kind: JobKind) -> str:
    job = JobService(context).latest(project_id, kind)
    assert job is not None and job.status is JobStatus.FAILED and job.error
    return job.error


def test_the_data_page_says_an_ingest_of_broken_files_failed(
        window: MainWindow, qtbot: QtBot, context: AppContext, tiny_model_dir: Path,
        tmp_path: Path) -> None:
    project = window.dashboard.create_project("Broken files")
    ModelService(context).choose(project.id, str(tiny_model_dir))
    (tmp_path / "scan.pdf").write_bytes(b"<html>not a pdf</html>")
    (tmp_path / "letter.docx").write_bytes(b"PK\x03\x04 a truncated archive")
    page = window.open_project(project.id, "data").currentPage()
    assert isinstance(page, DataPage)
    page.add_paths([tmp_path / "scan.pdf", tmp_path / "letter.docx"])
    qtbot.waitUntil(lambda: not page.tasks.is_running("ingest"), timeout=120_000)
    error = failed_job(context, project.id, JobKind.INGEST)
    assert error.startswith("Could not add any of the 2 files")
    # The broken files are listed with their causes; the summary says the ingest failed.
    assert page.summary.text() == f"2 files · 0 chunks · Adding files failed: {error}"
    assert not page.isComplete()
    assert dashboard_word(window, "Broken files") == "Adding files failed"
    reopened = window.open_project(project.id, "data").currentPage()
    assert isinstance(reopened, DataPage)
    assert reopened.summary.text() == f"2 files · 0 chunks · Adding files failed: {error}"


def test_the_train_page_says_why_training_a_broken_model_failed(
        window: MainWindow, qtbot: QtBot, context: AppContext, tiny_model_dir: Path,
        tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    project = window.dashboard.create_project("Broken model")
    ModelService(context).choose(project.id, str(model))
    DatasetService(context).import_file(project.id, arithmetic_chats(tmp_path / "chats.jsonl"))
    service = TrainingService(context)
    service.save_config(project.id, service.config_for(project.id, "quick").replace(
        max_steps=10, logging_steps=2))
    (model / "model.safetensors").write_bytes(b"not weights")
    page = window.open_project(project.id, "train").currentPage()
    assert isinstance(page, TrainPage)
    page.start_button.click()
    qtbot.waitUntil(lambda: window.training.running, timeout=60_000)
    qtbot.waitUntil(lambda: not window.training.running, timeout=CHILD_TIMEOUT_MS)
    error = failed_job(context, project.id, JobKind.TRAIN)
    assert "SafetensorError" in error and error in page.state.text()
    assert not page.isComplete() and page.resume_button.isEnabled()
    assert dashboard_word(window, "Broken model") == "Training failed"
    reopened = window.open_project(project.id, "train").currentPage()
    assert isinstance(reopened, TrainPage)
    assert reopened.state.text().startswith("Last run (1) failed: Training failed")
    assert "SafetensorError" in reopened.state.text()


def test_the_export_page_says_why_the_export_and_the_chat_of_a_broken_adapter_failed(
        window: MainWindow, qtbot: QtBot, context: AppContext, tiny_model_dir: Path,
        tmp_path: Path) -> None:
    project = window.dashboard.create_project("Broken adapter")
    ModelService(context).choose(project.id, str(tiny_model_dir))
    DatasetService(context).import_file(project.id, arithmetic_chats(tmp_path / "chats.jsonl"))
    adapter = train(context, project.id)
    (adapter / "adapter_model.safetensors").write_bytes(b"not weights")
    page = window.open_project(project.id, "export").currentPage()
    assert isinstance(page, ExportPage)
    qtbot.waitUntil(lambda: not page.runner.is_running("report"), timeout=60_000)
    page.export_button.click()
    qtbot.waitUntil(lambda: page.export_button.isEnabled() and "fail" in page.status.text(),
                    timeout=CHILD_TIMEOUT_MS)
    error = failed_job(context, project.id, JobKind.EXPORT)
    assert page.status.text().startswith("Export failed") and "SafetensorError" in error
    assert dashboard_word(window, "Broken adapter") == "Export failed"
    reopened = window.open_project(project.id, "export").currentPage()
    assert isinstance(reopened, ExportPage)
    assert reopened.status.text() == f"The last export of this run failed: {error}"

    chat = reopened.chat
    reopened.tabs.setCurrentWidget(chat)
    chat.prompt.setText("What is 3 plus 3?")
    chat.ask_button.click()
    qtbot.waitUntil(lambda: chat.ask_button.isEnabled(), timeout=CHILD_TIMEOUT_MS)
    assert chat.status.text().startswith("Chat failed"), chat.status.text()
    assert "SafetensorError" in chat.status.text()
