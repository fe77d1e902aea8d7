"""The dashboard's notice of project folders the database does not list (it was deleted and
recreated): how many, Restore in the background with progress, and Dismiss."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from finetuneflow.gui.main_window import MainWindow
from finetuneflow.gui.orphan_banner import describe_orphans
from finetuneflow.services.context import AppContext
from finetuneflow.services.doctor import OrphanFolder
from finetuneflow.services.projects import ProjectService
from tests.integration.test_restore import _build_project, _counts, _lose_database

WAIT_MS = 120_000
SHOTS = os.environ.get("FINETUNEFLOW_SHOTS")  # a folder to keep the PNGs in, to look at


@pytest.fixture
def lost(context: AppContext, tmp_path: Path, tiny_model_dir: Path
         ) -> Iterator[tuple[AppContext, str, dict[str, int]]]:
    """A project with documents, a dataset and a run, and a second, empty one; then the
    database is deleted and a new one made."""
    project_id = _build_project(context, tmp_path, tiny_model_dir)
    ProjectService(context).create("Valves")
    before = _counts(context.home.db_path, project_id)
    fresh = _lose_database(context)
    yield fresh, project_id, before
    fresh.close()


def _window(qtbot: QtBot, context: AppContext) -> MainWindow:
    window = MainWindow(context)
    qtbot.addWidget(window)
    window.show()
    return window


def _shot(window: MainWindow, tmp_path: Path, name: str) -> None:
    folder = Path(SHOTS) if SHOTS else tmp_path
    assert window.grab().save(str(folder / name))


def test_restore_brings_the_projects_back(qtbot: QtBot, tmp_path: Path,
                                          lost: tuple[AppContext, str, dict[str, int]]) -> None:
    context, project_id, before = lost
    window = _window(qtbot, context)
    banner = window.dashboard.orphan_banner
    assert banner.isVisible() and window.dashboard.table.rowCount() == 0
    assert banner.text.text().startswith("<b>2 project folders are not in this list</b>")
    assert "“Garden”" in banner.text.text() and "“Valves”" in banner.text.text()
    _shot(window, tmp_path, "orphan-banner.png")

    banner.restore_button.click()
    assert not window.dashboard.new_button.isEnabled()  # busy while it restores
    qtbot.waitUntil(lambda: not window.dashboard.tasks.busy(), timeout=WAIT_MS)

    assert sorted(p.name for p in ProjectService(context).list()) == ["Garden", "Valves"]
    assert window.dashboard.table.rowCount() == 2 and window.dashboard.new_button.isEnabled()
    assert _counts(context.home.db_path, project_id) == {**before, "runs": 1}
    assert banner.isVisible() and not banner.restore_button.isVisible()
    assert not banner.progress.isVisible()
    text = banner.text.text()
    assert f"Restored “Garden” ({project_id}): documents 3, chunks {before['chunks']}, " \
           "examples 60, runs 1." in text
    assert "original names" not in text
    [valves] = [line for line in text.split("<br>") if line.startswith("Restored “Valves”")]
    assert valves.endswith("documents 0, chunks 0, examples 0, runs 0.")  # nothing missing
    _shot(window, tmp_path, "orphan-banner-restored.png")
    banner.dismiss_button.click()
    assert not banner.isVisible()


def test_dismiss_restores_nothing(qtbot: QtBot,
                                  lost: tuple[AppContext, str, dict[str, int]]) -> None:
    context, _project_id, _before = lost
    window = _window(qtbot, context)
    window.dashboard.orphan_banner.dismiss_button.click()
    assert not window.dashboard.orphan_banner.isVisible()
    assert ProjectService(context).list() == []
    assert len(context.home.project_folder_ids()) == 2  # the folders are left as they are


def test_many_folders_name_the_first_few_as_text() -> None:
    orphans = [OrphanFolder(f"id-{n}", f"/p/id-{n}", f"<i>Project {n}</i>") for n in range(7)]
    text = describe_orphans(orphans)
    assert text.startswith("<b>7 project folders are not in this list</b> (“&lt;i&gt;Project 0")
    assert "Project 4&lt;/i&gt;” and 2 more)" in text and "Project 5" not in text


def test_no_banner_when_every_folder_is_listed(qtbot: QtBot, context: AppContext) -> None:
    ProjectService(context).create("Listed")
    window = _window(qtbot, context)
    assert not window.dashboard.orphan_banner.isVisible()
