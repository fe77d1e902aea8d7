"""The Export page on a real finished run: a short training of the tiny model (once for the
module), the real trainer child for the export and the chat, the real zip.

The tests share that run and go in order: export, Ollama, chat, a cancelled export (it leaves
a cancelled export job behind), and last a second run."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, QThreadPool, QUrl, Slot
from PySide6.QtGui import QDesktopServices, QTextDocument
from PySide6.QtWidgets import QFileDialog
from pytestqt.qtbot import QtBot

from finetuneflow.core.child_protocol import BASE, FINETUNED
from finetuneflow.core.export.archive import verify_archive
from finetuneflow.core.export.report import LOSS_CURVE
from finetuneflow.gui.main_window import MainWindow
from finetuneflow.gui.pages.export_page import NOT_EXPORTED, STOPPED, ExportPage
from finetuneflow.services.base_model import ModelService
from finetuneflow.services.context import AppContext
from finetuneflow.services.datasets import DatasetService
from finetuneflow.services.jobs import JobService
from finetuneflow.services.ollama import ollama_available
from finetuneflow.services.projects import ProjectService
from finetuneflow.storage.home import Home
from finetuneflow.storage.tables import JobKind, JobStatus
from tests.helpers.fake_ollama import fake_ollama
from tests.helpers.finished_run import SYSTEM, arithmetic_chats, train
from tests.helpers.images import assert_not_blank

pytestmark = pytest.mark.slow

CHILD_TIMEOUT_MS = 300_000  # the trainer child on a busy 2-core machine


@dataclass(frozen=True)
class Trained:
    home: Path
    project_id: str


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    root = tmp_path_factory.mktemp("export-page")
    patch = pytest.MonkeyPatch()
    patch.setenv("OMP_NUM_THREADS", "1")  # the tiny model only loses time to threads
    context = AppContext.open(Home(root / "home"))
    try:
        project_id = ProjectService(context).create("Arithmetic tutor").id
        ModelService(context).choose(project_id, str(tiny_model_dir))
        DatasetService(context).import_file(project_id, arithmetic_chats(root / "chats.jsonl"))
        train(context, project_id)
        yield Trained(root / "home", project_id)
    finally:
        context.close()
        patch.undo()


@pytest.fixture
def page(qtbot: QtBot, trained: Trained, monkeypatch: pytest.MonkeyPatch
         ) -> Iterator[ExportPage]:
    """The Export page of the trained project, its report loaded."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    context = AppContext.open(Home(trained.home))
    window = MainWindow(context)
    qtbot.addWidget(window)
    window.show()
    export_page = window.open_project(trained.project_id, "export").currentPage()
    assert isinstance(export_page, ExportPage)
    qtbot.waitUntil(lambda: not export_page.runner.is_running("report"), timeout=60_000)
    yield export_page
    QThreadPool.globalInstance().waitForDone(CHILD_TIMEOUT_MS)  # nothing outlives the home
    context.close()


def wait_for_task(qtbot: QtBot, page: ExportPage) -> None:
    qtbot.waitUntil(lambda: page.task is None, timeout=CHILD_TIMEOUT_MS)


def shot(page: ExportPage, path: Path) -> None:
    page.window().grab().save(str(path))
    assert_not_blank(path)


# --- no run yet -------------------------------------------------------------------------------

def test_without_a_finished_run_the_page_points_to_the_train_step(
        window: MainWindow, qtbot: QtBot, context: AppContext, tiny_model_dir: Path,
        tmp_path: Path) -> None:
    project = window.dashboard.create_project("Not trained")
    ModelService(context).choose(project.id, str(tiny_model_dir))
    DatasetService(context).import_file(project.id, arithmetic_chats(tmp_path / "c.jsonl", 40))
    wizard = window.open_project(project.id, "export")
    page = wizard.currentPage()
    assert isinstance(page, ExportPage)
    assert page.stack.currentIndex() == 0 and "Train step" in page.empty_text.text()
    shot(page, tmp_path / "export-empty.png")
    page.findChild(type(page.export_button), "goToTrain").click()
    assert wizard.current_step_key() == "train"
    QThreadPool.globalInstance().waitForDone(CHILD_TIMEOUT_MS)  # the Hardware step's probe


# --- export -----------------------------------------------------------------------------------

