"""Status colours follow the theme: the darker tone on light windows, the lighter on dark."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from finetuneflow.gui.colours import TONES, tone


def test_tones_follow_the_palette(qtbot: QtBot) -> None:
    app = QApplication.instance()
    original = app.palette()
    try:
        for window, side in (("#f0f0f0", 0), ("#202124", 1)):
            palette = QPalette(original)
            palette.setColor(QPalette.ColorRole.Window, QColor(window))
            app.setPalette(palette)
            assert [tone(name) for name in TONES] == [pair[side] for pair in TONES.values()]
    finally:
        app.setPalette(original)
