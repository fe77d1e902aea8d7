"""The Review table and its side panel: kept examples first, questions readable, buttons that
fit the selected rows, and a length histogram only when there are lengths."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, Qt
from pytestqt.qtbot import QtBot

from finetuneflow.gui.main_window import MainWindow
from finetuneflow.gui.pages.review_page import ReviewPage
from finetuneflow.services.base_model import ModelService
from finetuneflow.services.context import AppContext
from finetuneflow.services.datasets import DatasetService
from finetuneflow.services.review import ExampleFilter, ReviewService
from tests.helpers.images import assert_not_blank

SHOTS = Path("/tmp/pages_shots")
TOPICS = ("watering the raised beds", "the compost bins", "the tool shed key",
          "the seed library", "the rain barrels", "the bee hives")


def imported_project(context: AppContext, window: MainWindow, tiny_model_dir: Path,
                     tmp_path: Path) -> str:
    project = window.dashboard.create_project("Review layout")
    ModelService(context).choose(project.id, str(tiny_model_dir))
    dataset = tmp_path / "qa.jsonl"
    dataset.write_text("\n".join(json.dumps({"messages": [
        {"role": "user", "content": f"What does the text say about the rules for {topic}?"},
        {"role": "assistant", "content": f"The handbook's rules for {topic} apply."}]})
        for topic in TOPICS), encoding="utf-8")
    DatasetService(context).import_file(project.id, dataset)
    return project.id


def select_rows(page: ReviewPage, rows: list[int]) -> None:
    selection = page.table.selectionModel()
    selection.clearSelection()
    flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
    for row in rows:
        selection.select(page.model.index(row, 0), flags)


def test_kept_rows_first_and_buttons_follow_the_selection(
        window: MainWindow, context: AppContext, tiny_model_dir: Path, tmp_path: Path) -> None:
    project_id = imported_project(context, window, tiny_model_dir, tmp_path)
    review = ReviewService(context)
    first_two = [row.id for row in review.page(project_id, ExampleFilter())[:2]]
    review.reject(first_two)
    window.resize(1100, 700)
    page = window.open_project(project_id, "review").currentPage()
    assert isinstance(page, ReviewPage)

    statuses = [page.model.row_at(r).status for r in range(page.model.rowCount())]
    assert statuses == ["accepted"] * 4 + ["rejected"] * 2  # the rejects come last
    assert [page.model.row_at(r).id for r in (4, 5)] == first_two
    page.status_filter.setCurrentIndex(page.status_filter.findData("rejected"))
    assert page.model.rowCount() == 2
    page.status_filter.setCurrentIndex(0)

    select_rows(page, [5])
    assert not page.reject.isEnabled() and page.restore.isEnabled()
    assert "Already rejected" in page.reject.toolTip()
    select_rows(page, [0])
    assert page.reject.isEnabled() and not page.restore.isEnabled()
    page.reject.click()
    assert not page.reject.isEnabled() and page.restore.isEnabled()

    # Questions that share their opening stay apart: elided in the middle, whole in the tip.
    assert page.table.textElideMode() == Qt.TextElideMode.ElideMiddle
    tip = page.model.data(page.model.index(1, 0), Qt.ItemDataRole.ToolTipRole)
    assert tip.endswith(f"{TOPICS[3]}?")

    # At 1100 px the question takes the spare width: by far the widest column.
    header = page.table.horizontalHeader()
    widths = [header.sectionSize(column) for column in range(header.count())]
    assert widths[0] >= 0.35 * page.table.viewport().width(), widths
    assert widths[0] > 2 * max(widths[1:]), widths

    # Imported examples have no token count: a sentence, not an empty plot.
    assert page.histogram.isHidden() and not page.no_lengths.isHidden()
    assert "no token count" in page.no_lengths.text()
    path = SHOTS / "review_imported.png"
    SHOTS.mkdir(exist_ok=True)
    window.grab().save(str(path))
    assert_not_blank(path)


def test_lengths_show_as_a_histogram_with_its_line_labelled(
        window: MainWindow, qtbot: QtBot, context: AppContext, tiny_model_dir: Path,
        tmp_path: Path) -> None:
    project_id = imported_project(context, window, tiny_model_dir, tmp_path)
    review = ReviewService(context)
    for number, row in enumerate(review.page(project_id, ExampleFilter())):
        review.edit(row.id, review.example(row.id)["messages"], 40 + 30 * number)
    window.resize(1100, 700)
    page = window.open_project(project_id, "review").currentPage()
    assert isinstance(page, ReviewPage)
    assert not page.histogram.isHidden() and page.no_lengths.isHidden()
    window.show()
    qtbot.waitUntil(lambda: page.histogram.built, timeout=10_000)
    qtbot.wait(200)
    assert page.histogram.limit.label.toPlainText().startswith("max length")
    path = SHOTS / "review_lengths.png"
    window.grab().save(str(path))
    assert_not_blank(path)
