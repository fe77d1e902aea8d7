"""Checks on rendered PNGs: a screenshot that is one flat colour is a failed render."""

from __future__ import annotations

from pathlib import Path


def distinct_colours(path: Path, samples: int = 4000) -> int:
    from PySide6.QtGui import QImage

    image = QImage(str(path))
    assert not image.isNull(), f"{path} is not a readable image"
    step = max(1, (image.width() * image.height()) // samples)
    colours = set()
    for index in range(0, image.width() * image.height(), step):
        colours.add(image.pixel(index % image.width(), index // image.width()))
    return len(colours)


def assert_not_blank(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert distinct_colours(path) > 10, f"{path} looks blank"
