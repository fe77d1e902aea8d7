"""Pages from the walk-through, looked at after the change: the Preview's passages, the
Model's sizes, the Export's fields, Try it, and why Next is disabled."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractScrollArea
from pytestqt.qtbot import QtBot

from finetuneflow.core.generation import LLMSettings
from finetuneflow.gui.main_window import MainWindow
from finetuneflow.gui.pages.preview_page import PreviewPage
from finetuneflow.services.base_model import ModelService
from finetuneflow.services.context import AppContext
from finetuneflow.services.generation import GenerationService
from finetuneflow.services.ingest import IngestService
from tests.helpers.fake_llm import FakeLLMServer
from tests.helpers.images import assert_not_blank

SHOTS = Path("/tmp/pages_shots")


def shoot(window: MainWindow, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    path = SHOTS / f"{name}.png"
    window.grab().save(str(path))
    assert_not_blank(path)


def horizontal_scroll_needed(view: QAbstractScrollArea) -> bool:
    bar = view.horizontalScrollBar()
    return bar.isVisible() and bar.maximum() > 0


def test_preview_passages_read_in_two_short_lines(
        window: MainWindow, qtbot: QtBot, context: AppContext, tiny_model_dir: Path,
        fake_llm: FakeLLMServer, tmp_path: Path) -> None:
    project = window.dashboard.create_project("Preview layout")
    ModelService(context).choose(project.id, str(tiny_model_dir))
    document = tmp_path / "a-rather-long-file-name-for-the-community-garden-handbook.txt"
    document.write_text("\n\n".join(f"Bed {n} is watered at dawn by the members of team {n}. "
                                     * 12 for n in range(20)), encoding="utf-8")
    IngestService(context).ingest(project.id, [document])
    generation = GenerationService(context)
    generation.set_llm_settings(project.id, LLMSettings(
        provider="ollama", base_url=fake_llm.base_url, model="gpt-oss:20b"))
    generation.run(project.id, preview=True)
    window.resize(1100, 760)
    window.show()
    page = window.open_project(project.id, "preview").currentPage()
    assert isinstance(page, PreviewPage) and page.chunks.count() > 0
    qtbot.wait(100)
    item = page.chunks.item(0)
    name, counts = item.text().split("\n")
    assert name == document.name and counts.startswith("chunk ") and "kept" in counts
    assert item.toolTip().startswith(document.name)
    assert not page.chunks.wordWrap()
    assert page.chunks.textElideMode() == Qt.TextElideMode.ElideMiddle
    assert not horizontal_scroll_needed(page.chunks)
    shoot(window, "preview_passages")


def test_model_sizes_have_units(window: MainWindow, qtbot: QtBot) -> None:
    project = window.dashboard.create_project("Model sizes")
    window.resize(1100, 760)
    window.show()
    page = window.open_project(project.id, "model").currentPage()
    sizes = [page.table.item(row, 1).text() for row in range(page.table.rowCount())]
    assert sizes and all(" parameters · about " in size and size.split()[-1] in {"MB", "GB"}
                         for size in sizes), sizes
    assert "Parameters" in page.table.item(0, 1).toolTip()
    qtbot.wait(50)
    shoot(window, "model_sizes")


def test_a_disabled_next_says_why(window: MainWindow, context: AppContext,
                                  tiny_model_dir: Path, qtbot: QtBot) -> None:
    from PySide6.QtWidgets import QWizard

    project = window.dashboard.create_project("Why not next")
    window.resize(1100, 760)
    window.show()
    wizard = window.open_project(project.id, "model")
    next_button = wizard.button(QWizard.WizardButton.NextButton)
    assert not next_button.isEnabled()
    assert "base model" in wizard.currentPage().subTitle()
    assert "base model" in next_button.toolTip()
    qtbot.wait(50)
    shoot(window, "next_blocked")
    ModelService(context).choose(project.id, str(tiny_model_dir))
    page = wizard.currentPage()
    page._show_choice(ModelService(context).current(project.id))
    assert next_button.isEnabled() and "Next is off" not in page.subTitle()
    assert wizard.steps.item(0).text().startswith("✓")  # marked at once, not on leaving
    assert next_button.toolTip() == ""
