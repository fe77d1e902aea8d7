from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QInputDialog, QMessageBox, QPushButton, QWidget
from pytestqt.qtbot import QtBot

from finetuneflow.gui.main_window import MainWindow
from finetuneflow.gui.pages.data_page import DataPage
from finetuneflow.gui.pages.model_page import ModelPage
from finetuneflow.services.base_model import ModelService
from finetuneflow.services.context import AppContext
from finetuneflow.services.dataset_reader import IMPORT_BATCH
from finetuneflow.services.ingest import IngestService
from finetuneflow.services.review import ReviewService
from tests.helpers.documents import write_books
from tests.helpers.images import assert_not_blank
from tests.helpers.memory_keyring import MemoryKeyring


def drop_files(target: QWidget, paths: list[Path]) -> None:
    """A real drag-enter + drop of local files, as the window system would deliver them."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path)) for path in paths])
    position = QPointF(target.width() / 2, target.height() / 2)
    actions = Qt.DropAction.CopyAction
    with warnings.catch_warnings():  # PySide6 has only the (deprecated) QPoint overload
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(position.toPoint(), actions, mime, Qt.MouseButton.LeftButton,
                                Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(target, enter)
    assert enter.isAccepted(), "the drop target refused the drag"
    drop = QDropEvent(position, actions, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(target, drop)


def test_model_page_with_a_local_folder(window: MainWindow, qtbot: QtBot,
                                        tiny_model_dir: Path, context: AppContext,
                                        tmp_path: Path) -> None:
    project = window.dashboard.create_project("Model page")
    wizard = window.open_project(project.id)
    page = wizard.currentPage()
    assert isinstance(page, ModelPage) and not page.isComplete()
    assert page.table.rowCount() >= 12

    page.filter.setText("smollm2")
    visible = [r for r in range(page.table.rowCount()) if not page.table.isRowHidden(r)]
    assert len(visible) == 3

    page.select(str(tiny_model_dir))
    qtbot.waitUntil(page.isComplete, timeout=10_000)
    assert "LlamaForCausalLM" in page.facts.text()
    assert ModelService(context).current(project.id).ref == str(tiny_model_dir.resolve())

    page.select(str(tmp_path))  # not a model folder: an inline message, the choice stays
    qtbot.waitUntil(lambda: "config.json" in page.status.text(), timeout=10_000)
    assert page.isComplete()
    shot = tmp_path / "model.png"
    window.grab().save(str(shot))
    assert_not_blank(shot)


@pytest.fixture
def data_page(window: MainWindow, context: AppContext, tiny_model_dir: Path) -> DataPage:
    project = window.dashboard.create_project("Data page")
    ModelService(context).choose(project.id, str(tiny_model_dir))
    page = window.open_project(project.id, "data").currentPage()
    assert isinstance(page, DataPage)
    return page


def test_drop_documents_onto_the_data_page(data_page: DataPage, qtbot: QtBot,
                                           corpus_dir: Path, window: MainWindow,
                                           tmp_path: Path) -> None:
    assert data_page.files_or_empty.currentWidget() is data_page.drop_zone
    assert not data_page.isComplete() and not window.wizard.button(
        window.wizard.WizardButton.NextButton).isEnabled()

    drop_files(data_page.drop_zone, [corpus_dir / "pdf/normal_pdflatex_4pages.pdf",
                                     corpus_dir / "txt/empty.txt"])
    qtbot.waitUntil(lambda: data_page.table.rowCount() == 2 and
                    not data_page.tasks.is_running("ingest"), timeout=30_000)
    assert data_page.isComplete()
    assert window.wizard.button(window.wizard.WizardButton.NextButton).isEnabled()
    names = [data_page.table.item(r, 1).text() for r in range(2)]
    assert names == ["normal_pdflatex_4pages.pdf", "empty.txt"]
    assert "empty" in data_page.table.item(1, 5).text().lower()

    drop_files(data_page.table.viewport(), [corpus_dir / "docx/google-docs-export.docx"])
    qtbot.waitUntil(lambda: data_page.table.rowCount() == 3, timeout=30_000)
    shot = tmp_path / "data.png"
    window.grab().save(str(shot))
    assert_not_blank(shot)


def test_encrypted_pdf_prompts_for_the_password(data_page: DataPage, qtbot: QtBot,
                                                corpus_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([("wrong", True), ("openpassword", True)])
    prompts: list[str] = []

    def fake_get_text(_parent, _title, label, *_args, **_kwargs):
        prompts.append(label)
        return next(answers)

    monkeypatch.setattr(QInputDialog, "getText", fake_get_text)
    data_page.add_paths([corpus_dir / "pdf/encrypted_userpw_rc4-128_libreoffice.pdf"])
    qtbot.waitUntil(lambda: len(prompts) == 2 and not data_page.tasks.is_running("ingest")
                    and data_page.table.item(0, 4).text() != "0", timeout=30_000)
    assert "password" in prompts[0].lower() and "wrong" in prompts[1].lower()
    assert data_page.table.rowCount() == 1 and data_page.isComplete()


def test_remove_and_import_a_dataset(data_page: DataPage, qtbot: QtBot, corpus_dir: Path,
                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     context: AppContext) -> None:
    data_page.add_paths([corpus_dir / "txt/latin1_finnish.txt"])
    qtbot.waitUntil(lambda: data_page.table.rowCount() == 1
                    and not data_page.tasks.is_running("ingest"), timeout=30_000)
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *_args: QMessageBox.StandardButton.Yes)
    monkeypatch.setattr(QMessageBox, "information", lambda *_args: None)
    data_page.table.selectRow(0)
    data_page.remove_button.click()
    assert data_page.table.rowCount() == 0 and not data_page.isComplete()

    dataset = tmp_path / "qa.jsonl"
    good = {"messages": [{"role": "user", "content": "Q?"},
                         {"role": "assistant", "content": "A."}]}
    dataset.write_text(json.dumps(good) + "\n{broken\n", encoding="utf-8")
    told: list[str] = []
    monkeypatch.setattr(QMessageBox, "information", lambda _parent, _title, text: told.append(text))
    data_page.import_dataset(dataset)
    qtbot.waitUntil(lambda: not data_page.tasks.is_running("ingest"), timeout=60_000)
    said = "qa.jsonl (messages): 1 imported, 1 rejected, 0 already present."
    assert data_page.summary.text() == said
    assert told[0].startswith(f"{said}\nline 2: not valid JSON")
    assert ReviewService(context).stats(data_page.project_id).accepted == 1
    assert data_page.isComplete()
    assert IngestService(context).has_training_material(data_page.project_id)


def test_gated_model_asks_for_a_token_and_keeps_it_in_the_keychain(
        window: MainWindow, qtbot: QtBot, keychain: MemoryKeyring, context: AppContext,
        monkeypatch: pytest.MonkeyPatch) -> None:
    token = "hf_" + "x" * 34
    monkeypatch.setattr(QInputDialog, "getText", lambda *_args, **_kwargs: (token, True))
    project = window.dashboard.create_project("Gated")
    page = window.open_project(project.id).currentPage()
    page.select("meta-llama/Llama-3.2-1B-Instruct")
    # With the token stored the retry gets past the gate, to the (offline) Hub.
    qtbot.waitUntil(lambda: "offline" in page.status.text(), timeout=15_000)
    assert keychain.store[("FineTuneFlow", "hf-token")] == token
    for path in context.home.root.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path


def test_a_large_import_shows_progress_and_cancel_keeps_what_was_stored(
        data_page: DataPage, qtbot: QtBot, tmp_path: Path, context: AppContext) -> None:
    lines = IMPORT_BATCH * 3
    dataset = tmp_path / "large.jsonl"
    dataset.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"What is {i} plus 1?"},
        {"role": "assistant", "content": f"It is {i + 1}."}]}) + "\n" for i in range(lines)),
        encoding="utf-8")
    data_page.import_dataset(dataset)
    assert data_page.cancel.isVisible()
    qtbot.waitUntil(lambda: "imported" in data_page.summary.text(), timeout=120_000)
    assert data_page.summary.text().startswith(f"large.jsonl: line {IMPORT_BATCH:,} of {lines:,}")
    data_page.cancel.click()
    qtbot.waitUntil(lambda: not data_page.tasks.is_running("ingest"), timeout=120_000)
    stored = ReviewService(context).stats(data_page.project_id).accepted
    assert 0 < stored < lines and stored % IMPORT_BATCH == 0
    assert data_page.summary.text() == (
        f"large.jsonl (messages) (stopped): {stored:,} imported, 0 rejected, 0 already present. "
        "Import the same file again to add the rest: the lines stored are skipped.")
    assert not data_page.cancel.isVisible()


def test_re_cut_chunks_and_cancel_adding_files(data_page: DataPage, qtbot: QtBot,
                                               corpus_dir: Path, tmp_path: Path) -> None:
    def idle() -> bool:
        return not data_page.tasks.is_running("ingest")

    data_page.add_paths([corpus_dir / "pdf/normal_pdflatex_4pages.pdf"])
    qtbot.waitUntil(lambda: data_page.table.rowCount() == 1 and idle(), timeout=30_000)
    before = int(data_page.table.item(0, 4).text())

    data_page.chunk_tokens.setValue(96)
    data_page.overlap.setValue(16)
    recut = next(b for b in data_page.findChildren(QPushButton) if b.text() == "Re-cut chunks")
    recut.click()
    assert data_page.cancel.isVisibleTo(data_page)  # the worker runs; the page shows it
    qtbot.waitUntil(idle, timeout=60_000)
    after = int(data_page.table.item(0, 4).text())
    assert after > before
    assert data_page.summary.text() == f"1 file · {after} chunks"

    books = write_books(tmp_path / "books", 6)
    data_page.add_paths(books)
    data_page.cancel.click()
    qtbot.waitUntil(idle, timeout=60_000)
    assert not data_page.cancel.isVisibleTo(data_page)
    rows = data_page.table.rowCount()
    assert 1 <= rows < 1 + len(books)
    assert all(int(data_page.table.item(r, 4).text()) > 0 for r in range(rows))
