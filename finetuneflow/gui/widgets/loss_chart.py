"""The live loss chart: train loss as a line, eval loss as points, smooth at 10,000 points."""

from __future__ import annotations

from types import ModuleType

from PySide6.QtCore import QTimer

from finetuneflow.gui.colours import tone
from finetuneflow.gui.widgets.plot_theme import LazyPlot

REDRAW_MS = 200


class LossChart(LazyPlot):
    def __init__(self) -> None:
        super().__init__()
        self.train: tuple[list[float], list[float]] = ([], [])
        self.eval: tuple[list[float], list[float]] = ([], [])
        self._redraw = QTimer(self, singleShot=True, interval=REDRAW_MS)
        self._redraw.timeout.connect(self._redraw_now)

    def _build(self, pg: ModuleType) -> None:
        self._pg = pg
        self.plot.setLabel("bottom", "step")
        self.plot.setLabel("left", "loss")
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        for side in ("left", "bottom"):  # major ticks only: the minor grid tripled each redraw
            self.plot.getAxis(side).setStyle(maxTickLevel=0)
        self.plot.addLegend(offset=(-10, 10))
        # Draw at most about one point per pixel however long the run gets.
        self.plot.setDownsampling(auto=True, mode="peak")
        self.plot.setClipToView(True)
        self.train_curve = self.plot.plot([], [], name="train loss")
        self.eval_curve = self.plot.plot([], [], symbol="o", symbolSize=6, name="eval loss")

    def _theme(self) -> None:
        pg = self._pg
        self.train_curve.setPen(pg.mkPen(tone("series"), width=2))
        self.train_curve.setSymbolBrush(tone("series"))
        self.train_curve.setSymbolPen(pg.mkPen(tone("series")))
        self.eval_curve.setPen(pg.mkPen(tone("accent"), width=1))
        self.eval_curve.setSymbolBrush(tone("accent"))

    def add_train(self, step: int, loss: float) -> None:
        self.train[0].append(step)
        self.train[1].append(loss)
        self._schedule_redraw()

    def add_eval(self, step: int, loss: float) -> None:
        self.eval[0].append(step)
        self.eval[1].append(loss)
        self._schedule_redraw()

    def clear(self) -> None:
        self.train = ([], [])
        self.eval = ([], [])
        self._redraw_now()

    def _schedule_redraw(self) -> None:
        # Points come as fast as the steps; a redraw (axes, ticks) takes ~25 ms. Drawing a
        # few times a second keeps the chart live without the window stuttering.
        if not self._redraw.isActive():
            self._redraw.start()

    def _draw(self) -> None:
        self._redraw_now()

    def _redraw_now(self) -> None:
        self._redraw.stop()
        if not self.built:
            return
        # A line needs two points: until the second step, the first shows as a dot.
        self.train_curve.setSymbol("o" if len(self.train[0]) == 1 else None)
        self.train_curve.setSymbolSize(6)
        self.train_curve.setData(*self.train)
        self.eval_curve.setData(*self.eval)
