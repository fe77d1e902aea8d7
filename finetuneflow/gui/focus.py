"""Tab order that follows the layout, as a person reads the page.

Qt chains focus in the order widgets were created, and pages create some widgets before the
rows they end up in; so Tab would jump around. Walking the layouts instead gives top to
bottom, left to right, each group finished before the next.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import pairwise

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLayout, QScrollArea, QSplitter, QTabWidget, QWidget


def layout_order(widget: QWidget) -> list[QWidget]:
    """The widgets under `widget` that Tab can reach, in the order its layouts place them."""
    return list(_walk_widget(widget, include_self=False))


def chain_tab_order(widgets: Iterable[QWidget]) -> None:
    for first, second in pairwise(widgets):
        QWidget.setTabOrder(first, second)


def _walk_widget(widget: QWidget, include_self: bool = True) -> Iterator[QWidget]:
    if isinstance(widget, QScrollArea):  # its contents take focus, not the frame around them
        inner = widget.widget()
        if inner is not None:
            yield from _walk_widget(inner)
        return
    if include_self and widget.focusPolicy() & Qt.FocusPolicy.TabFocus:
        yield widget
    if isinstance(widget, QSplitter | QTabWidget):  # they place their panes without a layout
        if isinstance(widget, QTabWidget):
            yield widget.tabBar()
        for index in range(widget.count()):
            yield from _walk_widget(widget.widget(index))
        return
    layout = widget.layout()
    if layout is not None and widget.focusProxy() is None:
        yield from _walk_layout(layout)


def _walk_layout(layout: QLayout) -> Iterator[QWidget]:
    for index in range(layout.count()):
        item = layout.itemAt(index)
        if item.widget() is not None:
            yield from _walk_widget(item.widget())
        elif item.layout() is not None:
            yield from _walk_layout(item.layout())
