"""The main window on a fresh home, shown offscreen."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from finetuneflow.gui.main_window import MainWindow
from finetuneflow.services.context import AppContext


@pytest.fixture
def window(qtbot: QtBot, context: AppContext) -> MainWindow:
    main = MainWindow(context)
    qtbot.addWidget(main)
    main.show()
    return main


@pytest.fixture(autouse=True)
def answer_yes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Closing with work running asks first; a modal box would wait forever offscreen."""
    asked: list[str] = []
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **_kw: (
        asked.append(args[2]), QMessageBox.StandardButton.Yes)[1])
    return asked
