"""The dashboard's banner for project folders the database does not list, with Restore and
Dismiss. Built once the database is attached: the projects list shows before it."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout

from finetuneflow.gui.errors import show_error
from finetuneflow.gui.styles import styled
from finetuneflow.gui.workers import TaskRunner

if TYPE_CHECKING:
    from finetuneflow.services.context import AppContext
    from finetuneflow.services.doctor import OrphanFolder
    from finetuneflow.services.restore import RestoreResult


def describe_orphans(orphans: list[OrphanFolder], shown: int = 5) -> str:
    """The banner's rich text: how many folders, the first few named (escaped: a name is
    the person's text, not markup)."""
    names = ", ".join(html.escape(f"“{orphan.name}”" if orphan.name else orphan.id)
                      for orphan in orphans[:shown])
    if len(orphans) > shown:
        names += f" and {len(orphans) - shown} more"
    folders = "project folder is" if len(orphans) == 1 else "project folders are"
    return (f"<b>{len(orphans)} {folders} not in this list</b> ({names}): the database does "
            "not list them, perhaps because it was deleted or replaced. Restore brings back "
            "their settings, documents, dataset and finished training runs.")


def describe_restored(results: list[RestoreResult], failures: list[str]) -> str:
    """What a restore brought back, and what it could not."""
    lines = [result.describe() for result in results] + [
        f"Could not restore: {failure}" for failure in failures]
    return "\n".join(lines) or "Nothing was restored."


class OrphanBanner(QFrame):
    """Project folders the database does not list, with Restore and Dismiss."""

    finished = Signal()  # a restore ended (the list has changed)

    def __init__(self, tasks: TaskRunner) -> None:
        super().__init__(objectName="orphanBanner", visible=False)
        styled(self)
        self.tasks = tasks
        self.context: AppContext | None = None
        self.text = QLabel(objectName="orphanText", wordWrap=True)
        self.progress = QProgressBar(objectName="restoreProgress", visible=False)
        self.restore_button = QPushButton("Restore", objectName="restoreOrphans")
        self.dismiss_button = QPushButton("Dismiss", objectName="dismissOrphans")
        self.restore_button.clicked.connect(self.restore)
        self.dismiss_button.clicked.connect(self.hide)
        row = QHBoxLayout()
        row.addWidget(self.text, 1)
        row.addWidget(self.restore_button)
        row.addWidget(self.dismiss_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.addLayout(row)
        layout.addWidget(self.progress)

    def check(self, context: AppContext, known: set[str]) -> None:
        """Show the banner when folders exist that are not among the known projects."""
        from finetuneflow.services.doctor import orphan_folders

        self.context = context
        orphans = orphan_folders(context.home, known)
        self.text.setText(describe_orphans(orphans))
        self.restore_button.show()
        self.setVisible(bool(orphans))

    def restore(self) -> None:
        from finetuneflow.services.restore import RestoreService

        context = self.context
        assert context is not None, "check() first"
        service = RestoreService(context)
        self.restore_button.setEnabled(False)
        self.progress.setValue(0)
        self.progress.show()
        self.tasks.start(
            "restore", lambda progress, cancel: service.restore_all(progress, cancel),
            on_progress=lambda fraction, _text: self.progress.setValue(int(fraction * 100)),
            on_success=self._restored,
            on_failure=lambda error: show_error(self, "Restore projects", error,
                                                context.log_file),
            on_finished=self._finished, status_text="Restoring projects")

    def _restored(self, outcome: tuple[list[RestoreResult], list[str]]) -> None:
        self.text.setText(html.escape(describe_restored(*outcome), quote=False)
                          .replace("\n", "<br>"))  # rich text, as the label is
        self.restore_button.hide()

    def _finished(self) -> None:
        self.progress.hide()
        self.restore_button.setEnabled(True)
        self.finished.emit()

