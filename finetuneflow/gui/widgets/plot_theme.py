"""pyqtgraph plots in the palette's colours: pyqtgraph's default grey axes fade on light windows."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QGuiApplication


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
