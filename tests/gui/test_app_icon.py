"""The app icon: the window's, and the files the installers use (resources/icons/)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSize
from PySide6.QtGui import QIcon, QImageReader
from PySide6.QtWidgets import QApplication

from finetuneflow.core.resources import resource_path
from finetuneflow.gui.app import finish_application, make_application


def test_the_window_carries_the_app_icon(qapp: QApplication) -> None:
    style, sheet = qapp.style().name(), qapp.styleSheet()
    try:
        assert make_application() is qapp
        finish_application()  # once the first frame shows
        assert QSize(256, 256) in qapp.windowIcon().availableSizes()
    finally:  # the application is shared by the whole session
        qapp.setWindowIcon(QIcon())
        qapp.setStyleSheet(sheet)
        qapp.setStyle(style)


@pytest.mark.parametrize(("name", "sizes"), [
    ("finetuneflow-256.png", [256]),
    ("finetuneflow-512.png", [512]),
    ("finetuneflow.ico", [16, 24, 32, 48, 64, 128, 256]),  # Windows: the exe and the setup
    ("finetuneflow.icns", [16, 32, 64, 128, 256, 512]),  # macOS: the .app
])
def test_each_icon_file_holds_its_sizes(qapp: QApplication, name: str, sizes: list[int]) -> None:
    reader = QImageReader(str(resource_path("icons", name)))
    found = []
    for index in range(max(reader.imageCount(), 1)):
        reader.jumpToImage(index)
        image = reader.read()
        assert not image.isNull(), reader.errorString()
        assert image.width() == image.height()
        found.append(image.width())
    assert found == sizes
