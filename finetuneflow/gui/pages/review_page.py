"""Step 5 — Review: generate the whole dataset, then read, edit, reject and write it out."""

from __future__ import annotations

from PySide6.QtCore import QItemSelection, Qt, QThreadPool, QTimer
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from finetuneflow.core.steps import Step
from finetuneflow.gui.colours import set_tone
from finetuneflow.gui.errors import show_error
from finetuneflow.gui.example_table import COLUMNS, ExampleTableModel
from finetuneflow.gui.llm_settings_box import run_failure_text
from finetuneflow.gui.pages.step_page import StepPage
from finetuneflow.gui.widgets.length_histogram import LengthHistogram
from finetuneflow.gui.workers import TaskRunner
from finetuneflow.services.context import AppContext
from finetuneflow.services.datasets import DatasetFiles, DatasetService
from finetuneflow.services.errors import UserError
from finetuneflow.services.generation import GenerationResult, GenerationService
from finetuneflow.services.projects import ProjectSummary
from finetuneflow.services.review import ExampleFilter, ReviewService, ReviewStats
from finetuneflow.services.training import TrainingService

STATUSES = (("All examples", None), ("Kept", "accepted"), ("Edited", "edited"),
            ("Rejected", "rejected"))
SEARCH_DELAY_MS = 250


