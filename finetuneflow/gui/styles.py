"""The few widgets drawn apart from the Fusion style, each with a style sheet of its own.

Not one sheet for the whole application: with one, Qt draws every widget through its
style-sheet style, which made the first frame 15–20 ms slower, and every page slower to show.
A sheet resolves palette(...) when it is set, so `restyle` sets them again after a switch
between light and dark.
"""

from __future__ import annotations

from typing import TypeVar

from PySide6.QtWidgets import QApplication, QWidget

_BANNER = ("{ background: rgba(243, 156, 18, 0.16); "
           "border-bottom: 1px solid rgba(243, 156, 18, 0.6); }")
# By object name: the widget's sheet.
SHEETS = {
    "heading": "QLabel#heading { font-size: 20px; font-weight: 600; }",
    "emptyState": "QLabel#emptyState { font-size: 14px; padding: 40px; }",
    "projectNote": "QLabel#projectNote { background: palette(alternate-base); "
                   "border: 1px solid palette(mid); border-radius: 4px; padding: 8px; }",
    "stepList": "QListWidget#stepList { border: none; font-size: 13px; } "
                "QListWidget#stepList::item { padding: 6px 4px; }",
    "resumeBanner": f"QFrame#resumeBanner {_BANNER}",
    "staleBanner": f"QFrame#staleBanner {_BANNER}",
    "orphanBanner": f"QFrame#orphanBanner {_BANNER}",
}

W = TypeVar("W", bound=QWidget)


def styled(widget: W) -> W:
    """The widget with the sheet of its object name."""
    widget.setStyleSheet(SHEETS[widget.objectName()])
    return widget


def restyle() -> None:
    """Set every styled widget's sheet again (its palette colours are read then)."""
    for widget in QApplication.allWidgets():
        if sheet := SHEETS.get(widget.objectName()):
            widget.setStyleSheet(sheet)
