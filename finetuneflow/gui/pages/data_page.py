"""Step 3 — Data: drop documents or folders, see each file's state, or import a dataset."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QStackedWidget,
    QStyle,
    QTableWidget,
    QTableWidgetItem,
)

from finetuneflow.core.chunking import ChunkSettings
from finetuneflow.core.dataset.formats import CsvColumns
from finetuneflow.core.progress import CancelToken, ProgressSink
from finetuneflow.core.statuses import JobKind
from finetuneflow.core.steps import Step
from finetuneflow.gui.colours import set_tone
from finetuneflow.gui.errors import show_error
from finetuneflow.gui.import_dialog import ImportDialog
from finetuneflow.gui.pages.step_page import StepPage
from finetuneflow.gui.workers import TaskRunner, Work
from finetuneflow.services.context import AppContext
from finetuneflow.services.datasets import STOPPED_IMPORT, DatasetService, ImportSummary
from finetuneflow.services.ingest import FileOutcome, FileRow, IngestService
from finetuneflow.services.jobs import JobService
from finetuneflow.services.projects import ProjectSummary

COLUMNS = ("", "File", "Pages", "Characters", "Chunks", "Message")
STATUS_ICONS = {"ok": QStyle.StandardPixmap.SP_DialogApplyButton,
                "warning": QStyle.StandardPixmap.SP_MessageBoxWarning,
                "error": QStyle.StandardPixmap.SP_MessageBoxCritical}
DATASET_FILTER = "Datasets (*.jsonl *.json *.csv);;All files (*)"
DOCUMENT_FILTER = "Documents (*.pdf *.docx *.txt *.md *.markdown);;All files (*)"


def _dropped_paths(event: QDropEvent | QDragEnterEvent | QDragMoveEvent) -> list[Path]:
    return [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]


class DropTarget:
    """Shared drag-and-drop handling: local files and folders are accepted, shown as a highlight."""

    files_dropped: Signal

    def _set_drop_highlight(self, on: bool) -> None:
        self.setProperty("dropHover", on)  # type: ignore[attr-defined]
        self.style().polish(self)  # type: ignore[attr-defined]

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if _dropped_paths(event):
            event.acceptProposedAction()
            self._set_drop_highlight(True)
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if _dropped_paths(event):
            event.acceptProposedAction()

    def dragLeaveEvent(self, _event: object) -> None:
        self._set_drop_highlight(False)

    def dropEvent(self, event: QDropEvent) -> None:
        self._set_drop_highlight(False)
        paths = _dropped_paths(event)
        if paths:
            event.acceptProposedAction()
            self.files_dropped.emit(paths)


class FileTable(DropTarget, QTableWidget):
    files_dropped = Signal(list)

    def __init__(self) -> None:
        super().__init__(0, len(COLUMNS))
        self.setObjectName("fileTable")
        self.setAcceptDrops(True)
        self.viewport().setAcceptDrops(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DropOnly)
        self.setHorizontalHeaderLabels(COLUMNS)
        self.verticalHeader().hide()
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setWordWrap(False)
        header = self.horizontalHeader()
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(5, QHeaderView.ResizeMode.Stretch)


class EmptyDropZone(DropTarget, QLabel):
    files_dropped = Signal(list)

    def __init__(self) -> None:
        super().__init__("Drop PDF, Word, text or Markdown files here — or whole folders.\n\n"
                         "Or use “Add files…”. You can also import a dataset you already have.")
        self.setObjectName("dropZone")
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setWordWrap(True)
        self.setAcceptDrops(True)


class DataPage(StepPage):
    def __init__(self, step: Step, context: AppContext, project: ProjectSummary) -> None:
        super().__init__(step, context, project)
        self.ingest = IngestService(context)
        self.datasets = DatasetService(context)
        self.tasks = TaskRunner(self)
        self._rows: list[FileRow] = []
        self._last_outcomes: list[FileOutcome] = []
        self._last_import: ImportSummary | None = None

        self.table = FileTable()
        self.table.files_dropped.connect(self.add_paths)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.drop_zone = EmptyDropZone()
        self.drop_zone.files_dropped.connect(self.add_paths)
        self.files_or_empty = QStackedWidget()
        self.files_or_empty.addWidget(self.table)
        self.files_or_empty.addWidget(self.drop_zone)

        self.summary = QLabel(wordWrap=True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.cancel = QPushButton("Cancel")
        self.cancel.clicked.connect(lambda: self.tasks.cancel("ingest"))
        self._set_running(False)

        self.body.addLayout(self._build_toolbar())
        self.body.addWidget(self.files_or_empty, 1)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.summary, 1)
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.cancel)
        self.body.addLayout(progress_row)
        self.body.addLayout(self._build_chunk_settings())
        self.refresh()

    def _build_toolbar(self) -> QHBoxLayout:
        add_files = QPushButton("Add files…")
        add_files.setObjectName("addFiles")
        add_files.clicked.connect(self._pick_files)
        add_folder = QPushButton("Add folder…")
        add_folder.clicked.connect(self._pick_folder)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self._remove_selected)
        import_button = QPushButton("Import an existing dataset…")
        import_button.clicked.connect(self._pick_dataset)
        row = QHBoxLayout()
        for button in (add_files, add_folder, self.remove_button):
            row.addWidget(button)
        row.addStretch(1)
        row.addWidget(import_button)
        return row

    def _build_chunk_settings(self) -> QHBoxLayout:
        settings = self.ingest.chunk_settings(self.project_id)
        self.chunk_tokens = QSpinBox(minimum=16, maximum=8192, singleStep=64,
                                     value=settings.max_tokens, suffix=" tokens")
        self.overlap = QSpinBox(minimum=0, maximum=4096, singleStep=10,
                                value=settings.overlap_tokens, suffix=" tokens")
        apply = QPushButton("Re-cut chunks")
        apply.clicked.connect(self._apply_chunk_settings)
        row = QHBoxLayout()
        row.addWidget(QLabel("Chunk size:"))
        row.addWidget(self.chunk_tokens)
        row.addWidget(QLabel("Overlap:"))
        row.addWidget(self.overlap)
        row.addWidget(apply)
        row.addStretch(1)
        return row

    # --- table ----------------------------------------------------------------------------------

    def refresh(self) -> None:
        self._rows = self.ingest.list_files(self.project_id)
        self.table.setRowCount(len(self._rows))
        for row, file in enumerate(self._rows):
            self._fill_row(row, file)
        self.table.resizeColumnToContents(0)
        self.table.resizeColumnToContents(1)
        has_rows = bool(self._rows)
        self.files_or_empty.setCurrentWidget(self.table if has_rows else self.drop_zone)
        chunks = sum(file.chunks for file in self._rows)
        files = f"{len(self._rows)} file{'' if len(self._rows) == 1 else 's'}"
        # A failed adding of files is said here too, as on the dashboard and the command line.
        failed = JobService(self.context).latest_failed(self.project_id, JobKind.INGEST)
        parts = ([f"{files} · {chunks} chunks"] if has_rows else []) + (
            [f"Adding files failed: {failed.error}"] if failed else [])
        set_tone(self.summary, "error" if failed else None)
        self.summary.setText(" · ".join(parts))
        self._update_buttons()
        self.completeChanged.emit()

    def _fill_row(self, row: int, file: FileRow) -> None:
        icon = self.style().standardIcon(STATUS_ICONS[file.status])
        status = QTableWidgetItem(icon, "")
        status.setToolTip(file.status)
        self.table.setItem(row, 0, status)
        values = (file.name, "" if file.pages is None else str(file.pages), f"{file.chars:,}",
                  str(file.chunks), file.message)
        for column, value in enumerate(values, start=1):
            item = QTableWidgetItem(value)
            item.setToolTip(value)
            if column in (2, 3, 4):
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.table.setItem(row, column, item)

    def _update_buttons(self) -> None:
        self.remove_button.setEnabled(bool(self.table.selectionModel().selectedRows())
                                      and not self.tasks.is_running("ingest"))

    def _set_running(self, running: bool) -> None:
        self.progress.setVisible(running)
        self.cancel.setVisible(running)

    # --- adding ---------------------------------------------------------------------------------

    def _pick_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Add documents", "", DOCUMENT_FILTER)
        self.add_paths([Path(f) for f in files])

    def _pick_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of documents")
        if folder:
            self.add_paths([Path(folder)])

    def add_paths(self, paths: Sequence[Path], password: str | None = None) -> None:
        """Ingest in a child process, so the window stays smooth; Cancel stops after a file."""
        if paths:
            self._start_in_worker(  # its ingest job shows in the status bar
                "Adding files", None,
                lambda progress, cancel: self.ingest.ingest_in_worker(
                    self.project_id, list(paths), password=password, progress=progress,
                    cancel=cancel),
                on_success=self._remember_outcomes)

    def _start_in_worker(self, title: str, status_text: str | None, work: Work,
                         on_success: Callable[[Any], None] | None = None) -> None:
        """One file task at a time (adding or re-cutting), with progress and Cancel; the table
        is reloaded when it ends, whatever the outcome."""
        if self.tasks.is_running("ingest"):
            self.summary.setText("Still working on the previous files — try again after.")
            return
        self._set_running(True)
        self.progress.setValue(0)
        self.tasks.start(
            "ingest", work, on_progress=self._on_progress, on_success=on_success,
            on_failure=lambda error: show_error(self, title, error, self.context.log_file),
            on_finished=self._on_ingest_finished, status_text=status_text)

    def _on_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(fraction * 1000))
        self.summary.setText(message)

    def _remember_outcomes(self, outcomes: list[FileOutcome]) -> None:
        self._last_outcomes = outcomes

    def _on_ingest_finished(self) -> None:
        self._set_running(False)
        self.refresh()
        outcomes, self._last_outcomes = self._last_outcomes, []
        self._follow_up(outcomes)
        summary, self._last_import = self._last_import, None
        if summary is not None:
            self._tell_import(summary)

    def _follow_up(self, outcomes: list[FileOutcome]) -> None:
        """Tell about duplicates, and ask for the password of an encrypted PDF."""
        locked = [o for o in outcomes if o.needs_password]
        duplicates = [o.name for o in outcomes if o.duplicate]
        if duplicates:
            QMessageBox.information(self, "Already added",
                                    "These files are already in the project (same content), so "
                                    "they were not added twice:\n\n" + "\n".join(duplicates))
        if locked:
            self._ask_password(locked[0])

    def _ask_password(self, outcome: FileOutcome) -> None:
        password, ok = QInputDialog.getText(
            self, "Password required", f"{outcome.message}\n\n{outcome.name}:",
            QLineEdit.EchoMode.Password)
        if ok and password:
            self.add_paths([Path(outcome.path)], password=password)

    # --- removing, settings, datasets -----------------------------------------------------------

    def _remove_selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return
        file = self._rows[rows[0].row()]
        answer = QMessageBox.question(
            self, "Remove file",
            f"Remove “{file.name}” and its {file.chunks} chunks from the project?\n\n"
            "Examples already generated from it are kept. The original file is not touched.")
        if answer != QMessageBox.StandardButton.Yes:
            return
        removed = self.ingest.remove_file(self.project_id, file.id)
        self.refresh()
        if removed.examples:
            self.summary.setText(f"Removed {removed.name}: {removed.examples} examples came from "
                                 "it and are kept in Review.")

    def _apply_chunk_settings(self) -> None:
        """Re-cut every file's chunks in a child process (tokenizing a book takes seconds)."""
        settings = ChunkSettings(self.chunk_tokens.value(), self.overlap.value())
        self._start_in_worker(
            "Chunk settings", f"Re-cutting chunks of “{self.project_name}”",
            lambda progress, cancel: self.ingest.set_chunk_settings_in_worker(
                self.project_id, settings, progress, cancel))

    def _pick_dataset(self) -> None:
        file, _ = QFileDialog.getOpenFileName(self, "Import a dataset", "", DATASET_FILTER)
        if not file:
            return
        options = ImportDialog(Path(file), self)
        if options.exec() == ImportDialog.DialogCode.Accepted:
            self.import_dataset(Path(file), options.chosen_format(),
                                options.system_prompt.toPlainText(), options.csv_columns())

    def import_dataset(self, path: Path, format: str = "auto", system_prompt: str = "",
                       csv_columns: CsvColumns | None = None) -> None:
        """Import in a child process, with progress and Cancel (a stop keeps the batches
        stored); what it did is said when it ends."""
        def work(progress: ProgressSink, cancel: CancelToken) -> ImportSummary:
            summary = self.datasets.import_in_worker(
                self.project_id, path, format=format, system_prompt=system_prompt,
                csv_columns=csv_columns, progress=progress, cancel=cancel)
            # Kept here, not passed as the result: a cancelled task's result is not passed on,
            # and a stopped import's summary says what it kept.
            self._last_import = summary
            return summary

        self._start_in_worker("Import a dataset", f"Importing {path.name}", work)

    def _tell_import(self, summary: ImportSummary) -> None:
        said = summary.describe() + (f". {STOPPED_IMPORT}" if summary.stopped else ".")
        self.summary.setText(said)
        if summary.rejected:
            QMessageBox.information(self, "Dataset imported", "\n".join([said, *summary.errors])
                                    + "\n\nRejected lines are kept in Review with their reason.")

    def isComplete(self) -> bool:
        return self.ingest.has_training_material(self.project_id)

