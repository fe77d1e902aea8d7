"""The two-step start: the window's frame shows with Qt alone, then the database fills it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QInputDialog
from pytestqt.qtbot import QtBot

from finetuneflow.core.steps import STEPS, completed_steps
from finetuneflow.gui.app import fill_window
from finetuneflow.gui.dashboard import COLUMNS, Dashboard
from finetuneflow.gui.dashboard_frame import DashboardPlaceholder
from finetuneflow.gui.main_window import MainWindow
from finetuneflow.services.context import AppContext
from finetuneflow.services.datasets import DatasetService
from finetuneflow.services.progress import ProgressService
from finetuneflow.services.projects import ProjectService
from finetuneflow.storage.home import Home
from tests.helpers.cli import cli_env, run_cli

# A fresh interpreter: the test process has SQLAlchemy loaded already.
START_AND_REPORT = """
import sys
from finetuneflow.gui.app import fill_window, make_application, show_window
from finetuneflow.storage.home import Home

app = make_application()
home = Home.default()
window = show_window(home)
print("SHOWN:", window.isVisible(), window.windowHandle().isExposed())
print("LOADED:", ",".join(m for m in ("sqlalchemy", "torch") if m in sys.modules))
early = window.placeholder.table
print("EARLY:", ",".join(sorted(early.item(row, 0).text() for row in range(early.rowCount()))))
print("EARLY_OPEN:", window.placeholder.open_button.isEnabled())
fill_window(window, home)
table = window.dashboard.table
print("PROJECTS:", ",".join(sorted(table.item(row, 0).text() for row in range(table.rowCount()))))
print("AFTER:", ",".join(m for m in ("sqlalchemy", "torch") if m in sys.modules))
"""


def test_the_frame_shows_before_the_database_then_lists_the_projects(home: Path) -> None:
    for name in ("Garden", "Manuals"):
        assert run_cli(home, "project", "create", name).returncode == 0
    result = subprocess.run([sys.executable, "-c", START_AND_REPORT], capture_output=True,
                            text=True, env=cli_env(home, QT_QPA_PLATFORM="offscreen"),
                            timeout=120)
    assert result.returncode == 0, result.stderr
    report = dict(line.partition(": ")[::2] for line in result.stdout.splitlines())
    assert report["SHOWN"] == "True True"
    assert report["LOADED"] == ""  # neither SQLAlchemy nor torch before the window shows
    assert report["EARLY"] == "Garden,Manuals"  # the first frame lists the projects already
    assert report["EARLY_OPEN"] == "False"  # its actions wait for the database layer
    assert report["PROJECTS"] == "Garden,Manuals"
    assert report["AFTER"] == "sqlalchemy"


def test_the_early_list_equals_the_database_and_becomes_the_dashboard(
        qtbot: QtBot, context: AppContext) -> None:
    projects = ProjectService(context)
    for name in ("Garden", "Manuals", "Recipes"):
        projects.create(name)
    projects.rename("Manuals", "Manuals 2")  # the most recently active comes first
    window = MainWindow(home=context.home)
    qtbot.addWidget(window)
    window.show()
    early = window.placeholder
    assert isinstance(early, Dashboard) and not early.attached
    assert not any(button.isEnabled() for button in (early.new_button, early.open_button,
                                                     early.settings_button))
    shown = [[early.table.item(row, column).text() for column in range(len(COLUMNS))]
             for row in range(early.table.rowCount())]
    early.table.selectRow(1)
    qtbot.keyClick(early.table, Qt.Key.Key_F2)  # no rename dialog before the database is there
    assert not any(isinstance(widget, QInputDialog) for widget in QApplication.topLevelWidgets())

    window.attach(context)
    assert window.dashboard is early and early.attached
    assert [[early.table.item(row, column).text() for column in range(len(COLUMNS))]
            for row in range(early.table.rowCount())] == shown
    assert [summary.to_json() for summary in projects.list()] == [
        summary.to_json() for summary in early._summaries]
    assert shown[0][0] == "Manuals 2" and early.open_button.isEnabled()


def test_the_frame_holds_a_placeholder_when_the_quick_read_cannot_tell(
        qtbot: QtBot, home: Path) -> None:
    window = MainWindow(home=Home(home).ensure())  # no database file yet
    qtbot.addWidget(window)
    window.show()
    assert isinstance(window.stack.currentWidget(), DashboardPlaceholder)
    context = AppContext.open(Home(home))
    ProjectService(context).create("Garden")
    assert window.windowTitle() == "FineTuneFlow"
    assert not hasattr(window, "dashboard")

    window.attach(context)
    assert window.stack.count() == 1 and window.stack.currentWidget() is window.dashboard
    assert window.dashboard.table.item(0, 0).text() == "Garden"
    assert str(context.home.root) in window.statusBar().currentMessage()
    assert window.resume_banner.isHidden()  # nothing was interrupted


def test_a_database_that_cannot_be_opened_is_shown_in_a_dialog(
        qtbot: QtBot, home: Path, answer_yes: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    broken = Home(home).ensure()
    broken.db_path.write_text("not a database", encoding="utf-8")
    window = MainWindow(home=broken)
    qtbot.addWidget(window)
    # On a desktop, where a person sees the dialog (offscreen, the error is raised instead).
    monkeypatch.setattr(QGuiApplication, "platformName", lambda: "xcb")
    assert fill_window(window, broken) is None
    assert len(answer_yes) == 1
    assert f"The database {broken.db_path} is damaged (file is not a database)" in answer_yes[0]
    assert "move the damaged file aside" in answer_yes[0]
    assert window.stack.currentWidget() is window.placeholder  # no half-filled window
    assert isinstance(window.stack.currentWidget(), DashboardPlaceholder)


def test_offscreen_a_start_failure_is_one_line_for_the_command_line(home: Path,
                                                                   tmp_path: Path) -> None:
    Home(home).ensure().db_path.write_text("not a database", encoding="utf-8")
    result = run_cli(home, "gui", "--screenshot", str(tmp_path / "shot.png"))
    assert result.returncode != 0
    # Qt's offscreen plugin may add its own notes about the window that showed.
    ours = [line for line in result.stderr.splitlines() if line.startswith("finetuneflow")]
    assert len(ours) == 1 and "is damaged (file is not a database)" in ours[0], result.stderr
    assert "Traceback" not in result.stderr


# `finetuneflow gui --project Garden`, as run_gui does it, in a fresh interpreter.
START_AT_PROJECT = """
import sys
from finetuneflow.gui.app import fill_window, make_application, show_window
from finetuneflow.gui.wizard_frame import DONE_MARK
from finetuneflow.storage.home import Home

