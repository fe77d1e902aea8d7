"""Step 4 — Preview: connect the LLM, write a few examples, and read them next to their text."""

from __future__ import annotations

import html
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from finetuneflow.core.steps import Step
from finetuneflow.gui.colours import on_theme_change, set_tone, tone
from finetuneflow.gui.errors import show_error
from finetuneflow.gui.llm_settings_box import LLMSettingsBox, run_failure_text
from finetuneflow.gui.pages.step_page import StepPage
from finetuneflow.gui.workers import TaskRunner
from finetuneflow.services.context import AppContext
from finetuneflow.services.errors import UserError
from finetuneflow.services.generation import GenerationResult, GenerationService
from finetuneflow.services.projects import ProjectSummary
from finetuneflow.services.review import PreviewGroup, ReviewService
from finetuneflow.services.samples import SampleService

EMPTY_HINT = ("Set up the LLM above, then “Generate preview”: a few passages from your documents, "
              "each with the examples the LLM writes from it. Change the task (Back) and "
              "generate again until the examples look right.")


class PreviewPage(StepPage):
    def __init__(self, step: Step, context: AppContext, project: ProjectSummary) -> None:
        super().__init__(step, context, project)
        self.generation = GenerationService(context)
        self.review = ReviewService(context)
        self.runner = TaskRunner(self)
        self.add_project_note(SampleService(context).note(project.id) or project.note)
        self.llm = LLMSettingsBox(context, self.generation.llm_settings(project.id))
        self.body.addWidget(self.llm)
        self.body.addLayout(self._build_run_row())
        self.body.addWidget(self._build_results(), 1)
        self.show_groups(self.review.preview_groups(project.id))

    def _build_run_row(self) -> QHBoxLayout:
        self.generate = QPushButton("Generate preview", objectName="generatePreview")
        self.generate.setDefault(False)
        self.cancel = QPushButton("Cancel", objectName="cancelPreview", visible=False)
        self.progress = QProgressBar(visible=False, maximum=1000)
        self.status = QLabel(objectName="previewStatus", wordWrap=True)
        self.generate.clicked.connect(self.start_preview)
        self.cancel.clicked.connect(lambda: self.runner.cancel("preview"))
        row = QHBoxLayout()
        for widget in (self.generate, self.cancel, self.progress):
            row.addWidget(widget)
        row.addWidget(self.status, 1)
        return row

    def _build_results(self) -> QSplitter:
        self.chunks = QListWidget(objectName="previewChunks")
        self.chunk_text = QPlainTextEdit(objectName="previewChunkText", readOnly=True)
        self.examples = QTextBrowser(objectName="previewExamples")
        self.empty = QLabel(EMPTY_HINT, objectName="emptyHint", wordWrap=True,
                            alignment=Qt.AlignmentFlag.AlignCenter)
        self.chunks.currentRowChanged.connect(self._show_group)
        on_theme_change(self._show_current_group)  # a rejected example's badge has a tone
        # One passage, two short lines (where, how many kept): no wrapping, no sideways
        # scrolling; a long file name is elided in the middle, whole in the tooltip.
        self.chunks.setWordWrap(False)
        self.chunks.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.chunks.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.chunks.setSpacing(2)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        for title, widget in (("Passages", self.chunks), ("The passage", self.chunk_text),
                              ("Examples written from it", self.examples)):
            splitter.addWidget(_titled(title, widget))
        splitter.setSizes([220, 420, 460])
        self.body.addWidget(self.empty)
        return splitter

    # --- running --------------------------------------------------------------------------------

    def save_llm_settings(self) -> bool:
        try:
            self.generation.set_llm_settings(self.project_id, self.llm.settings())
        except UserError as error:
            self.status.setText(str(error))
            return False
        return True

    def start_preview(self) -> None:
        if self.runner.is_running("preview") or not self.save_llm_settings():
            return
        self._set_running(True)
        set_tone(self.status, None)
        self.status.setText("Asking the LLM for examples…")
        self.runner.start(
            "preview", lambda progress, cancel: self.generation.run(
                self.project_id, preview=True, progress=progress, cancel=cancel),
            on_progress=self._on_progress, on_success=self._done,
            on_cancel=lambda: self.status.setText("Stopped. The examples written so far are "
                                                  "shown."),
            on_failure=self._failed, on_finished=self._finished)

    def _on_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(fraction * 1000))
        self.status.setText(message)

    def _done(self, result: GenerationResult) -> None:
        counts = (f"{result.accepted} examples kept, {result.rejected} rejected, from "
                  f"{result.chunks_done} passages")
        failed = f" ({result.failures}: see the log)" if result.failures else ""
        if result.structured_notice:
            failed += f". {result.structured_notice.removesuffix('.')}"
        if result.accepted:
            self.status.setText(f"{counts}{failed}. Happy with them? Go on to Review.")
        else:  # nothing to be happy with: say so, and what to change
            set_tone(self.status, "error")
            self.status.setText(f"{counts}{failed}. No example was kept: change the task "
                                "(Back) or the LLM, then generate again.")

    def _failed(self, error: BaseException) -> None:
        set_tone(self.status, "error")
        self.status.setText("The preview failed: "
                            + run_failure_text(error, self.context.log_file))
        show_error(self, "Preview", error, self.context.log_file)

    def _finished(self) -> None:
        self._set_running(False)
        self.show_groups(self.review.preview_groups(self.project_id))

    def _set_running(self, running: bool) -> None:
        self.generate.setEnabled(not running)
        self.cancel.setVisible(running)
        self.progress.setVisible(running)
        self.progress.setValue(0)

    # --- showing --------------------------------------------------------------------------------

    def show_groups(self, groups: list[PreviewGroup]) -> None:
        self.groups = groups
        self.chunks.clear()
        for group in groups:
            kept = sum(e["status"] != "rejected" for e in group.examples)
            item = QListWidgetItem(_passage_label(group.source, kept, len(group.examples)))
            item.setToolTip(group.source)
            self.chunks.addItem(item)
        self.empty.setVisible(not groups)
        if groups:
            self.chunks.setCurrentRow(0)
        else:
            self.chunk_text.clear()
            self.examples.clear()

    def _show_group(self, row: int) -> None:
        if not 0 <= row < len(self.groups):
            return
        group = self.groups[row]
        self.chunk_text.setPlainText(group.chunk_text)
        self.examples.setHtml("".join(_example_html(e) for e in group.examples))

    def _show_current_group(self) -> None:
        self._show_group(self.chunks.currentRow())

    def initializePage(self) -> None:
        # Settings may have changed since the page was built (the command line, Settings…):
        # show what is stored, so moving on never writes stale values back.
        self.llm.set_settings(self.generation.llm_settings(self.project_id))

    def validatePage(self) -> bool:
        self.save_llm_settings()  # keep what was typed, even without a preview
        return True


