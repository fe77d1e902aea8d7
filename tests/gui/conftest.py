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
    """Message boxes are answered: a modal box would wait forever offscreen. `asked` keeps their
    texts."""
    asked: list[str] = []
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **_kw: (
        asked.append(args[2]), QMessageBox.StandardButton.Yes)[1])
    for name in ("information", "warning", "critical"):  # shown, never waited on
        monkeypatch.setattr(QMessageBox, name, lambda *args, **_kw: (
            asked.append(args[2]), QMessageBox.StandardButton.Ok)[1])
    return asked

