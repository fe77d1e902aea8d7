"""Draw the app icon and write resources/icons/: PNGs, a Windows .ico and a macOS .icns.

Run once after changing the drawing (`python packaging/make_icons.py`); the files are committed,
so builds need neither this script nor an image library. Qt draws; the .ico and .icns
containers are written here (both hold PNG images), so every size is drawn sharp, not scaled.
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QPointF, QRectF, Qt
from PySide6.QtGui import (
    QBrush,
    QColor,
    QGuiApplication,
    QImage,
    QLinearGradient,
    QPainter,
    QPainterPath,
    QPen,
)

ICON_DIR = Path(__file__).resolve().parents[1] / "resources" / "icons"
NAME = "finetuneflow"
PNG_SIZES = (256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
# Apple's PNG-based icon types: https://en.wikipedia.org/wiki/Apple_Icon_Image_format
ICNS_TYPES = {16: b"icp4", 32: b"icp5", 64: b"icp6", 128: b"ic07", 256: b"ic08", 512: b"ic09"}

CANVAS = 512.0  # the drawing's own units; every size scales from them


def draw_icon(size: int) -> QImage:
    """A page of text flowing into a bright node: documents becoming a model."""
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.scale(size / CANVAS, size / CANVAS)
    _background(painter)
    _page(painter)
    _flow(painter)
    painter.end()
    return image


def _background(painter: QPainter) -> None:
    gradient = QLinearGradient(QPointF(0, 0), QPointF(CANVAS, CANVAS))
    gradient.setColorAt(0.0, QColor("#4f46e5"))
    gradient.setColorAt(1.0, QColor("#0d9488"))
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QBrush(gradient))
    painter.drawRoundedRect(QRectF(16, 16, 480, 480), 104, 104)


def _page(painter: QPainter) -> None:
    painter.setBrush(QColor("#ffffff"))
    painter.drawRoundedRect(QRectF(84, 104, 184, 240), 22, 22)
    painter.setBrush(QColor("#c7d2fe"))
    for row, width in enumerate((128, 104, 128, 80)):
        painter.drawRoundedRect(QRectF(112, 148 + row * 44, width, 18), 9, 9)


def _flow(painter: QPainter) -> None:
    curve = QPainterPath(QPointF(268, 224))
    curve.cubicTo(QPointF(360, 224), QPointF(384, 280), QPointF(384, 360))
    pen = QPen(QColor("#ffffff"), 26, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap)
    painter.setPen(pen)
    painter.setBrush(Qt.BrushStyle.NoBrush)
    painter.drawPath(curve)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor("#fde047"))
    painter.drawEllipse(QPointF(384, 384), 60, 60)
    painter.setBrush(QColor("#ffffff"))
    painter.drawEllipse(QPointF(384, 384), 24, 24)


def png_bytes(image: QImage) -> bytes:
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG"):  # type: ignore[call-overload]  # stub: bytes; runs: str
        raise RuntimeError("Qt could not encode a PNG")
    buffer.close()
    return bytes(data.data())


def ico_bytes(pngs: dict[int, bytes]) -> bytes:
    """ICONDIR, one 16-byte entry per image, then the PNGs (Windows Vista and later read them)."""
    header = struct.pack("<HHH", 0, 1, len(pngs))
    offset = len(header) + 16 * len(pngs)
    entries, payload = b"", b""
    for size, data in sorted(pngs.items()):
        side = 0 if size >= 256 else size  # 0 means 256 in the one-byte size fields
        entries += struct.pack("<BBBBHHII", side, side, 0, 0, 1, 32, len(data), offset)
        payload += data
        offset += len(data)
    return header + entries + payload


def icns_bytes(pngs: dict[int, bytes]) -> bytes:
    """The 'icns' header, then one (type, length, PNG) block per size; lengths are big-endian."""
    blocks = b"".join(ICNS_TYPES[size] + struct.pack(">I", len(data) + 8) + data
                      for size, data in sorted(pngs.items()))
    return b"icns" + struct.pack(">I", len(blocks) + 8) + blocks


def write_icons(folder: Path) -> list[Path]:
    sizes = sorted(set(PNG_SIZES) | set(ICO_SIZES) | set(ICNS_TYPES))
    pngs = {size: png_bytes(draw_icon(size)) for size in sizes}
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for size in PNG_SIZES:
        written.append(folder / f"{NAME}-{size}.png")
        written[-1].write_bytes(pngs[size])
    written.append(folder / f"{NAME}.ico")
    written[-1].write_bytes(ico_bytes({size: pngs[size] for size in ICO_SIZES}))
    written.append(folder / f"{NAME}.icns")
    written[-1].write_bytes(icns_bytes({size: pngs[size] for size in ICNS_TYPES}))
    return written


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = QGuiApplication(sys.argv[:1])  # noqa: F841 - Qt needs an application to paint
    for path in write_icons(ICON_DIR):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