def marked(steps):
    return ",".join(str(row) for row in range(steps.count())
                    if steps.item(row).text().startswith(DONE_MARK))

app = make_application()
home = Home.default()
window = show_window(home, "Garden")
frame = window.project_frame
print("SHOWN:", window.isVisible(), window.stack.currentWidget() is frame)
print("LOADED:", ",".join(m for m in ("sqlalchemy", "torch") if m in sys.modules))
print("TITLE:", window.windowTitle())
print("FRAME:", frame.title.text(), frame.steps.currentRow(), marked(frame.steps))
fill_window(window, home)
print("WAITING:", window.stack.currentWidget() is frame)
wizard = window.open_project("Garden")
print("WIZARD:", window.stack.currentWidget() is wizard, window.project_frame is None,
      wizard.currentPage().title(), wizard.currentId(), marked(wizard.steps))
"""


def test_a_project_opens_at_its_saved_step_before_the_database_layer_loads(
        context: AppContext, tmp_path: Path) -> None:
    """The frame shows the step and the marks the wizard then shows, from the quick read."""
    project = ProjectService(context).create("Garden")
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"prompt": "What grows here?", "completion": "Beans."}\n', encoding="utf-8")
    DatasetService(context).import_file(project.id, data)
    ProjectService(context).set_step(project.id, "hardware")
    done = completed_steps(ProgressService(context).of(project.id))  # the full data layer's
    result = subprocess.run([sys.executable, "-c", START_AT_PROJECT], capture_output=True,
                            text=True, env=cli_env(context.home.root,
                                                   QT_QPA_PLATFORM="offscreen"), timeout=120)
    assert result.returncode == 0, result.stderr
    report = dict(line.partition(": ")[::2] for line in result.stdout.splitlines())
    assert report["SHOWN"] == "True True"
    assert report["LOADED"] == ""  # neither SQLAlchemy nor torch before the frame shows
    assert report["TITLE"] == "Garden — FineTuneFlow"
    assert done and report["FRAME"] == "Hardware 5 " + ",".join(
        str(row) for row, step in enumerate(STEPS) if step.key in done)
    assert report["WAITING"] == "True"  # the dashboard fills in behind it
    assert report["WIZARD"].startswith("True True Hardware 5 ")


def test_a_project_the_quick_read_cannot_name_opens_on_the_projects_list(
        qtbot: QtBot, context: AppContext) -> None:
    projects = ProjectService(context)
    for name in ("Garden", "Twin", "Twin"):
        projects.create(name)
    for ref in ("Nothing", "Twin", "ab"):  # unknown, two of that name, too short an id prefix
        window = MainWindow(home=context.home, project=ref)
        qtbot.addWidget(window)
        assert window.project_frame is None and window.windowTitle() == "FineTuneFlow"
        assert isinstance(window.stack.currentWidget(), Dashboard)
    window = MainWindow(home=context.home, project=projects.get("Garden").id[:6], page="export")
    qtbot.addWidget(window)
    assert window.project_frame is not None and window.project_frame.title.text() == "Export"
    window.attach(context)
    window.show_dashboard()  # "← Projects" before the wizard was built
    assert window.project_frame is None and window.stack.currentWidget() is window.dashboard