class UrlCatcher(QObject):
    """Receives what QDesktopServices.openUrl would hand to the desktop."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[QUrl] = []

    @Slot(QUrl)
    def open(self, url: QUrl) -> None:
        self.urls.append(url)


def test_the_page_exports_the_zip_and_shows_the_report(
        page: ExportPage, qtbot: QtBot, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert page.stack.currentIndex() == 1 and not page.run_row.isVisible()  # one run
    assert page.merged.isChecked() and page.merged_note.isHidden()  # Llama: Ollama imports it
    assert page.status.text() == NOT_EXPORTED and page.last_box.isHidden()
    assert "Dataset" in page.report.toPlainText()  # the draft report, before any export
    curve = page.report.loadResource(QTextDocument.ResourceType.ImageResource,
                                     QUrl(LOSS_CURVE))
    assert not curve.isNull() and curve.width() < page.report.viewport().width()
    assert page.chat.system_prompt.toPlainText() == SYSTEM
    # The field shows the zip's name, the folder under it; the report fits the width.
    assert page.destination is not None and page.zip_path.text() == page.destination.name
    assert page.zip_folder.text() == f"in {page.destination.parent}"
    metrics = page.zip_path.fontMetrics()
    assert metrics.horizontalAdvance(page.zip_path.text()) < page.zip_path.width() - 8
    assert page.report.horizontalScrollBar().maximum() == 0
    shot(page, tmp_path / "export-before.png")
    page.tabs.setCurrentIndex(1)  # Try it: both answers side by side, each saying what it is
    base, tuned = page.chat.answers.values()
    assert base.placeholderText() and tuned.placeholderText()
    assert base.mapTo(page, base.rect().topLeft()).x() < tuned.mapTo(
        page, tuned.rect().topLeft()).x()
    shot(page, tmp_path / "try-it.png")
    if Path("/tmp/pages_shots").is_dir():  # kept to look at after a local run
        page.window().grab().save("/tmp/pages_shots/export_try_it.png")
    page.tabs.setCurrentIndex(0)
    if Path("/tmp/pages_shots").is_dir():
        page.window().grab().save("/tmp/pages_shots/export_before.png")

    progress: list[int] = []
    page.progress.valueChanged.connect(progress.append)
    page.include_dataset.setChecked(True)
    page.export_button.click()
    assert not page.export_button.isEnabled() and page.cancel_button.isVisible()
    wait_for_task(qtbot, page)
    exported = page.exported
    assert exported is not None and exported.zip_path == page.destination
    assert exported.zip_path.parent.name == "exports" and verify_archive(exported.zip_path) == []
    names = {path for path, _ in exported.files}
    assert {"merged/model.safetensors", "merged/Modelfile", "dataset/train.jsonl"} <= names
    assert any(0 < value < 1000 for value in progress)
    assert page.last_box.isVisible() and exported.zip_path.name in page.summary.text()
    assert page.register.isEnabled() == ollama_available()

    qtbot.waitUntil(lambda: "Before and after" in page.report.toPlainText(), timeout=60_000)
    metrics = json.loads((exported.folder / "metrics.json").read_text())
    report = page.report.toPlainText()
    for number in (f"{metrics['final_eval_loss']:.4f}", f"{metrics['train_loss']:.4f}",
                   f"{metrics['tokens_seen']:,}"):
        assert number in report, number
    shot(page, tmp_path / "export-done.png")

    catcher = UrlCatcher()
    QDesktopServices.setUrlHandler("file", catcher, "open")  # str: bytes, as typed, are refused
    try:
        page.open_folder.click()
    finally:
        QDesktopServices.unsetUrlHandler("file")
    assert [Path(url.toLocalFile()) for url in catcher.urls] == [exported.zip_path.parent]

    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda *_args: (str(tmp_path / "copy"), "Zip files (*.zip)"))
    page.save_zip.click()
    wait_for_task(qtbot, page)
    assert verify_archive(tmp_path / "copy.zip") == [] and "Saved a copy" in page.status.text()


@pytest.mark.skipif(sys.platform == "win32", reason="the fake ollama is a POSIX script")
def test_register_in_ollama_shows_both_answers_and_the_warning(
        page: ExportPage, qtbot: QtBot, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert not page.register.isEnabled() or ollama_available()
    with fake_ollama(tmp_path, monkeypatch, models=["arithmetic-tutor"]) as server:
        server.set_responder(lambda request, api: "6<|im_end|>")  # a leaked end-of-turn mark
        page.refresh()  # Ollama is installed now
        assert page.register.isEnabled(), page.ollama_hint.text()
        page.register.click()
        wait_for_task(qtbot, page)
    sample = page.exported.samples[0] if page.exported else None
    assert sample is not None and sample.prompt in page.ollama_prompt.text()
    assert page.ollama_box.isVisible() and "arithmetic-tutor" in page.ollama_box.title()
    assert page.ollama_answer.toPlainText() == "6<|im_end|>"
    assert page.hf_answer.toPlainText() == sample.finetuned
    assert page.ollama_warning.isVisible() and "'<|im_end|>'" in page.ollama_warning.text()


# --- try it -----------------------------------------------------------------------------------

def test_the_chat_streams_the_base_then_the_fine_tuned_answer(page: ExportPage, qtbot: QtBot,
                                                              tmp_path: Path) -> None:
    chat = page.chat
    page.tabs.setCurrentWidget(chat)
    seen: list[tuple[str, str]] = []  # (variant, the pane's text), as it changes
    for variant, pane in chat.answers.items():
        pane.textChanged.connect(lambda v=variant, p=pane: seen.append((v, p.toPlainText())))
    chat.temperature.setValue(0.0)
    chat.max_tokens.setValue(6)
    chat.prompt.setText("What is 3 plus 3?")
    chat.ask_button.click()
    assert chat.stop_button.isEnabled() and not chat.ask_button.isEnabled()
    qtbot.waitUntil(lambda: chat.ask_button.isEnabled(), timeout=CHILD_TIMEOUT_MS)
    assert chat.status.text().startswith("Done"), chat.status.text()
    streamed = {variant: [text for v, text in seen if v == variant and text]
                for variant in (BASE, FINETUNED)}
    for variant in (BASE, FINETUNED):
        # Token by token: the pane grew before the whole answer replaced it at the end.
        assert len(streamed[variant]) >= 2, seen
        assert chat.answers[variant].toPlainText() == streamed[variant][-1].strip()
    order = [v for v, text in seen if text]
    assert order.index(BASE) < order.index(FINETUNED)
    shot(page, tmp_path / "export-chat.png")


def test_stop_ends_the_answer_early(page: ExportPage, qtbot: QtBot) -> None:
    chat = page.chat
    chat.temperature.setValue(0.0)
    chat.max_tokens.setValue(200)
    chat.prompt.setText("What is 8 plus 8?")
    base = chat.answers[BASE]

    def stop_at_the_first_token() -> None:
        if chat.stop_button.isEnabled():
            chat.stop_button.click()

    base.textChanged.connect(stop_at_the_first_token)
    chat.ask_button.click()
    qtbot.waitUntil(lambda: chat.ask_button.isEnabled(), timeout=CHILD_TIMEOUT_MS)
    assert chat.status.text() == "Stopped. The answers so far are shown."
    assert base.toPlainText() and not chat.stop_button.isEnabled()


# --- a cancelled export (last: it leaves a cancelled export job) -------------------------------

def test_cancel_during_the_export_leaves_no_zip(page: ExportPage, qtbot: QtBot,
                                                tmp_path: Path) -> None:
    earlier = page.exported
    assert earlier is not None
    page.set_destination(tmp_path / "stopped.zip")
    page.export_button.click()
    qtbot.waitUntil(lambda: "prompt" in page.status.text(), timeout=CHILD_TIMEOUT_MS)
    page.cancel_button.click()
    wait_for_task(qtbot, page)
    assert page.status.text() == STOPPED["export"]
    assert not (tmp_path / "stopped.zip").exists() and not list(tmp_path.glob("*.partial"))
    assert not list(earlier.zip_path.parent.glob("*.partial"))
    assert verify_archive(earlier.zip_path) == []  # the earlier export is untouched
    assert page.exported == earlier and page.export_button.isEnabled()
    job = JobService(page.context).latest(page.project_id, JobKind.EXPORT)
    assert job is not None and job.status == JobStatus.CANCELLED


# --- a second run (last: it becomes the latest) -----------------------------------------------

def test_a_newer_run_is_chosen_and_the_older_one_keeps_its_export(
        page: ExportPage, qtbot: QtBot) -> None:
    train(page.context, page.project_id)
    page.refresh()  # back on the page after training again
    assert page.run_row.isVisible() and page.run_id == 2
    assert [page.run_choice.itemText(i) for i in range(page.run_choice.count())] == [
        "Run 2 (latest)", "Run 1"]
    assert page.last_box.isHidden() and page.status.text() == NOT_EXPORTED
    assert page.chat.boxes[FINETUNED].title() == "Fine-tuned (run 2)"
    assert page.destination is not None and page.destination.name.endswith("-run-2.zip")
    page.run_choice.setCurrentIndex(1)
    page.run_choice.activated.emit(1)
    assert page.run_id == 1 and page.last_box.isVisible() and page.exported is not None
    # Run 1's exported report, with the sample answers the draft of run 2 has not.
    qtbot.waitUntil(lambda: "Before and after" in page.report.toPlainText(), timeout=60_000)
