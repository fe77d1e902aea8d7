"""The Review page reads its examples when the person arrives on it and they have changed: a
jump across the steps passes it without reading, and arriving on unchanged examples keeps the
table as it was (its scroll position, its selection)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetuneflow.core.steps import step_index
from finetuneflow.gui.main_window import MainWindow
from finetuneflow.gui.pages.review_page import ReviewPage
from finetuneflow.services.context import AppContext
from finetuneflow.services.datasets import DatasetService
from finetuneflow.services.review import ReviewService

pytestmark = pytest.mark.slow


def import_pairs(context: AppContext, project_id: str, folder: Path, first: int,
                 count: int) -> None:
    path = folder / f"pairs-{first}.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": f"What is {i} plus one?",
                                          "completion": f"It is {i + 1}."})
                              for i in range(first, first + count)), encoding="utf-8")
    DatasetService(context).import_file(project_id, path)


@pytest.fixture
def project_id(window: MainWindow, context: AppContext, tmp_path: Path) -> str:
    project = window.dashboard.create_project("Rereads")
    import_pairs(context, project.id, tmp_path, 0, 3)
    return project.id


def count_resets(page: ReviewPage) -> list[str]:
    """The table's reads from the database (each one resets its model)."""
    resets: list[str] = []
    page.model.modelReset.connect(lambda: resets.append("read"))
    return resets


def test_arriving_on_unchanged_examples_keeps_the_table(window: MainWindow,
                                                         project_id: str) -> None:
    wizard = window.open_project(project_id, "review")
    page = wizard.currentPage()
    assert isinstance(page, ReviewPage) and page.model.rowCount() == 3
    assert page.write_dataset() is not None  # else moving on writes it, which changes rows
    page.table.selectRow(1)
    resets = count_resets(page)
    for step in ("data", "review", "export", "review"):  # forward onto it, and back onto it
        wizard.go_to_index(step_index(step))
    assert wizard.currentPage() is page and resets == []
    assert page.selected_ids() == [page.model.row_at(1).id]  # the selection is still there


def test_a_jump_across_review_reads_nothing_and_arriving_reads_the_change(
        window: MainWindow, context: AppContext, project_id: str, tmp_path: Path) -> None:
    wizard = window.open_project(project_id, "review")
    page = wizard.currentPage()
    assert isinstance(page, ReviewPage)
    wizard.go_to_index(step_index("data"))
    import_pairs(context, project_id, tmp_path, 10, 2)  # as the Data page's import does
    resets = count_resets(page)
    wizard.go_to_index(step_index("export"))  # passes Review on the way
    assert resets == [] and page.model.rowCount() == 3
    wizard.go_to_index(step_index("review"))
    assert resets == ["read"] and page.model.rowCount() == 5 and page.usable == 5
    assert page.shown.text() == "5 shown"


def test_an_edit_elsewhere_is_read_when_the_person_comes_back(
        window: MainWindow, context: AppContext, project_id: str) -> None:
    """Rejecting from the command line (another process) changes no count, only a row."""
    wizard = window.open_project(project_id, "review")
    page = wizard.currentPage()
    assert isinstance(page, ReviewPage)
    first = page.model.row_at(0)
    wizard.go_to_index(step_index("hardware"))
    ReviewService(context).reject([first.id])
    wizard.go_to_index(step_index("review"))
    rows = [page.model.row_at(row) for row in range(page.model.rowCount())]
    assert [row.status for row in rows if row.id == first.id] == ["rejected"]
    assert page.usable == 2
