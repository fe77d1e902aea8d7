"""The review table's model: rows come from the database a page at a time, as the view scrolls.

Qt's canFetchMore/fetchMore pair asks for the next page only when the view reaches the end
of what is loaded, so 100,000 examples cost what the visible ones cost.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor

from finetuneflow.gui.colours import tone_colour
from finetuneflow.services.errors import NotFoundError
from finetuneflow.services.review import ExampleFilter, ExampleRow, ReviewService

PAGE_SIZE = 500
COLUMNS = ("Question / prompt", "Answer", "Status", "Split", "Tokens", "Source")
STATUS_TONES = {"rejected": "error", "edited": "info"}
Index = QModelIndex | QPersistentModelIndex


class ExampleTableModel(QAbstractTableModel):
    def __init__(self, review: ReviewService, project_id: str) -> None:
        super().__init__()
        self._review = review
        self._project_id = project_id
        self._filters = ExampleFilter()
        self._rows: list[ExampleRow] = []
        self._exhausted = False
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

    def fetchMore(self, parent: Index) -> None:
        if parent.isValid() or self._exhausted:
            return
        after = self._rows[-1].id if self._rows else 0
        try:
            page = self._review.page(self._project_id, self._filters, after, PAGE_SIZE)
        except NotFoundError:  # the project was deleted (here or from the command line)
            page = []
        self._exhausted = len(page) < PAGE_SIZE
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
        if role == Qt.ItemDataRole.DisplayRole:
            return (row.prompt, row.reply, row.status, row.split,
                    "" if row.tokens is None else row.tokens, row.source)[column]
        if role == Qt.ItemDataRole.ToolTipRole and row.reject_reason:
            return row.reject_reason
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
