"""Status colours that read on the light and the dark system theme alike.

The app follows the system's colour scheme, so a colour is picked for the palette in use when
it is applied: the darker tone on light backgrounds, the lighter one on dark.
"""

from __future__ import annotations

from PySide6.QtGui import QColor, QGuiApplication

TONES = {  # tone: (on a light background, on a dark one)
    "error": ("#c0392b", "#ff7b6b"),
    "ok": ("#1e8449", "#58d68d"),
    "warning": ("#b9770e", "#f5b041"),
    "info": ("#2471a3", "#7fb3d5"),
}


def dark_theme() -> bool:
    return QGuiApplication.palette().window().color().lightness() < 128


def tone(name: str) -> str:
    light, dark = TONES[name]
    return dark if dark_theme() else light


def tone_style(name: str) -> str:
    """A style sheet that colours a label's text."""
    return f"color: {tone(name)};"


def tone_colour(name: str) -> QColor:
    return QColor(tone(name))
