"""Colours that read on the light and the dark system theme alike, also after a switch.

The app follows the system's colour scheme, so a colour is picked for the palette in use: the
darker tone on light backgrounds, the lighter one on dark. When the system switches between light
and dark while the app runs, Qt replaces the application palette; the ThemeWatcher then applies
every tone again (set_tone) and tells the widgets that draw their own colours (on_theme_change).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QWidget

from finetuneflow.gui.styles import restyle

TONES = {  # tone: (on a light background, on a dark one)
    "error": ("#c0392b", "#ff7b6b"),
    "ok": ("#1e8449", "#58d68d"),
    "warning": ("#b9770e", "#f5b041"),
    "info": ("#2471a3", "#7fb3d5"),
    "series": ("#4e79a7", "#7eaedd"),  # a chart's main data: lines, bars
    "accent": ("#e15759", "#ff8a8c"),  # a chart's second series and marker lines
}
TONE_PROPERTY = "tone"  # the tone a widget's text was given with set_tone


def dark_theme() -> bool:
    return QGuiApplication.palette().window().color().lightness() < 128


def tone(name: str) -> str:
    light, dark = TONES[name]
    return dark if dark_theme() else light


def tone_colour(name: str) -> QColor:
    return QColor(tone(name))


def set_tone(widget: QWidget, name: str | None) -> None:
    """Colour the widget's text in a tone (None: the palette's text colour), now and after each
    switch between light and dark."""
    theme_watcher()
    widget.setProperty(TONE_PROPERTY, name)
    widget.setStyleSheet(_text_sheet(name))


def _text_sheet(name: str | None) -> str:
    return f"color: {tone(name)};" if name else ""


def on_theme_change(slot: Callable[[], None]) -> None:
    """Call `slot`, a method of a widget that draws its own colours, after each palette change.
    Qt drops the connection when the widget is deleted."""
    theme_watcher().changed.connect(slot)


class ThemeWatcher(QObject):
    """One per application: sees the application palette change and colours the app again."""

    changed = Signal()

    def __init__(self, app: QApplication) -> None:
        super().__init__(app)
        # The signal, not an event filter on the application: that one would see every event
        # of every widget in Python (about 30 ms on the first frame alone). Qt 6 marks the
        # signal deprecated in favour of that event, but still emits it (PySide6 6.11).
        app.paletteChanged.connect(self.recolour)

    def recolour(self, _palette: QPalette | None = None) -> None:
        restyle()  # palette(...) in a sheet is read when the sheet is set
        for widget in QApplication.allWidgets():
            if name := widget.property(TONE_PROPERTY):
                widget.setStyleSheet(_text_sheet(name))
        self.changed.emit()


def theme_watcher() -> ThemeWatcher:
    app = QApplication.instance()
    return app.findChild(ThemeWatcher) or ThemeWatcher(app)
