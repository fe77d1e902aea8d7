"""From the dashboard to an exported model, the way a person walks it: every page, the real
trainer child, the fake LLM server over HTTP, the tiny model, real corpus documents."""

from __future__ import annotations

import json
import sqlite3
import zipfile
from pathlib import Path

import pytest
from PySide6.QtCore import QItemSelectionModel
from PySide6.QtWidgets import QPushButton, QWizard
from pytestqt.qtbot import QtBot

from finetuneflow.core.export.archive import verify_archive
from finetuneflow.gui.main_window import MainWindow
from finetuneflow.services.context import AppContext
from finetuneflow.services.training import TrainingService
from tests.gui.test_model_and_data_pages import drop_files
from tests.helpers.fake_llm import FakeLLMServer

pytestmark = pytest.mark.slow
DOCUMENTS = ("pdf/normal_pdflatex_4pages.pdf", "docx/headers-footers_2pages.docx",
             "txt/latin1_finnish.txt")
PAGE_ORDER = ("model", "task", "data", "preview", "review", "hardware", "train", "export")


def next_page(window: MainWindow, expected: str) -> object:
    wizard = window.wizard
    assert wizard.button(QWizard.WizardButton.NextButton).isEnabled(), "Next is disabled"
    wizard.next()
    assert wizard.current_step_key() == expected
    return wizard.currentPage()


def train_then_export(window: MainWindow, qtbot: QtBot, context: AppContext, project_id: str,
                      steps: int) -> Path:
    """From the Hardware page: Train (the chart follows every step), then export the zip; its
    path, verified."""
    page = next_page(window, "train")
    page.start_button.click()
    qtbot.waitUntil(lambda: len(page.chart.train[0]) >= 2, timeout=180_000)
    next_button = window.wizard.button(QWizard.WizardButton.NextButton)
    qtbot.waitUntil(lambda: page.isComplete() and next_button.isEnabled(), timeout=300_000)
    assert page.chart.train[0][-1] == steps
    page = next_page(window, "export")
    page.export_button.click()
    qtbot.waitUntil(lambda: page.last_box.isVisible() and page.export_button.isEnabled(),
                    timeout=300_000)
    exported = next(context.home.project_subdir(project_id, "exports").glob("*.zip"))
    assert verify_archive(exported) == []
    return exported


def test_dashboard_to_exported_zip(window: MainWindow, qtbot: QtBot, context: AppContext,
                                   tiny_model_dir: Path, corpus_dir: Path,
                                   fake_llm: FakeLLMServer) -> None:
    # 1. Create a project from the dashboard.
    project = window.dashboard.create_project("End to end")
    page = window.open_project(project.id).currentPage()
    assert window.wizard.current_step_key() == "model"

    # 2. Pick the tiny model's folder.
    page.select(str(tiny_model_dir))
    qtbot.waitUntil(page.isComplete, timeout=30_000)

    # 3. The Q&A task (the default choice).
    page = next_page(window, "task")
    assert page.chosen_type().value == "qa"

    # 4. Drop three corpus files.
    page = next_page(window, "data")
    drop_files(page.drop_zone, [corpus_dir / name for name in DOCUMENTS])
    qtbot.waitUntil(lambda: page.table.rowCount() == 3 and not page.tasks.is_running("ingest"),
                    timeout=60_000)

    # 5. Preview, then the full generation, against the fake server.
    page = next_page(window, "preview")
    page.llm.provider.setCurrentIndex(page.llm.provider.findData("ollama"))
    page.llm.base_url.setText(fake_llm.base_url)
    page.llm.model.setCurrentText("gpt-oss:20b")
    page.generate.click()
    qtbot.waitUntil(lambda: page.chunks.count() > 0 and page.generate.isEnabled(),
                    timeout=60_000)
    page = next_page(window, "review")
    page.generate.click()
    qtbot.waitUntil(lambda: not page.runner.is_running("generate") and page.isComplete(),
                    timeout=120_000)

    # 6. Edit one example and reject another.
    select = QItemSelectionModel.SelectionFlag.ClearAndSelect | \
        QItemSelectionModel.SelectionFlag.Rows
    page.table.selectionModel().select(page.model.index(0, 0), select)
    page.reply_text.setPlainText("An answer the person rewrote.")
    page.save_current_edit()
    page.table.selectionModel().select(page.model.index(1, 0), select)
    page.reject.click()
    edited_id, rejected_id = page.model.row_at(0).id, page.model.row_at(1).id

    # 7. The Hardware page (CPU): the Quick preset.
    page = next_page(window, "hardware")  # Next writes the dataset files
    qtbot.waitUntil(page.isComplete, timeout=120_000)
    page.preset.setCurrentIndex(page.preset.findData("quick"))
    page.preset.activated.emit(page.preset.currentIndex())
    training = TrainingService(context)
    assert training.config_for(project.id).max_steps == 60
    training.save_config(project.id, training.config_for(project.id).replace(
        max_steps=20, logging_steps=2, eval_steps=10, save_steps=10))

    # 8–9. Train 20 steps, with the chart updating, and export the zip.
    exported = train_then_export(window, qtbot, context, project.id, steps=20)
    names = zipfile.ZipFile(exported).namelist()
    for part in ("adapter/adapter_model.safetensors", "adapter/adapter_config.json",
                 "config.json", "metrics.json", "report.md", "MANIFEST.sha256"):
        assert any(name.endswith(part) for name in names), part
    metrics = json.loads(zipfile.ZipFile(exported).read(
        next(n for n in names if n.endswith("metrics.json"))))
    assert metrics["loss_history"]

    with sqlite3.connect(context.home.root / "finetuneflow.db") as db:
        statuses = dict(db.execute("SELECT id, status FROM dataset_examples WHERE id IN (?, ?)",
                                   (edited_id, rejected_id)).fetchall())
        jobs = dict(db.execute("SELECT kind, status FROM jobs WHERE project_id = ? "
                               "ORDER BY id", (project.id,)).fetchall())
        step = db.execute("SELECT current_step FROM projects WHERE id = ?",
                          (project.id,)).fetchone()[0]
    assert statuses == {edited_id: "edited", rejected_id: "rejected"}
    assert jobs == {"ingest": "succeeded", "preview": "succeeded", "generate": "succeeded",
                    "train": "succeeded", "export": "succeeded"}
    assert step == "export"
    train_lines = (context.home.project_subdir(project.id, "datasets") / "train.jsonl"
                   ).read_text(encoding="utf-8")
    assert "An answer the person rewrote." in train_lines


