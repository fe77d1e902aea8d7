"""The review table's model: rows come from the database a page at a time, as the view scrolls.

Qt's canFetchMore/fetchMore pair asks for the next page only when the view reaches the end
of what is loaded, so 100,000 examples cost what the visible ones cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor

from finetuneflow.core.terminal import printable
from finetuneflow.gui.colours import tone_colour
from finetuneflow.services.errors import NotFoundError
from finetuneflow.services.review import ExampleFilter, ExampleRow, ReviewService

PAGE_SIZE = 500
COLUMNS = ("Question / prompt", "Answer", "Status", "Split", "Tokens", "Source")
REJECTED = "rejected"
STATUS_TONES = {REJECTED: "error", "edited": "info"}
Index = QModelIndex | QPersistentModelIndex


class ExampleTableModel(QAbstractTableModel):
    def __init__(self, review: ReviewService, project_id: str) -> None:
        super().__init__()
        self._review = review
        self._project_id = project_id
        self._filters = ExampleFilter()
        self._rows: list[ExampleRow] = []
        self._exhausted = False
        self._phase = 0  # which of _phases() is being read
        self._after = 0  # the last id read in this phase
        self.max_tokens: int | None = None  # rows above it show their length in red

    @property
    def filters(self) -> ExampleFilter:
        return self._filters

    def set_filters(self, filters: ExampleFilter) -> None:
        self._filters = filters
        self.reload()

    def reload(self) -> None:
        self.beginResetModel()
        self._rows = []
        self._exhausted = False
        self._phase, self._after = 0, 0
        self.endResetModel()
        self.fetchMore(QModelIndex())

    def total(self) -> int:
        """Matching rows in the database (not just the loaded ones)."""
        return self._review.count(self._project_id, self._filters)

    def row_at(self, row: int) -> ExampleRow:
        return self._rows[row]

    def refresh_rows(self, ids: set[int]) -> None:
        """Re-read changed rows in place (an edit, a reject), keeping the scroll position."""
        fresh = self._review.rows(ids)
        for row, example in enumerate(self._rows):
            if example.id in fresh:
                self._rows[row] = fresh[example.id]
                self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))

    def remove_ids(self, ids: set[int]) -> None:
        for row in reversed(range(len(self._rows))):
            if self._rows[row].id in ids:
                self.beginRemoveRows(QModelIndex(), row, row)
                del self._rows[row]
                self.endRemoveRows()

    # --- QAbstractTableModel --------------------------------------------------------------------

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def canFetchMore(self, parent: Index) -> bool:
        return not parent.isValid() and not self._exhausted

    def _phases(self) -> list[tuple[ExampleFilter, Callable[[ExampleRow], bool]]]:
        """The reads that make up the list. Without a status filter, the kept examples come
        first and the rejected ones after them: a run's rejects would otherwise fill the top."""
        if self._filters.status:
            return [(self._filters, lambda _row: True)]
        return [(self._filters, lambda row: row.status != REJECTED),
                (replace(self._filters, status=REJECTED), lambda _row: True)]

    def fetchMore(self, parent: Index) -> None:
        if parent.isValid() or self._exhausted:
            return
        page: list[ExampleRow] = []
        phases = self._phases()
        # Up to a page of rows: a page of rejects gives no kept row, and the end of one phase
        # goes on into the next.
        while len(page) < PAGE_SIZE and not self._exhausted:
            filters, wanted = phases[self._phase]
            asked = PAGE_SIZE - len(page)
            try:
                found = self._review.page(self._project_id, filters, self._after, asked)
            except NotFoundError:  # the project was deleted (here or from the command line)
                found = []
            page += [row for row in found if wanted(row)]
            if found:
                self._after = found[-1].id
            if len(found) < asked:  # this phase is read: on to the next, if any
                self._phase, self._after = self._phase + 1, 0
                self._exhausted = self._phase >= len(phases)
        if page:
            start = len(self._rows)
            self.beginInsertRows(QModelIndex(), start, start + len(page) - 1)
            self._rows.extend(page)
            self.endInsertRows()

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self._rows[index.row()]
        column = index.column()
        # Text from a model: control characters and bidi overrides are shown as escapes.
        if role == Qt.ItemDataRole.DisplayRole:
            value = (row.prompt, row.reply, row.status, row.split,
                     "" if row.tokens is None else row.tokens, row.source)[column]
            return printable(value) if isinstance(value, str) else value
        if role == Qt.ItemDataRole.ToolTipRole:
            # The cells elide long text: the tooltip has it whole (up to the preview length).
            tip = {0: row.prompt, 1: row.reply}.get(column, row.reject_reason)
            return printable(tip) if tip else tip
        if role == Qt.ItemDataRole.ForegroundRole:
            return self._colour(row, column)
        if role == Qt.ItemDataRole.TextAlignmentRole and column == 4:
            return Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        return None

    def _colour(self, row: ExampleRow, column: int) -> QColor | None:
        if column == 4 and self.max_tokens and (row.tokens or 0) > self.max_tokens:
            return tone_colour("error")
        if column == 2:
            return tone_colour(STATUS_TONES[row.status]) if row.status in STATUS_TONES else None
        return None
