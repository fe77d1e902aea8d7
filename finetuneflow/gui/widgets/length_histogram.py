"""Example lengths in tokens as a histogram, with the training's max_seq_length as a line."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QVBoxLayout, QWidget

from finetuneflow.gui.colours import on_theme_change, tone
from finetuneflow.gui.widgets.plot_theme import theme_plot

BINS = 30


class LengthHistogram(QWidget):
    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("lengthHistogram")
        self.plot = pg.PlotWidget(background=None)
        self.plot.setLabel("bottom", "tokens per example")
        self.plot.setLabel("left", "examples")
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.setMinimumHeight(140)
        self.bars: pg.BarGraphItem | None = None
        self.limit = pg.InfiniteLine(angle=90)
        self.limit.setVisible(False)
        self.plot.addItem(self.limit)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot)
        self.apply_theme()
        on_theme_change(self.apply_theme)

    def apply_theme(self) -> None:
        theme_plot(self.plot)
        self.limit.setPen(pg.mkPen(tone("accent"), width=2, style=pg.QtCore.Qt.PenStyle.DashLine))
        if self.bars is not None:
            self.bars.setOpts(brush=tone("series"))

    def show_lengths(self, lengths: list[int], limit: int | None) -> None:
        if self.bars is not None:
            self.plot.removeItem(self.bars)
            self.bars = None
        if lengths:
            top = max(max(lengths), limit or 0)
            counts, edges = np.histogram(lengths, bins=BINS, range=(0, top * 1.05))
            self.bars = pg.BarGraphItem(x0=edges[:-1], x1=edges[1:], height=counts,
                                        brush=tone("series"), pen=None)
            self.plot.addItem(self.bars)
        self.limit.setVisible(limit is not None)
        if limit is not None:
            self.limit.setValue(limit)
            self.limit.setToolTip(f"max_seq_length: {limit} tokens; longer examples are cut")
