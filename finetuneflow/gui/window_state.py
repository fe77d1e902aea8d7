"""The main window's size and position, kept in the home folder between runs."""

from __future__ import annotations

from PySide6.QtCore import QByteArray, QSettings
from PySide6.QtWidgets import QWidget

from finetuneflow.services.data_folder import Home

WINDOW_FILE = "window.ini"
GEOMETRY_KEY = "main/geometry"


def _store(home: Home) -> QSettings:
    # A file in the home folder, not the OS registry: it moves with the data, and tests
    # (which each have their own home) never touch the person's real window state.
    return QSettings(str(home.root / WINDOW_FILE), QSettings.Format.IniFormat)


def restore_geometry(window: QWidget, home: Home) -> bool:
    """Put the window where it was; Qt moves it onto a screen that still exists."""
    saved = _store(home).value(GEOMETRY_KEY)
    return isinstance(saved, QByteArray) and window.restoreGeometry(saved)


def save_geometry(window: QWidget, home: Home) -> None:
    store = _store(home)
    store.setValue(GEOMETRY_KEY, window.saveGeometry())
    store.sync()
