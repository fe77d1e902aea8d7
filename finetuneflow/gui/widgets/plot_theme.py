"""pyqtgraph plots made when first shown, in the palette's colours.

Importing pyqtgraph (and numpy under it) takes about 0.4 s: opening a project should not wait
for a chart on a page nobody has looked at yet. pyqtgraph's default grey axes fade on light
windows, so axes, ticks and legend take the palette's text colour, again on each switch.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

from PySide6.QtCore import QTimer
from PySide6.QtGui import QGuiApplication, QShowEvent
from PySide6.QtWidgets import QVBoxLayout, QWidget

from finetuneflow.gui.colours import on_theme_change

if TYPE_CHECKING:
    import pyqtgraph as pg


def theme_plot(plot: pg.PlotWidget) -> None:
    """Axes, tick labels, titles and legend in the palette's text colour. The application's
    palette, not the plot's own: on a switch the plot's copy is updated a moment later."""
    text = QGuiApplication.palette().windowText().color()
    for side in ("left", "bottom"):
        axis = plot.getAxis(side)
        axis.setPen(text)
        axis.setTextPen(text)
    legend = plot.getPlotItem().legend
    if legend is not None:
        legend.setLabelTextColor(text)
        for _sample, label in legend.items:
            label.setText(label.text)  # a label takes its new colour on its next setText


class LazyPlot(QWidget):
    """A widget whose pyqtgraph plot is built when it is first shown (or asked for). Until
    then subclasses keep their data; `_draw` shows it once the plot exists."""

    plot: pg.PlotWidget

    def __init__(self, minimum_height: int = 0) -> None:
        super().__init__()
        self.setMinimumHeight(minimum_height)  # the page's layout does not move when it builds
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self.built = False

    def showEvent(self, event: QShowEvent) -> None:
        # Built once control returns to the event loop, if still shown: a walk across the
        # wizard's steps shows each page it passes for a moment, and must not import pyqtgraph
        # for a chart nobody sees.
        QTimer.singleShot(0, self, self._build_if_shown)
        super().showEvent(event)

    def _build_if_shown(self) -> None:
        if self.isVisible():
            self.build()

    def build(self) -> None:
        if self.built:
            return
        import pyqtgraph

        self.plot = pyqtgraph.PlotWidget(background=None)
        self._layout.addWidget(self.plot)
        self._build(pyqtgraph)
        self.built = True
        self.apply_theme()
        on_theme_change(self.apply_theme)
        self._draw()

    def apply_theme(self) -> None:
        if self.built:
            theme_plot(self.plot)
            self._theme()

    def _build(self, pg: ModuleType) -> None:
        """Add the plot's items."""

    def _theme(self) -> None:
        """Colour the plot's own items."""

    def _draw(self) -> None:
        """Show the data kept so far."""
