"""report.md rendered, with its loss curve drawn where the Markdown puts it."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QBuffer, QByteArray, QSize, QUrl
from PySide6.QtGui import QImage, QImageReader, QTextDocument
from PySide6.QtWidgets import QTextBrowser

from finetuneflow.core.export.report import LOSS_CURVE

MARGIN = 24  # keep the picture clear of the vertical scroll bar


class ReportView(QTextBrowser):
    """The report as Markdown. The loss curve comes as SVG text rather than a file, because
    before an export there is no file yet; it is scaled to the width of the view."""

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("reportPreview")
        self.setOpenLinks(False)  # the report has no links to follow; never navigate away
        self._curve = QByteArray()

    def show_report(self, markdown: str, curve_svg: str) -> None:
        self._curve = QByteArray(curve_svg.encode("utf-8"))
        self.document().clear()  # drops the cached picture of an earlier report
        self.setMarkdown(markdown)

    def loadResource(self, kind: int, name: QUrl) -> Any:
        if kind == QTextDocument.ResourceType.ImageResource and name.path() == LOSS_CURVE:
            return self._curve_image()
        return super().loadResource(kind, name)

    def _curve_image(self) -> QImage:
        """A null image (drawn as a missing picture) when Qt has no SVG image plugin."""
        buffer = QBuffer(self._curve)
        reader = QImageReader(buffer, QByteArray(b"svg"))
        size = reader.size()
        width = self.viewport().width() - MARGIN
        if size.isValid() and 0 < width < size.width():
            reader.setScaledSize(QSize(width, size.height() * width // size.width()))
        return reader.read()