def _passage_label(source: str, kept: int, written: int) -> str:
    """"file name" over "chunk 3 · 2 of 3 kept": each line short enough to read at a glance."""
    name, _sep, chunk = source.rpartition(" · ")
    if not name:
        return f"{source}\n{kept} of {written} kept"
    return f"{name}\n{chunk} · {kept} of {written} kept"


def _titled(title: str, widget: QWidget) -> QWidget:
    box = QWidget()
    layout = QVBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(QLabel(f"<b>{title}</b>"))
    layout.addWidget(widget, 1)
    return box


def _example_html(example: dict[str, Any]) -> str:
    turns = {m["role"]: m["content"] for m in example["messages"]}
    if example["status"] == "rejected":
        badge = (f"<p style='color:{tone('error')}'><b>Rejected:</b> "
                 f"{html.escape(example['reject_reason'] or '')}</p>")
    else:
        badge = ""
    user = html.escape(turns.get("user", ""))
    reply = html.escape(turns.get("assistant", "")).replace("\n", "<br>")
    tokens = f" · {example['tokens']} tokens" if example.get("tokens") else ""
    return (f"<div style='margin-bottom:12px'>{badge}<p><b>Q:</b> {user}</p>"
            f"<p><b>A:</b> {reply}</p><p style='color:gray'>{example['status']}{tokens}</p>"
            f"</div><hr>")
