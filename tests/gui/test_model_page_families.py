"""The Model page says, before training, what a chosen model cannot be turned into."""

from __future__ import annotations

from pytestqt.qtbot import QtBot

from finetuneflow.gui.colours import TONE_PROPERTY
from finetuneflow.gui.main_window import MainWindow
from finetuneflow.gui.pages.model_page import ModelPage
from tests.helpers.families import cached_family_model


def test_a_family_ollama_cannot_import_is_flagged_when_chosen(window: MainWindow,
                                                                qtbot: QtBot) -> None:
    project = window.dashboard.create_project("Qwen3 page")
    page = window.open_project(project.id).currentPage()
    assert isinstance(page, ModelPage)
    page.select(str(cached_family_model("qwen3")))
    qtbot.waitUntil(page.isComplete, timeout=20_000)
    assert "Ollama cannot import a Qwen3ForCausalLM model" in page.status.text()
    assert page.status.property(TONE_PROPERTY) == "warning"

    page.select(str(cached_family_model("phi3")))
    qtbot.waitUntil(lambda: "Phi3ForCausalLM" in page.facts.text(), timeout=20_000)
    assert "Ollama" not in page.status.text()
    assert page.status.property(TONE_PROPERTY) is None


def test_the_catalogue_row_shows_the_route_to_ollama(window: MainWindow) -> None:
    project = window.dashboard.create_project("Catalogue rows")
    page = window.open_project(project.id).currentPage()
    assert isinstance(page, ModelPage)
    column = page.table.columnCount() - 1
    rows = {page.table.item(row, 0).text(): page.table.item(row, column)
            for row in range(page.table.rowCount())}
    qwen3 = rows["Qwen/Qwen3-0.6B"]
    assert qwen3.text() == "via GGUF" and "GGUF" in qwen3.toolTip()
    assert rows["meta-llama/Llama-3.2-1B-Instruct"].text() == "yes"
    page.filter.setText("thinking")
    shown = {page.table.item(row, 0).text() for row in range(page.table.rowCount())
             if not page.table.isRowHidden(row)}
    assert "HuggingFaceTB/SmolLM3-3B" in shown and "Qwen/Qwen3-8B" in shown
    assert "microsoft/Phi-4-mini-instruct" not in shown
