"""Step 8 — Export: the zip (adapter, merged model, report, metrics), Ollama, and “Try it”."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices, QPalette, QTextCursor, QTextOption
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from finetuneflow.core.statuses import JobKind
from finetuneflow.core.steps import Step
from finetuneflow.core.units import format_bytes, format_duration
from finetuneflow.gui.chat_panel import ChatPanel
from finetuneflow.gui.colours import set_tone
from finetuneflow.gui.errors import describe, show_error
from finetuneflow.gui.pages.step_page import StepPage
from finetuneflow.gui.styles import styled
from finetuneflow.gui.widgets.evaluation_view import EvaluationView
from finetuneflow.gui.widgets.report_view import ReportView
from finetuneflow.gui.workers import TaskRunner, Work
from finetuneflow.services import evaluation as evaluations
from finetuneflow.services.context import AppContext
from finetuneflow.services.export import ADAPTER_GGUF, ExportOptions, ExportResult, ExportService
from finetuneflow.services.finished_runs import FinishedRuns
from finetuneflow.services.jobs import JobService
from finetuneflow.services.ollama import (
    OLLAMA_QUANTIZE,
    OllamaRegistration,
    OllamaService,
    ollama_available,
)
from finetuneflow.services.projects import ProjectSummary

ZIP_FILTER = "Zip files (*.zip)"
GGUF_LABELS = {"f16": "F16", "q8_0": "Q8_0", "q4_k_m": "Q4_K_M"}
ADAPTER_TIP = ("A small LoRA GGUF that llama.cpp and Ollama apply on the base model's GGUF: "
               "one base, several adapters.")
GGUF_TIPS = {"f16": "Full 16-bit weights: the largest file, the exact model.",
             "q8_0": "8-bit: about half the F16 size, answers nearly identical.",
             "q4_k_m": "4-bit: about a quarter of the F16 size, for small laptops."}
EMPTY_TEXT = ("There is no finished training run to export yet.\n\nTrain the model in the "
              "Train step. When a run has finished, come back here to export it and try it.")
NOT_EXPORTED = ("This run has not been exported yet. The report on the right is a draft: the "
                "export adds the base and fine-tuned models' answers to sample prompts.")
STOPPED = {"export": "Export stopped. Nothing half-made was kept.",
           "save": "Copy stopped. Nothing was written.",
           "ollama": "Stopped. Ollama may have the model already."}
EVALUATE = "evaluate"  # the runner's names for an evaluation and the judge's cost
ESTIMATE = "estimate"
EVALUATION_STOPPED = ("Stopped. The answers and verdicts so far are kept: Evaluate goes on "
                      "from there.")


class ExportPage(StepPage):
    def __init__(self, step: Step, context: AppContext, project: ProjectSummary) -> None:
        super().__init__(step, context, project)
        self.service = ExportService(context)
        self.finished_runs = FinishedRuns(context)
        self.ollama = OllamaService(context)
        self.runner = TaskRunner(self)
        self.run_id: int | None = None
        self.runs: list[int] = []  # the finished runs, newest first
        self.destination: Path | None = None
        self.exported: ExportResult | None = None
        self.task: str | None = None  # the export, copy or Ollama call that is running
        self.gguf_problems: dict[str, str | None] = {}  # why a GGUF box is disabled
        self._report_stale = False
        self.stack = QStackedWidget()
        self.stack.addWidget(self._build_empty())
        self.stack.addWidget(self._build_content())
        self.body.addWidget(self.stack, 1)

    def initializePage(self) -> None:
        self.refresh()

    # --- building -------------------------------------------------------------------------------

    def _build_empty(self) -> QWidget:
        self.empty_text = styled(QLabel(EMPTY_TEXT, objectName="emptyState", wordWrap=True,
                                        alignment=Qt.AlignmentFlag.AlignCenter))
        to_train = QPushButton("Go to the Train step", objectName="goToTrain")
        to_train.clicked.connect(lambda: self.wizard().back())  # Train is the step before
        empty = QWidget()
        layout = QVBoxLayout(empty)
        layout.addStretch(1)
        layout.addWidget(self.empty_text)
        layout.addWidget(to_train, 0, Qt.AlignmentFlag.AlignCenter)
        layout.addStretch(2)
        return empty

    def _build_content(self) -> QWidget:
        self.run_choice = QComboBox(objectName="runChoice")
        self.run_choice.activated.connect(lambda _index: self.show_run(
            self.run_choice.currentData()))
        self.run_row = QWidget(visible=False)
        row = QHBoxLayout(self.run_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Run:"))
        row.addWidget(self.run_choice)
        row.addStretch(1)
        self.chat = ChatPanel(self.context, self.project_id)
        self.tabs = QTabWidget(objectName="exportTabs")
        self.evaluation_view = EvaluationView()
        self.evaluation_view.evaluate.connect(self.start_evaluation)
        self.evaluation_view.stop.connect(lambda: self.runner.cancel(EVALUATE))
        self.evaluation_view.questions_changed.connect(self.estimate_judge)
        self._cost_stale = False
        self.tabs.addTab(self._build_export_tab(), "Export")
        self.tabs.addTab(self.evaluation_view, "Evaluation")
        self.tabs.addTab(self.chat, "Try it")
        content = QWidget()
        layout = QVBoxLayout(content)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.run_row)
        layout.addWidget(self.tabs, 1)
        return content

    def _build_export_tab(self) -> QSplitter:
        self.report = ReportView()
        self.right = QSplitter(Qt.Orientation.Vertical)
        self.right.addWidget(self.report)
        self.right.addWidget(self._build_ollama_check())
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self._build_controls())
        splitter.addWidget(self.right)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([320, 580])
        return splitter

    def _build_controls(self) -> QWidget:
        controls = QWidget()
        layout = QVBoxLayout(controls)
        layout.setContentsMargins(0, 0, 4, 0)
        layout.addWidget(self._build_parts())
        layout.addWidget(self._build_destination())
        layout.addLayout(self._build_run_buttons())
        self.progress = QProgressBar(objectName="exportProgress", maximum=1000, visible=False)
        self.status = QLabel(objectName="exportStatus", wordWrap=True)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self._build_last_export())
        layout.addStretch(1)
        return controls

    def _build_parts(self) -> QGroupBox:
        box = QGroupBox("What goes in the zip")
        always = QLabel("Always: the LoRA adapter, report, metrics, settings and sample "
                        "answers.", wordWrap=True)
        self.merged = QCheckBox("The merged model, for Ollama", objectName="exportMerged")
        self.merged.setToolTip("The base model with the adapter folded in, ready for Ollama "
                               "or plain transformers. As big as the base model.")
        self.merged_note = QLabel(objectName="mergedNote", wordWrap=True, visible=False)
        set_tone(self.merged_note, "warning")
        self.merged_note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.include_dataset = QCheckBox("The dataset (train and eval JSONL)",
                                         objectName="exportDataset")
        layout = QVBoxLayout(box)
        self.gguf_adapter = QCheckBox("The adapter alone as GGUF, with a Modelfile FROM the "
                                      "base model", objectName="ggufAdapter")
        self.gguf_adapter.setToolTip(ADAPTER_TIP)
        for widget in (always, self.merged, self.merged_note, self._build_gguf(),
                       self.gguf_adapter, self.include_dataset):
            layout.addWidget(widget)
        return box

    def _build_gguf(self) -> QWidget:
        """One box per GGUF quantisation (made from the merged model, so ticking one ticks
        it); a box that cannot be made here is disabled and says why."""
        self.gguf = {name: QCheckBox(label, objectName=f"gguf_{name}")
                     for name, label in GGUF_LABELS.items()}
        self.gguf_note = QLabel(objectName="ggufNote", wordWrap=True, visible=False)
        set_tone(self.gguf_note, "warning")
        self.gguf_note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("GGUF (LM Studio, llama.cpp):"))
        for box in self.gguf.values():
            box.toggled.connect(lambda on: on and self.merged.setChecked(True))
            row.addWidget(box)
        row.addStretch(1)
        widget = QWidget()
        layout = QVBoxLayout(widget)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.gguf_note)
        return widget

    def _build_destination(self) -> QGroupBox:
        box = QGroupBox("Zip file")
        # The name in the field, the folder under it: a long path would show only its folder
        # part in a narrow field, and never the name.
        self.zip_path = QLineEdit(objectName="zipPath", readOnly=True)
        self.zip_folder = QLabel(objectName="zipFolder", wordWrap=True)
        self.zip_folder.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.zip_folder.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.change_destination = QPushButton("Change…", objectName="changeDestination")
        self.change_destination.clicked.connect(self.choose_destination)
        row = QHBoxLayout()
        row.addWidget(self.zip_folder, 1)
        row.addWidget(self.change_destination, 0, Qt.AlignmentFlag.AlignTop)
        layout = QVBoxLayout(box)
        layout.addWidget(self.zip_path)  # the whole width: the name is what matters
        layout.addLayout(row)
        return box

    def _build_run_buttons(self) -> QHBoxLayout:
        self.export_button = QPushButton("Export", objectName="exportButton")
        self.export_button.clicked.connect(self.start_export)
        self.cancel_button = QPushButton("Cancel", objectName="cancelExport", visible=False)
        self.cancel_button.clicked.connect(self.cancel)
        row = QHBoxLayout()
        row.addWidget(self.export_button)
        row.addWidget(self.cancel_button)
        row.addStretch(1)
        return row

    def _build_last_export(self) -> QGroupBox:
        self.last_box = QGroupBox("Last export", objectName="lastExport", visible=False)
        self.summary = QLabel(objectName="exportSummary", wordWrap=True)
        self.open_folder = QPushButton("Open folder", objectName="openFolder")
        self.open_folder.clicked.connect(self.show_folder)
        self.save_zip = QPushButton("Save zip as…", objectName="saveZipAs")
        self.save_zip.clicked.connect(self.save_zip_as)
        self.register = QPushButton("Register in Ollama", objectName="registerOllama")
        self.register.clicked.connect(self.register_in_ollama)
        self.ollama_hint = QLabel(objectName="ollamaHint", wordWrap=True)
        # Quieter than the text, in a palette role so it follows light and dark.
        self.ollama_hint.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        buttons = QHBoxLayout()
        for button in (self.open_folder, self.save_zip):
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self.last_box)
        layout.addWidget(self.summary)
        layout.addLayout(buttons)
        self.quantize = QComboBox(objectName="ollamaQuantize")
        self.quantize.addItem("as exported", None)
        for name in OLLAMA_QUANTIZE:
            self.quantize.addItem(f"quantise to {name}", name)
        self.quantize.setToolTip("`ollama create --quantize`: only for the merged model; a "
                                 "GGUF export is already in the quantisation chosen above.")
        register_row = QHBoxLayout()
        register_row.addWidget(self.register)
        register_row.addWidget(self.quantize)
        register_row.addStretch(1)
        layout.addLayout(register_row)
        layout.addWidget(self.ollama_hint)
        return self.last_box

    def _build_ollama_check(self) -> QGroupBox:
        self.ollama_box = QGroupBox(objectName="ollamaCheck", visible=False)
        self.ollama_prompt = QLabel(wordWrap=True)
        self.ollama_answer = QPlainTextEdit(objectName="ollamaAnswer", readOnly=True)
        self.hf_answer = QPlainTextEdit(objectName="hfAnswer", readOnly=True)
        self.ollama_warning = QLabel(objectName="ollamaWarning", wordWrap=True)
        set_tone(self.ollama_warning, "error")
        answers = QHBoxLayout()
        for title, pane in (("Ollama", self.ollama_answer), ("transformers", self.hf_answer)):
            column = QVBoxLayout()
            column.addWidget(QLabel(f"<b>{title}</b>"))
            column.addWidget(pane)
            answers.addLayout(column)
        layout = QVBoxLayout(self.ollama_box)
        layout.addWidget(self.ollama_prompt)
        layout.addLayout(answers, 1)
        layout.addWidget(self.ollama_warning)
        return self.ollama_box

    # --- showing --------------------------------------------------------------------------------

    def refresh(self) -> None:
        """The finished runs; without one, the empty state that points to the Train step."""
        if self.task is not None:
            return  # back on the page during an export: it shows its progress as it is
        runs = self.finished_runs.ids(self.project_id)
        self.stack.setCurrentIndex(1 if runs else 0)
        if not runs:
            return
        self._fill_runs(runs)
        self.show_run(self.run_choice.currentData())

    def _fill_runs(self, runs: list[int]) -> None:
        """Newest first; a run that finished since the last visit is the one chosen."""
        chosen = self.run_id if runs == self.runs and self.run_id in runs else runs[0]
        self.runs = runs
        self.run_choice.clear()
        for run_id in runs:
            self.run_choice.addItem(f"Run {run_id}" + (" (latest)" if run_id == runs[0]
                                                       else ""), run_id)
        self.run_choice.setCurrentIndex(self.run_choice.findData(chosen))
        self.run_row.setVisible(len(runs) > 1)

    def show_run(self, run_id: int) -> None:
        if run_id != self.run_id:  # a return visit keeps what the person chose
            self._apply_defaults(run_id)
        self.show_last_export(self.service.last_export(self.project_id, run_id))
        self.show_evaluation()
        self.load_report()

    def _apply_defaults(self, run_id: int) -> None:
        self.run_id = run_id
        options = self.service.default_options(self.project_id, run_id)
        support = self.service.ollama_support(self.project_id, run_id)
        self.set_destination(options.out)
        self.merged.setChecked(bool(options.merged))
        self.merged_note.setText(support.note)
        self.merged_note.setVisible(not support.importable)
        self._apply_gguf(self.service.gguf_problems(self.project_id, run_id))
        self.chat.set_run(run_id)

    def _apply_gguf(self, problems: dict[str, str | None]) -> None:
        self.gguf_problems = problems
        for name, box in self.gguf.items():
            box.setChecked(False)
            box.setToolTip(problems[name] or GGUF_TIPS[name])
        self.gguf_adapter.setChecked(False)
        self.gguf_adapter.setToolTip(problems.get(ADAPTER_GGUF) or ADAPTER_TIP)
        self._enable_gguf(self.task is None)
        reasons = list(dict.fromkeys(p for p in problems.values() if p))
        self.gguf_note.setText(" ".join(reasons))
        self.gguf_note.setVisible(bool(reasons))

    def set_destination(self, path: Path | None) -> None:
        if path is not None and path.suffix.lower() != ".zip":
            path = path.with_name(f"{path.name}.zip")
        self.destination = path
        self.zip_path.setText(path.name if path else "")
        self.zip_path.setCursorPosition(0)
        self.zip_path.setToolTip(str(path or ""))
        self.zip_folder.setText(f"in {path.parent}" if path else "")
        self.zip_folder.setToolTip(str(path.parent) if path else "")

    def show_last_export(self, exported: ExportResult | None) -> None:
        self.exported = exported
        self.last_box.setVisible(exported is not None)
        failed = JobService(self.context).latest_failed(self.project_id, JobKind.EXPORT)
        set_tone(self.status, None)
        if failed is not None and failed.params.get("run_id") == self.run_id:
            # The dashboard says "Export failed": so does the page, with the cause.
            set_tone(self.status, "error")
            self.status.setText(f"The last export of this run failed: {failed.error}")
        elif exported is None:
            self.status.setText(NOT_EXPORTED)
        if exported is None:
            return
        parts = "adapter and merged model" if exported.merged else "adapter"
        if exported.gguf:
            parts += ", GGUF " + ", ".join(
                f"{entry.quantisation.upper()}{' adapter' if entry.kind == 'adapter' else ''} "
                f"{_size(entry.bytes)}" for entry in exported.gguf)
        self.summary.setText(
            f"<b>{exported.zip_path.name}</b><br>{_size(exported.zip_bytes)}, "
            f"{len(exported.files)} files ({parts}), made in "
            f"{format_duration(exported.seconds)}.")
        self.summary.setToolTip(str(exported.zip_path))
        self._update_buttons()

    def _ollama_state(self) -> tuple[bool, str]:
        """Whether the last export can go into Ollama here; why not, or what that runs."""
        exported = self.exported
        if exported is None or exported.ollama is None:
            return False, "Export with the merged model to register it in Ollama."
        self.quantize.setEnabled(not exported.gguf_models)
        if exported.gguf_models:
            return ollama_available(), (
                f"Runs “{exported.ollama.command}” in the export's gguf folder."
                if ollama_available() else "Install Ollama (ollama.com/download) to register "
                "the model here.")
        if not exported.ollama.importable:
            return False, "Ollama cannot import this architecture directly (see the note above)."
        if not ollama_available():
            return False, "Install Ollama (ollama.com/download) to register the model here."
        return True, f"Runs “{exported.ollama.command}” in the export's merged folder."

    def load_report(self) -> None:
        """Read (or draw up) the report in the background: before an export it counts the
        tokens of the whole dataset."""
        if self.runner.is_running("report"):
            self._report_stale = True  # loaded again when the running read ends
            return
        self._report_stale = False
        run_id = self.run_id
        self.runner.start(
            "report", lambda _progress, _cancel: (
                self.service.report_preview(self.project_id, run_id),
                self.service.loss_curve(self.project_id, run_id)),
            on_success=lambda report: self._show_report(*report),
            on_failure=lambda error: self.report.setPlainText(
                describe(error, self.context.log_file)[0]),
            on_finished=self._report_loaded)

    def _show_report(self, markdown: str, curve_svg: str) -> None:
        self.report.show_report(markdown, curve_svg)
        fit_to_width(self.report)

    def _report_loaded(self) -> None:
        if self._report_stale:
            self.load_report()

    # --- the evaluation -------------------------------------------------------------------------

    def show_evaluation(self) -> None:
        """The shown run's evaluation as stored; one that runs here shows its progress instead."""
        if self.runner.is_running(EVALUATE):
            return
        elsewhere = bool(JobService(self.context).alive(self.project_id, JobKind.EVAL))
        self.evaluation_view.show_evaluation(
            evaluations.evaluation(self.context, self.project_id, self.run_id), elsewhere)
        self.estimate_judge()  # what is left to judge has changed

    def estimate_judge(self) -> None:
        """The judge's cost before it runs (it counts tokens with the model's tokenizer)."""
        if self.runner.is_running(ESTIMATE):
            self._cost_stale = True  # estimated again when the running one ends
            return
        self._cost_stale = False
        run_id, count = self.run_id, self.evaluation_view.max_questions.value()
        self.runner.start(
            ESTIMATE, lambda _progress, _cancel: evaluations.estimate_judge(
                self.context, self.project_id, run_id, max_questions=count),
            on_success=self.evaluation_view.show_cost,
            on_failure=lambda error: self.evaluation_view.show_cost(
                describe(error, self.context.log_file)[0]),
            on_finished=self._estimated)

    def _estimated(self) -> None:
        if self._cost_stale:
            self.estimate_judge()

    def start_evaluation(self, judge: bool, max_questions: int) -> None:
        run_id = self.run_id
        self.evaluation_view.set_busy(True)
        self.run_choice.setEnabled(False)  # the results shown belong to this run
        self.evaluation_view.show_status("Starting the evaluation (loading the models)…")
        self.runner.start(
            EVALUATE, lambda progress, cancel: evaluations.start_evaluation(
                self.context, self.project_id, run_id, judge=judge,
                max_questions=max_questions, progress=progress, cancel=cancel),
            on_progress=self.evaluation_view.show_progress,
            on_success=lambda _job: self.evaluation_view.show_status(""),
            on_cancel=lambda: self.evaluation_view.show_status(EVALUATION_STOPPED),
            on_failure=self._evaluation_failed, on_finished=self._evaluation_finished)

    def _evaluation_failed(self, error: BaseException) -> None:
        text, is_bug = describe(error, self.context.log_file)
        self.evaluation_view.show_status(text, "error")
        if is_bug:
            show_error(self, "Evaluation", error, self.context.log_file)

    def _evaluation_finished(self) -> None:
        self.evaluation_view.set_busy(False)
        self.run_choice.setEnabled(self.task is None)
        self.show_evaluation()
        self.load_report()  # the report leads with the evaluation

    # --- background tasks -----------------------------------------------------------------------

    def start_export(self) -> None:
        options = ExportOptions(run_id=self.run_id, merged=self.merged.isChecked(),
                                include_dataset=self.include_dataset.isChecked(),
                                out=self.destination,
                                gguf=tuple(name for name, box in self.gguf.items()
                                           if box.isChecked()),
                                gguf_adapter=self.gguf_adapter.isChecked())
        self._start("export", lambda progress, cancel: self.service.export(
            self.project_id, options, progress=progress, cancel=cancel), self._exported,
            "Starting the export…")

    def save_zip_as(self) -> None:
        if self.exported is None:
            return
        name, _filter = QFileDialog.getSaveFileName(
            self, "Save the export as", str(Path.home() / self.exported.zip_path.name),
            ZIP_FILTER)
        if name:
            self.copy_zip_to(Path(name))

    def copy_zip_to(self, target: Path) -> None:
        if target.suffix.lower() != ".zip":
            target = target.with_name(f"{target.name}.zip")
        run_id = self.run_id
        self._start("save", lambda progress, cancel: self.service.save_zip_as(
            self.project_id, target, run_id, progress=progress, cancel=cancel),
            lambda path: self.status.setText(f"Saved a copy as {path}."), "Copying the zip…")

    def register_in_ollama(self) -> None:
        run_id = self.run_id
        quantize = self.quantize.currentData() if self.quantize.isEnabled() else None
        self._start("ollama", lambda progress, cancel: self.ollama.register(
            self.project_id, run_id, quantize=quantize, progress=progress, cancel=cancel),
            self._show_registration, "Creating the model in Ollama…")

    def _start(self, name: str, work: Work, on_success: Callable[[Any], None],
               starting: str) -> None:
        """One export, copy or Ollama call at a time, sharing the progress bar and Cancel."""
        if self.task is not None:
            return
        self.task = name
        self._set_busy(True)
        set_tone(self.status, None)
        self.status.setText(starting)
        self.runner.start(name, work, on_progress=self._on_progress, on_success=on_success,
                          on_cancel=lambda: self.status.setText(STOPPED[name]),
                          on_failure=self._failed, on_finished=self._task_finished)

    def cancel(self) -> None:
        if self.task is not None:
            self.runner.cancel(self.task)
            self.status.setText("Stopping…")

    def _on_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(fraction * 1000))
        self.status.setText(message)

    def _exported(self, result: ExportResult) -> None:
        self.status.setText("Done. The report on the right is now the one in the zip.")
        self.show_last_export(result)
        self.load_report()

    def _show_registration(self, registration: OllamaRegistration) -> None:
        name = registration.model_name
        self.status.setText(f"Ollama has the model: “ollama run {name}”.")
        self.ollama_box.setTitle(f"Ollama check: {name}")
        self.ollama_prompt.setText(f"<b>Prompt:</b> {html.escape(registration.prompt)}")
        self.ollama_answer.setPlainText(registration.ollama_answer)
        self.hf_answer.setPlainText(registration.hf_answer)
        self.ollama_warning.setText(registration.warning or "")
        self.ollama_warning.setVisible(registration.warning is not None)
        if not self.ollama_box.isVisible():  # the report keeps most of the height
            self.ollama_box.setVisible(True)
            height = sum(self.right.sizes())
            self.right.setSizes([height * 3 // 5, height * 2 // 5])

    def _failed(self, error: BaseException) -> None:
        text, is_bug = describe(error, self.context.log_file)
        set_tone(self.status, "error")
        self.status.setText(text)
        if is_bug:
            show_error(self, "Export", error, self.context.log_file)

    def _task_finished(self) -> None:
        self.task = None
        self._set_busy(False)

    def _set_busy(self, busy: bool) -> None:
        for widget in (self.export_button, self.merged, self.include_dataset,
                       self.change_destination):
            widget.setEnabled(not busy)
        self.run_choice.setEnabled(not busy and not self.runner.is_running(EVALUATE))
        self._enable_gguf(not busy)
        self.cancel_button.setVisible(busy)
        self.progress.setVisible(busy)
        self.progress.setValue(0)
        self._update_buttons()

    def _enable_gguf(self, enabled: bool) -> None:
        for name, box in self.gguf.items():
            box.setEnabled(enabled and self.gguf_problems.get(name) is None)
        self.gguf_adapter.setEnabled(enabled and self.gguf_problems.get(ADAPTER_GGUF) is None)

    def _update_buttons(self) -> None:
        idle = self.task is None
        self.open_folder.setEnabled(idle)
        self.save_zip.setEnabled(idle)
        ready, hint = self._ollama_state()
        self.register.setEnabled(idle and ready)
        self.ollama_hint.setText(hint)

    # --- the zip's folder and a new destination -------------------------------------------------

    def show_folder(self) -> None:
        if self.exported is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.exported.zip_path.parent)))

    def choose_destination(self) -> None:
        name, _filter = QFileDialog.getSaveFileName(self, "Write the zip to",
                                                    str(self.destination or ""), ZIP_FILTER)
        if name:
            self.set_destination(Path(name))


def fit_to_width(view: QTextBrowser) -> None:
    """No sideways scrolling in the report: its code blocks (commands, paths, prompts) wrap
    like the text, at a word boundary where there is one, anywhere in a long path."""
    view.setLineWrapMode(QTextBrowser.LineWrapMode.WidgetWidth)
    view.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
    view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    cursor = QTextCursor(view.document())
    block = view.document().begin()
    while block.isValid():
        if block.blockFormat().nonBreakableLines():
            cursor.setPosition(block.position())
            wrapped = block.blockFormat()
            wrapped.setNonBreakableLines(False)
            cursor.setBlockFormat(wrapped)
        block = block.next()


def _size(size: int) -> str:
    return format_bytes(size) if size >= 2**20 else f"{size / 1024:,.0f} KB"
