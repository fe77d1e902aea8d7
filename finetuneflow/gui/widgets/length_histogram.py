"""Example lengths in tokens as a histogram, with the training's max_seq_length as a line."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from finetuneflow.gui.colours import tone
from finetuneflow.gui.widgets.plot_theme import LazyPlot

BINS = 30


class LengthHistogram(LazyPlot):
    def __init__(self) -> None:
        super().__init__(minimum_height=140)
        self.setObjectName("lengthHistogram")
        self.lengths: list[int] = []
        self.max_length: int | None = None
        self.bars: Any = None

    def _build(self, pg: ModuleType) -> None:
        self._pg = pg
        self.plot.setLabel("bottom", "tokens per example")
        self.plot.setLabel("left", "examples")
        self.plot.setMouseEnabled(x=False, y=False)
        # Labelled on the plot: a dashed line alone does not say what it marks.
        self.limit = pg.InfiniteLine(angle=90, label="max length {value:.0f}",
                                     labelOpts={"position": 0.9, "anchors": [(1, 0), (1, 0)]})
        self.limit.setVisible(False)
        self.plot.addItem(self.limit)

    def _theme(self) -> None:
        pg = self._pg
        self.limit.setPen(pg.mkPen(tone("accent"), width=2, style=pg.QtCore.Qt.PenStyle.DashLine))
        self.limit.label.setColor(tone("accent"))
        if self.bars is not None:
            self.bars.setOpts(brush=tone("series"))

    def show_lengths(self, lengths: list[int], limit: int | None) -> None:
        self.lengths, self.max_length = lengths, limit
        if self.built:
            self._draw()

    def _draw(self) -> None:
        import numpy as np

        lengths, limit = self.lengths, self.max_length
        if self.bars is not None:
            self.plot.removeItem(self.bars)
            self.bars = None
        if lengths:
            top = max(max(lengths), limit or 0)
            counts, edges = np.histogram(lengths, bins=BINS, range=(0, top * 1.05))
            self.bars = self._pg.BarGraphItem(x0=edges[:-1], x1=edges[1:], height=counts,
                                              brush=tone("series"), pen=None)
            self.plot.addItem(self.bars)
        self.limit.setVisible(limit is not None)
        if limit is not None:
            self.limit.setValue(limit)
            self.limit.setToolTip(f"max_seq_length: {limit} tokens; longer examples are cut")
