"""The wizard works from the keyboard in reading order, and renders sharp at 200 % scaling."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication, QInputDialog, QWidget
from pytestqt.qtbot import QtBot

from finetuneflow.gui.main_window import MainWindow
from finetuneflow.services.base_model import ModelService
from finetuneflow.services.context import AppContext
from tests.helpers.cli import run_cli


def label(widget: QWidget | None) -> str:
    assert widget is not None, "nothing has the focus"
    if widget.objectName() == "stepList":
        return "steps"
    text = getattr(widget, "text", None)
    if callable(text) and text():
        return str(text()).replace("&", "")
    return type(widget).__name__


def tab_through(qtbot: QtBot, start: QWidget, presses: int) -> list[str]:
    start.setFocus(Qt.FocusReason.TabFocusReason)
    qtbot.waitUntil(lambda: QApplication.focusWidget() is start)
    seen = [label(start)]
    for _ in range(presses):
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Tab)
        seen.append(label(QApplication.focusWidget()))
    return seen


def test_tab_follows_the_page_then_the_wizard_buttons(window: MainWindow, qtbot: QtBot,
                                                       context: AppContext,
                                                       tiny_model_dir: Path) -> None:
    project = window.dashboard.create_project("Keyboard")
    ModelService(context).choose(project.id, str(tiny_model_dir))
    page = window.open_project(project.id, "data").currentPage()
    window.activateWindow()
    first = page.findChild(QWidget, "addFiles")
    # The Remove button (nothing selected) and Next (no documents yet) are disabled: skipped.
    assert tab_through(qtbot, first, 9) == [
        "Add files…", "Add folder…", "Import an existing dataset…", "512 tokens", "50 tokens",
        "Re-cut chunks", "< Back", "← Projects", "steps", "Add files…"]


def test_ctrl_and_a_number_jumps_to_that_step(window: MainWindow, qtbot: QtBot,
                                             context: AppContext, tiny_model_dir: Path) -> None:
    project = window.dashboard.create_project("Shortcuts")
    ModelService(context).choose(project.id, str(tiny_model_dir))
    wizard = window.open_project(project.id, "model")
    window.activateWindow()
    qtbot.keyClick(wizard.currentPage(), Qt.Key.Key_3, Qt.KeyboardModifier.ControlModifier)
    assert wizard.current_step_key() == "data"
    qtbot.keyClick(wizard.currentPage(), Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert wizard.current_step_key() == "model"


def test_the_window_renders_at_double_density_when_the_screen_is_scaled(
        tmp_path: Path, home: Path) -> None:
    sizes = {}
    for scale in ("1", "2"):
        shot = tmp_path / f"scale-{scale}.png"
        result = run_cli(home, "gui", "--screenshot", str(shot), QT_QPA_PLATFORM="offscreen",
                         QT_SCALE_FACTOR=scale)
        assert result.returncode == 0, result.stderr
        image = QImage(str(shot))
        sizes[scale] = (image.width(), image.height())
    assert sizes["2"] == (sizes["1"][0] * 2, sizes["1"][1] * 2)


def test_the_dashboard_works_from_the_keyboard(window: MainWindow, qtbot: QtBot,
                                              monkeypatch: pytest.MonkeyPatch,
                                              answer_yes: list[str]) -> None:
    monkeypatch.setattr(QInputDialog, "getText", lambda *_args, **_kw: ("Made by keys", True))
    dashboard = window.dashboard
    window.activateWindow()
    dashboard.table.setFocus()
    qtbot.keyClick(dashboard.table, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    assert window.wizard is not None and window.wizard.project.name == "Made by keys"

    window.show_dashboard()
    dashboard.table.setFocus()
    dashboard.table.selectRow(0)
    qtbot.keyClick(dashboard.table, Qt.Key.Key_F2)
    assert dashboard.selected_project().name == "Made by keys"  # the dialog's answer again
    qtbot.keyClick(dashboard.table, Qt.Key.Key_Return)
    assert window.stack.currentWidget() is window.wizard

    window.show_dashboard()
    dashboard.table.setFocus()
    dashboard.table.selectRow(0)
    qtbot.keyClick(dashboard.table, Qt.Key.Key_Delete)
    assert "Delete “Made by keys”" in answer_yes[-1]
    assert dashboard.table.rowCount() == 0