APP_GENERATING = """
import sys
from finetuneflow.gui.app import make_application
from finetuneflow.gui.main_window import MainWindow
from finetuneflow.services.context import AppContext
app = make_application()
window = MainWindow(AppContext.open())
window.show()
window.open_project(sys.argv[1], "review").currentPage().start_generation()
app.exec()
"""


def test_killed_app_generation_resumes_from_the_banner(
        tmp_path: Path, qtbot: QtBot, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 the app mid-generation; the restarted app offers Resume, and the resumed run
    ends with exactly a clean run's examples."""
    import signal
    import subprocess
    import sys

    from finetuneflow.services.context import AppContext
    from finetuneflow.services.review import ExampleFilter, ReviewService
    from tests.helpers.cli import REPO_ROOT, cli_env, run_cli_json
    from tests.integration.test_generation_resume import (
        new_project,
        stored_examples,
        unique_document,
        wait_for_examples,
    )

    document = unique_document(tmp_path)
    with FakeLLMServer(latency_ms=150) as server:
        clean_home, home = tmp_path / "clean", tmp_path / "app"
        expected = run_cli_json(clean_home, "generate",
                                new_project(clean_home, tiny_model_dir, document, server),
                                "--full")
        project = new_project(home, tiny_model_dir, document, server)
        app = subprocess.Popen([sys.executable, "-c", APP_GENERATING, project],
                               env=cli_env(home, QT_QPA_PLATFORM="offscreen"), cwd=REPO_ROOT,
                               text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for_examples(home, 6, app)
        app.send_signal(signal.SIGKILL)
        app.wait(10)
        assert 0 < len(stored_examples(home)) < expected["examples"]

        monkeypatch.setenv("FINETUNEFLOW_HOME", str(home))
        context = AppContext.open()  # the restart: the dead app's job becomes interrupted
        try:
            window = MainWindow(context)
            qtbot.addWidget(window)
            window.show()
            assert window.resume_banner.isVisible()
            [button] = [b for b in window.resume_banner.findChildren(QPushButton)
                        if b.text() == "Resume"]
            button.click()
            page = window.wizard.currentPage()
            qtbot.waitUntil(lambda: not page.runner.is_running("generate"), timeout=120_000)
            assert ReviewService(context).count(project, ExampleFilter()) == expected["examples"]
        finally:
            context.close()
    assert stored_examples(home) == stored_examples(clean_home)
