"""The dashboard: what each project shows, and rename, duplicate, delete, the sample; the
window remembers where it was."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PySide6.QtWidgets import QInputDialog, QMessageBox
from pytestqt.qtbot import QtBot

from finetuneflow.gui.dashboard import describe_job, describe_when
from finetuneflow.gui.main_window import MainWindow
from finetuneflow.services.context import AppContext
from finetuneflow.services.ingest import IngestService
from finetuneflow.services.jobs import JobService
from finetuneflow.services.projects import ProjectService, ProjectSummary
from finetuneflow.services.samples import SAMPLE_FILES, SAMPLE_NAME
from finetuneflow.storage.tables import JobKind, JobStatus

WAIT_MS = 60_000


def names(window: MainWindow) -> list[str]:
    table = window.dashboard.table
    return [table.item(row, 0).text() for row in range(table.rowCount())]


def test_a_row_shows_step_activity_and_the_latest_job(window: MainWindow,
                                                      context: AppContext) -> None:
    project = window.dashboard.create_project("Garden")
    jobs = JobService(context)
    jobs.interrupt(jobs.create(project.id, JobKind.TRAIN))
    window.dashboard.refresh()
    row = [window.dashboard.table.item(0, column).text() for column in range(5)]
    assert row[:3] == ["Garden", "not chosen yet", "Not started"]  # nothing made yet
    assert row[3] in {"just now", "1 min ago"}
    assert row[4] == "Training interrupted"
    assert window.dashboard.table.item(0, 4).font().bold()


def test_job_states_and_times_read_as_words() -> None:
    now = datetime(2025, 6, 3, 12, 0, tzinfo=UTC)
    base = ProjectSummary("id", "P", None, "model", now, now)
    assert describe_job(base) == "—"
    for status, words in ((JobStatus.RUNNING, "Generation running"),
                          (JobStatus.FAILED, "Generation failed"),
                          (JobStatus.SUCCEEDED, "Generation done")):
        project = ProjectSummary("id", "P", None, "model", now, now, "generate", status)
        assert describe_job(project) == words
    stored = (now - timedelta(minutes=5)).replace(tzinfo=None)  # naive UTC, as stored
    assert describe_when(stored, now.astimezone()) == "5 min ago"
    assert describe_when((now - timedelta(days=40)).replace(tzinfo=None),
                         now.astimezone()).startswith("2025-04-")


def test_rename(window: MainWindow, monkeypatch: pytest.MonkeyPatch) -> None:
    dashboard = window.dashboard
    dashboard.create_project("Old name")
    monkeypatch.setattr(QInputDialog, "getText",
                        lambda *_args, **kwargs: (f"  New {kwargs['text']}  ", True))
    dashboard.rename_button.click()
    assert names(window) == ["New Old name"]
    warnings: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text: warnings.append(text))
    dashboard.rename(dashboard.selected_project().id, "   ")
    assert warnings == ["A project needs a name."] and names(window) == ["New Old name"]


def test_duplicate_selects_the_copy(window: MainWindow, qtbot: QtBot,
                                    context: AppContext, tmp_path: Path) -> None:
    dashboard = window.dashboard
    project = dashboard.create_project("Garden")
    document = tmp_path / "beds.txt"
    document.write_text("Raised beds are watered at dawn. " * 40, encoding="utf-8")
    IngestService(context).ingest(project.id, [document])
    dashboard.create_project("Other")
    dashboard.refresh(project.id)
    dashboard.duplicate_button.click()
    qtbot.waitUntil(lambda: dashboard.table.rowCount() == 3, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: dashboard.duplicate_button.isEnabled(), timeout=WAIT_MS)
    copy = dashboard.selected_project()
    assert copy is not None and copy.name == "Garden (copy)"
    assert [f.name for f in IngestService(context).list_files(copy.id)] == ["beds.txt"]


def test_delete_asks_and_refuses_while_a_job_runs(window: MainWindow, context: AppContext,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    dashboard = window.dashboard
    project = dashboard.create_project("Busy")
    jobs = JobService(context)
    job_id = jobs.create(project.id, JobKind.GENERATE)
    jobs.start(job_id)
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *_args: QMessageBox.StandardButton.Yes)
    warnings: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text: warnings.append(text))
    dashboard.delete_button.click()
    assert names(window) == ["Busy"] and "stop it first" in warnings[0]
    jobs.succeed(job_id)
    dashboard.delete_button.click()
    assert dashboard.list_or_empty.currentWidget() is dashboard.empty
    assert not context.home.project_dir(project.id).exists()


def test_the_empty_state_points_at_both_ways_in(window: MainWindow) -> None:
    text = window.dashboard.empty.text()
    assert "New project" in text and "Try the sample project" in text


def test_sample_button_creates_the_sample_and_opens_it(window: MainWindow, qtbot: QtBot,
                                                       context: AppContext) -> None:
    window.dashboard.sample_button.click()
    qtbot.waitUntil(lambda: window.wizard is not None, timeout=WAIT_MS)
    assert window.wizard is not None
    project = window.wizard.project
    assert project.name == SAMPLE_NAME
    files = IngestService(context).list_files(project.id)
    assert sorted(f.name for f in files) == sorted(SAMPLE_FILES)
    assert all(f.status == "ok" for f in files)

    window.show_dashboard()
    assert window.dashboard.selected_project().id == project.id
    assert window.dashboard.note.isVisibleTo(window) and "LLM" in window.dashboard.note.text()
    # The task reports its result and its end as two queued signals: the button is back once
    # the end arrives.
    qtbot.waitUntil(window.dashboard.sample_button.isEnabled, timeout=WAIT_MS)
    window.dashboard.sample_button.click()  # the same sample again, not a second one
    assert window.wizard is not None and window.wizard.project.id == project.id
    assert [p.name for p in ProjectService(context).list()] == [SAMPLE_NAME]


def test_the_window_remembers_its_size_and_place(qtbot: QtBot, context: AppContext) -> None:
    first = MainWindow(context)
    qtbot.addWidget(first)
    first.show()
    first.setGeometry(40, 30, 640, 470)  # within the offscreen screen (800 × 600)
    first.close()
    second = MainWindow(context)
    qtbot.addWidget(second)
    assert second.geometry().getRect() == (40, 30, 640, 470)