class ReviewPage(StepPage):
    def __init__(self, step: Step, context: AppContext, project: ProjectSummary) -> None:
        super().__init__(step, context, project)
        self.generation = GenerationService(context)
        self.review = ReviewService(context)
        self.datasets = DatasetService(context)
        self.runner = TaskRunner(self)
        # The generation's request workers: a pool of their own, sized to the concurrency.
        self.request_pool = QThreadPool(self)
        self.model = ExampleTableModel(self.review, project.id)
        self.current_id: int | None = None
        self.usable = 0
        self._read_at: tuple[object, ...] | None = None  # what refresh() last read
        self.body.addWidget(self._build_generation())
        self.body.addLayout(self._build_filters())
        self.body.addWidget(self._build_main(), 1)
        self.body.addLayout(self._build_write_row())
        self.search_timer = QTimer(self, singleShot=True, interval=SEARCH_DELAY_MS)
        self.search_timer.timeout.connect(self.apply_filters)
        self.search.textChanged.connect(self.search_timer.start)

    def arrive(self) -> None:
        """Read the examples again only when they (or the length limit) changed since the
        last read: a walk across the steps passes this page without reading at all."""
        max_tokens = TrainingService(self.context).config_for(self.project_id).max_seq_length
        if (self.review.revision(self.project_id), max_tokens) != self._read_at:
            self.model.max_tokens = max_tokens
            self.refresh()

    # --- building -------------------------------------------------------------------------------

    def _build_generation(self) -> QGroupBox:
        box = QGroupBox("Generate the dataset")
        self.estimate = QLabel(objectName="runEstimate", wordWrap=True)
        self.budget = QSpinBox(objectName="chunkBudget", minimum=0, maximum=1_000_000,
                               specialValueText="all remaining", suffix=" chunks")
        self.budget.setFixedWidth(150)
        self.budget.setToolTip("Do only this many more chunks now (0: all of them). "
                               "A later run continues where this one stopped.")
        self.budget.valueChanged.connect(self._show_estimate)
        self.generate = QPushButton("Generate", objectName="generateFull")
        self.cancel = QPushButton("Cancel", objectName="cancelGenerate", visible=False)
        self.progress = QProgressBar(objectName="generateProgress", maximum=1000, visible=False)
        self.run_status = QLabel(objectName="generateStatus", wordWrap=True)
        self.generate.clicked.connect(self.start_generation)
        self.cancel.clicked.connect(lambda: self.runner.cancel("generate"))
        row = QHBoxLayout()
        row.addWidget(QLabel("Chunks:"))
        row.addWidget(self.budget)
        row.addWidget(self.generate)
        row.addWidget(self.cancel)
        row.addWidget(self.progress, 1)
        row.addStretch(1)
        layout = QVBoxLayout(box)
        layout.addWidget(self.estimate)
        layout.addLayout(row)
        layout.addWidget(self.run_status)
        return box

    def _build_filters(self) -> QHBoxLayout:
        self.search = QLineEdit(objectName="searchExamples", clearButtonEnabled=True,
                                placeholderText="Search the examples…")
        self.status_filter = QComboBox(objectName="statusFilter")
        for label, value in STATUSES:
            self.status_filter.addItem(label, value)
        self.reason_filter = QComboBox(objectName="reasonFilter")
        self.file_filter = QComboBox(objectName="fileFilter")
        for combo in (self.status_filter, self.reason_filter, self.file_filter):
            combo.currentIndexChanged.connect(self.apply_filters)
        self.shown = QLabel(objectName="shownCount")
        row = QHBoxLayout()
        row.addWidget(self.search, 2)
        for widget in (self.status_filter, self.reason_filter, self.file_filter, self.shown):
            row.addWidget(widget)
        return row

    def _build_main(self) -> QSplitter:
        self.table = QTableView(objectName="exampleTable")
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(False)
        # Questions drawn from one passage share their opening ("What does the text say
        # about …"); what tells them apart is mostly at the end. Eliding in the middle keeps
        # both the kind of question and its subject, needs no comparison between rows (stable
        # while rows load or the filter changes), and the tooltip holds the whole text.
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(24)  # fixed rows: smooth scrolling
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)  # prompt, reply, source
        # Status, split, tokens: as wide as their longest word. Measured once, not fitted to
        # the contents: that asks every loaded row on each layout (a 500-row page: ~25k calls).
        metrics = header.fontMetrics()
        for column, longest in ((2, "accepted"), (3, "preview"), (4, "00000")):
            words = (COLUMNS[column], longest)
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Fixed)
            header.resizeSection(column, max(map(metrics.horizontalAdvance, words)) + 20)
        # The question gets the room (it is what tells rows apart); the answer and the
        # source take a small fixed share, which a drag of the header can change.
        for column, width in ((1, 100), (5, 80)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Interactive)
            header.resizeSection(column, width)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.table)
        splitter.addWidget(self._build_side())
        splitter.setSizes([760, 260])
        splitter.setStretchFactor(0, 1)  # a wider window widens the table, not the editor
        splitter.setStretchFactor(1, 0)
        return splitter

    def _build_side(self) -> QWidget:
        side = QWidget()
        layout = QVBoxLayout(side)
        layout.setContentsMargins(0, 0, 0, 0)
        self.user_text = QPlainTextEdit(objectName="editUser")
        self.reply_text = QPlainTextEdit(objectName="editReply")
        self.reason = QLabel(objectName="exampleReason", wordWrap=True)
        set_tone(self.reason, "error")
        form = QFormLayout()
        # Labels above the fields, buttons two by two: a narrow panel leaves the table wide.
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapAllRows)
        form.addRow("Prompt:", self.user_text)
        form.addRow("Reply:", self.reply_text)
        buttons = QGridLayout()
        self.save_edit = QPushButton("Save edit", objectName="saveEdit")
        self.reject = QPushButton("Reject", objectName="rejectExample")
        self.restore = QPushButton("Keep", objectName="restoreExample")
        self.restore.setToolTip("Keep a rejected or flagged example after all")
        self.delete = QPushButton("Delete", objectName="deleteExample")
        for place, (button, slot) in enumerate(((self.save_edit, self.save_current_edit),
                                                (self.reject, self.reject_selected),
                                                (self.restore, self.restore_selected),
                                                (self.delete, self.delete_selected))):
            button.clicked.connect(slot)
            buttons.addWidget(button, place // 2, place % 2)
        self.stats = QLabel(objectName="reviewStats", wordWrap=True)
        self.histogram = LengthHistogram()
        self.no_lengths = QLabel(objectName="noLengths", wordWrap=True, visible=False)
        self.no_lengths.setAlignment(Qt.AlignmentFlag.AlignTop)
        layout.addLayout(form, 3)
        layout.addWidget(self.reason)
        layout.addLayout(buttons)
        layout.addWidget(self.stats)
        layout.addWidget(self.histogram, 2)
        layout.addWidget(self.no_lengths, 2)
        self._set_editor_enabled(False)
        return side

    def _build_write_row(self) -> QHBoxLayout:
        self.eval_share = QDoubleSpinBox(objectName="evalShare", minimum=0.0, maximum=50.0,
                                         value=10.0, suffix=" %", decimals=0)
        self.eval_share.setToolTip("Held out to measure the model. Examples from one passage "
                                   "stay on one side, so the test is fair.")
        self.write = QPushButton("Write dataset", objectName="writeDataset")
        self.write.clicked.connect(self.write_dataset)
        self.written = QLabel(objectName="datasetWritten", wordWrap=True)
        row = QHBoxLayout()
        row.addWidget(QLabel("Evaluation share:"))
        row.addWidget(self.eval_share)
        row.addWidget(self.write)
        row.addWidget(self.written, 1)
        return row

    # --- showing --------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Counts, filters and the table from the database."""
        self._mark_read()
        self._show_stats(self.review.stats(self.project_id))
        self._fill_files()
        self._show_estimate()
        self.apply_filters()

    def _mark_read(self) -> None:
        """What is shown is what the database holds now (read, or changed by this page)."""
        self._read_at = (self.review.revision(self.project_id), self.model.max_tokens)

    def _show_stats(self, stats: ReviewStats) -> None:
        reasons = "".join(f"<br>&nbsp;&nbsp;{reason}: {count}"
                          for reason, count in stats.rejected_by_reason.items())
        self.stats.setText(
            f"<b>{stats.usable}</b> examples kept ({stats.edited} edited) · "
            f"<b>{stats.rejected}</b> rejected · {stats.duplicates_removed} duplicates removed"
            f"{reasons}")
        self._show_lengths(stats)
        self._fill_reasons(stats)
        self.usable = stats.usable
        self.completeChanged.emit()

    def _show_lengths(self, stats: ReviewStats) -> None:
        """The histogram of lengths, or why there is none: an empty plot with a made-up axis
        says nothing (imported examples have no token count until they are written)."""
        lengths = stats.token_lengths
        self.histogram.setVisible(bool(lengths))
        self.no_lengths.setVisible(not lengths)
        if lengths:
            self.histogram.show_lengths(lengths, self.model.max_tokens)
        elif stats.usable:
            self.no_lengths.setText(
                "No lengths to show: these examples have no token count yet (imported "
                "examples get one when the dataset is measured for training). The Hardware "
                "step counts them all.")
        else:
            self.no_lengths.setText("No examples yet: their lengths in tokens show here.")

    def _fill_reasons(self, stats: ReviewStats) -> None:
        self._refill(self.reason_filter, [("Any reason", None)] + [
            (f"{reason} ({count})", reason) for reason, count in stats.rejected_by_reason.items()])

    def _fill_files(self) -> None:
        self._refill(self.file_filter, [("All files", None)] + [
            (name, file_id) for file_id, name in self.review.files(self.project_id)])

    @staticmethod
    def _refill(combo: QComboBox, items: list[tuple[str, object]]) -> None:
        chosen = combo.currentData()
        combo.blockSignals(True)
        combo.clear()
        for label, value in items:
            combo.addItem(label, value)
        combo.setCurrentIndex(max(0, combo.findData(chosen)))
        combo.blockSignals(False)

    def _show_estimate(self) -> None:
        try:
            estimate = self.generation.estimate(self.project_id, self.budget.value() or None)
        except UserError as error:  # no chunks yet: a project without documents
            self.estimate.setText(str(error))
            self.generate.setEnabled(False)
            return
        self.generate.setEnabled(estimate.chunks > 0 and not self.runner.is_running("generate"))
        self.estimate.setText(estimate.describe() if estimate.chunks else
                              "Every chunk has its examples. Add documents to generate more.")

    def apply_filters(self) -> None:
        self.model.set_filters(ExampleFilter(
            search=self.search.text(), status=self.status_filter.currentData(),
            reason=self.reason_filter.currentData(), file_id=self.file_filter.currentData()))
        self.shown.setText(f"{self.model.total():,} shown")
        self._show_example(None)

    # --- one example ----------------------------------------------------------------------------

    def selected_ids(self) -> list[int]:
        rows = {index.row() for index in self.table.selectionModel().selectedRows()}
        return [self.model.row_at(row).id for row in sorted(rows)]

    def _selection_changed(self, _selected: QItemSelection, _deselected: QItemSelection) -> None:
        self._show_example(self._update_row_buttons())

    def _update_row_buttons(self) -> int | None:
        """Reject only what is not rejected yet, Keep only what is; the one selected id."""
        rows = sorted({index.row() for index in self.table.selectionModel().selectedRows()})
        statuses = {self.model.row_at(row).status for row in rows}
        self.reject.setEnabled(bool(statuses - {"rejected"}))
        self.reject.setToolTip("" if not statuses or statuses - {"rejected"} else
                               "Already rejected: Keep brings it back")
        self.restore.setEnabled("rejected" in statuses)
        self.delete.setEnabled(bool(rows))
        return self.model.row_at(rows[0]).id if len(rows) == 1 else None

    def _show_example(self, example_id: int | None) -> None:
        self.current_id = example_id
        if example_id is None:
            self.user_text.clear()
            self.reply_text.clear()
            self.reason.clear()
            self._set_editor_enabled(False)
            return
        example = self.review.example(example_id)
        turns = {m["role"]: m["content"] for m in example["messages"]}
        self.user_text.setPlainText(turns.get("user", ""))
        self.reply_text.setPlainText(turns.get("assistant", ""))
        self.reason.setText(example["reject_reason"] or "")
        self._set_editor_enabled(True)

    def _set_editor_enabled(self, enabled: bool) -> None:
        for widget in (self.user_text, self.reply_text, self.save_edit):
            widget.setEnabled(enabled)

    def save_current_edit(self) -> None:
        if self.current_id is None:
            return
        example = self.review.example(self.current_id)
        messages = _with_turns(example["messages"], self.user_text.toPlainText(),
                               self.reply_text.toPlainText())
        count = self.generation.quality_options(self.project_id).count_tokens
        try:
            self.review.edit(self.current_id, messages, count(messages) if count else None)
        except Exception as error:
            show_error(self, "Edit", error, self.context.log_file)
            return
        self._changed({self.current_id})

    def reject_selected(self) -> None:
        ids = self.selected_ids()
        self.review.reject(ids)
        self._changed(set(ids))

    def restore_selected(self) -> None:
        ids = self.selected_ids()
        try:
            self.review.restore(ids)
        except Exception as error:  # a copy of a kept example stays rejected; the rest are back
            show_error(self, "Restore", error, self.context.log_file)
        self._changed(set(ids))

    def delete_selected(self) -> None:
        ids = self.selected_ids()
        answer = QMessageBox.question(
            self, "Delete examples", f"Delete {len(ids)} example(s) for good? Rejecting keeps "
            "them out of the dataset but lets you change your mind.")
        if answer != QMessageBox.StandardButton.Yes:
            return
        self.review.delete(ids)
        self.model.remove_ids(set(ids))
        self._show_stats(self.review.stats(self.project_id))
        self._mark_read()

    def _changed(self, ids: set[int]) -> None:
        self.model.refresh_rows(ids)
        self._show_stats(self.review.stats(self.project_id))
        self._update_row_buttons()
        if self.current_id in ids:
            self._show_example(self.current_id)
        self._mark_read()

    # --- generating and writing -----------------------------------------------------------------

    def start_generation(self) -> None:
        if self.runner.is_running("generate"):
            return
        self.request_pool.setMaxThreadCount(
            self.generation.llm_settings(self.project_id).resolved_concurrency)
        budget = self.budget.value() or None
        set_tone(self.run_status, None)
        self._set_running(True)
        self.runner.start(
            "generate", lambda progress, cancel: self.generation.run(
                self.project_id, preview=False, progress=progress, cancel=cancel,
                max_chunks=budget, start_worker=self.request_pool.start),
            on_progress=self._on_progress, on_success=self._generated,
            on_cancel=lambda: self.run_status.setText(
                "Stopped. Everything written so far is kept; Generate continues from there."),
            on_failure=self._generation_failed,
            on_finished=self._generation_finished)

    def cancel_generation(self) -> None:
        self.runner.cancel("generate")

    def _on_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(fraction * 1000))
        self.run_status.setText(f"{fraction:.0%} · {message}")

    def _generated(self, result: GenerationResult) -> None:
        failed = (f" {result.failures}: Generate retries them (details in the log)."
                  if result.failures else "")
        self.run_status.setText(f"Done: {result.accepted} examples kept, {result.rejected} "
                                f"rejected, from {result.chunks_done} chunks.{failed}")

    def _generation_failed(self, error: BaseException) -> None:
        set_tone(self.run_status, "error")
        self.run_status.setText("Generation failed: "
                                + run_failure_text(error, self.context.log_file))
        show_error(self, "Generating the dataset", error, self.context.log_file)

    def _generation_finished(self) -> None:
        self._set_running(False)
        self.refresh()

    def _set_running(self, running: bool) -> None:
        self.generate.setEnabled(not running)
        self.cancel.setVisible(running)
        self.progress.setVisible(running)
        self.progress.setValue(0)

    def write_dataset(self) -> DatasetFiles | None:
        files = self._write_files()
        if files is not None:
            self.model.reload()  # the Split column
            self._mark_read()
        return files

    def _write_files(self) -> DatasetFiles | None:
        try:
            files = self.datasets.export(self.project_id, self.eval_share.value() / 100)
        except Exception as error:
            show_error(self, "Write dataset", error, self.context.log_file)
            return None
        self.written.setText(f"Wrote {files.train} training and {files.eval} evaluation "
                             f"examples to {files.train_path.parent}.")
        return files

    def isComplete(self) -> bool:
        return self.usable > 0

    def validatePage(self) -> bool:
        if self.runner.is_running("generate") or not self.usable:
            return True  # nothing to write yet; generation goes on in the background
        if not self.datasets.files_are_current(self.project_id):
            # The page is being left: its table is read again on the next arrival.
            return self._write_files() is not None
        return True


def _with_turns(messages: list[dict[str, str]], user: str, reply: str) -> list[dict[str, str]]:
    """The example's turns with the prompt and reply replaced (the system prompt is kept)."""
    system = [m for m in messages if m["role"] == "system"]
    return [*system, {"role": "user", "content": user.strip()},
            {"role": "assistant", "content": reply.strip()}]
