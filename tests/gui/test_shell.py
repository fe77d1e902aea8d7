from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from finetuneflow.core.steps import STEP_KEYS, STEPS
from finetuneflow.gui.main_window import MainWindow
from finetuneflow.gui.wizard import PendingPage, ProjectWizard
from finetuneflow.services.context import AppContext
from finetuneflow.services.projects import ProjectService
from tests.helpers.cli import cli_env


def test_dashboard_empty_state_then_lists_projects(window: MainWindow) -> None:
    dashboard = window.dashboard
    assert dashboard.list_or_empty.currentWidget() is dashboard.empty
    assert not dashboard.open_button.isEnabled()
    dashboard.create_project("Tax forms")
    dashboard.create_project("Manuals")
    assert dashboard.list_or_empty.currentWidget() is dashboard.table
    names = {dashboard.table.item(row, 0).text() for row in range(dashboard.table.rowCount())}
    assert names == {"Tax forms", "Manuals"}
    assert dashboard.open_button.isEnabled()


def test_wizard_has_the_eight_pages_in_order(window: MainWindow) -> None:
    project = window.dashboard.create_project("Pages")
    wizard = window.open_project(project.id)
    titles = [wizard.page(page_id).title() for page_id in wizard.pageIds()]
    assert titles == [step.title for step in STEPS]
    assert all(wizard.page(i).subTitle() for i in wizard.pageIds())
    assert wizard.steps.count() == 8


def test_current_step_is_saved_and_restored(window: MainWindow, context: AppContext) -> None:
    project = window.dashboard.create_project("Resume me")
    wizard = window.open_project(project.id)
    assert wizard.current_step_key() == "model"
    wizard.next()
    wizard.next()
    assert wizard.current_step_key() == "data"
    assert ProjectService(context).get(project.id).current_step == "data"

    window.show_dashboard()
    assert window.stack.currentWidget() is window.dashboard
    reopened = window.open_project(project.id)
    assert reopened.current_step_key() == "data"
    reopened.steps.setCurrentRow(STEP_KEYS.index("train"))  # a click in the side list
    assert reopened.current_step_key() == "train"
    reopened.back()
    assert ProjectService(context).get(project.id).current_step == "hardware"


def test_open_at_a_page(window: MainWindow) -> None:
    project = window.dashboard.create_project("Jump")
    assert window.open_project(project.id, "export").current_step_key() == "export"


def test_delete_asks_first(window: MainWindow, monkeypatch: pytest.MonkeyPatch) -> None:
    dashboard = window.dashboard
    dashboard.create_project("Keep me")
    answers = iter([QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Yes])
    asked: list[str] = []

    def fake_question(_parent, _title, text, *_args):
        asked.append(text)
        return next(answers)

    monkeypatch.setattr(QMessageBox, "question", fake_question)
    dashboard.delete_button.click()
    assert dashboard.table.rowCount() == 1  # cancelled
    dashboard.delete_button.click()
    assert dashboard.list_or_empty.currentWidget() is dashboard.empty
    assert "Keep me" in asked[0] and "cannot be undone" in asked[0]


SHOW_AND_REPORT = """
import sys
from finetuneflow.gui.app import make_application
from finetuneflow.gui.main_window import MainWindow
from finetuneflow.services.context import AppContext

app = make_application()
window = MainWindow(AppContext.open())
window.show()
app.processEvents()
project = window.dashboard.create_project("Heavy?")
window.open_project(project.id, "train")
app.processEvents()
heavy = sorted(m for m in ("torch", "transformers", "trl", "peft", "datasets", "accelerate",
                           "bitsandbytes") if m in sys.modules)
print("HEAVY:" + ",".join(heavy))
"""


def test_gui_does_not_import_the_ml_stack(home: Path) -> None:
    result = subprocess.run([sys.executable, "-c", SHOW_AND_REPORT], capture_output=True,
                            text=True, env=cli_env(home, QT_QPA_PLATFORM="offscreen"),
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY:\n" in result.stdout, result.stdout


def test_a_project_opens_with_its_step_built_and_builds_the_others_on_a_visit(
        window: MainWindow, context: AppContext) -> None:
    project = window.dashboard.create_project("Lazy")
    wizard = window.open_project(project.id, "hardware")
    pending = [page_id for page_id in wizard.pageIds()
               if isinstance(wizard.page(page_id), PendingPage)]
    assert pending == [1, 2, 3, 4, 6, 7]  # only the first step and the saved one are built
    wizard.back()  # the Back button's way: onto a pending step
    assert wizard.current_step_key() == "review"
    assert not isinstance(wizard.currentPage(), PendingPage)
    assert ProjectService(context).get(project.id).current_step == "review"
    wizard.back()
    assert wizard.current_step_key() == "preview"
    wizard.steps.setCurrentRow(STEP_KEYS.index("export"))  # a walk passing Hardware and Train
    assert wizard.current_step_key() == "export"
    assert isinstance(wizard.page(STEP_KEYS.index("train")), PendingPage)


def pending_pages(wizard: ProjectWizard) -> list[int]:
    return [page_id for page_id in wizard.pageIds()
            if isinstance(wizard.page(page_id), PendingPage)]


def test_pages_ahead_are_built_while_the_wizard_idles_and_those_behind_stay_pending(
        window: MainWindow, qtbot: QtBot) -> None:
    project = window.dashboard.create_project("Ahead")
    wizard = window.open_project(project.id, "preview")
    assert pending_pages(wizard) == [1, 2, 4, 5, 6, 7]  # nothing more before the loop turns
    qtbot.waitUntil(lambda: pending_pages(wizard) == [1, 2])
    qtbot.wait(50)
    assert pending_pages(wizard) == [1, 2]  # behind: in Qt's history, left as they are
    wizard.back()  # onto a pending step: built on the visit
    assert wizard.current_step_key() == "data"
    assert pending_pages(wizard) == [1]
    wizard.steps.setCurrentRow(STEP_KEYS.index("export"))  # a walk through the built pages
    assert wizard.current_step_key() == "export"


def test_a_hidden_wizard_builds_nothing_ahead_until_shown_again(
        window: MainWindow, qtbot: QtBot) -> None:
    project = window.dashboard.create_project("Away")
    wizard = window.open_project(project.id, "hardware")
    # Hidden before the event loop turns, kept alive as a wizard with work running is.
    window.stack.setCurrentWidget(window.dashboard)
    qtbot.wait(100)
    assert pending_pages(wizard) == [1, 2, 3, 4, 6, 7]
    assert window.open_project(project.id) is wizard
    qtbot.waitUntil(lambda: pending_pages(wizard) == [1, 2, 3, 4])


def test_leaving_for_the_projects_list_before_the_pages_ahead_are_built(
        window: MainWindow, qtbot: QtBot) -> None:
    project = window.dashboard.create_project("Gone")
    window.open_project(project.id, "task")
    window.show_dashboard()  # the wizard is released, its timers with it
    qtbot.wait(100)
    wizard = window.open_project(project.id)
    assert wizard.current_step_key() == "task"
    qtbot.waitUntil(lambda: pending_pages(wizard) == [])
