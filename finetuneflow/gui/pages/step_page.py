"""The base of every wizard page: the step's title, what it does, and a body to fill."""

from __future__ import annotations

from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWizardPage

from finetuneflow.core.steps import Step
from finetuneflow.gui.styles import styled
from finetuneflow.services.context import AppContext
from finetuneflow.services.projects import ProjectSummary
from finetuneflow.services.staleness import StaleNote


class StepPage(QWizardPage):
    """A wizard page for one step. Subclasses add their widgets to `self.body`."""

    def __init__(self, step: Step, context: AppContext, project: ProjectSummary) -> None:
        super().__init__()
        self.step = step
        self.context = context
        self.project_id = project.id
        self.project_name = project.name
        self.setObjectName(f"page_{step.key}")
        self.setTitle(step.title)
        self.setSubTitle(step.purpose)
        self.body = QVBoxLayout(self)
        self.body.setContentsMargins(0, 8, 0, 0)
        self.stale_banner = styled(QFrame(objectName="staleBanner", visible=False))
        self.stale_rows = QVBoxLayout(self.stale_banner)
        self.body.addWidget(self.stale_banner)

    def arrive(self) -> None:
        """The person has arrived on this page (a walk across steps only passes the pages on
        its way): read what only the shown page needs."""

    def add_project_note(self, note: str) -> None:
        """The project's own note (the sample says what its next steps need), on the steps
        it is about."""
        if note:
            self.body.addWidget(styled(QLabel(note, objectName="projectNote", wordWrap=True)))

    def show_stale(self, notes: list[StaleNote]) -> None:
        """Say which results here are older than their inputs, with a button to redo them."""
        while self.stale_rows.count():
            item = self.stale_rows.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        for note in notes:
            row = QHBoxLayout()
            row.addWidget(QLabel(note.message, wordWrap=True), 1)
            action = getattr(self, note.method or "", None)
            if note.action and callable(action):
                button = QPushButton(note.action, objectName=f"redo_{note.method}")
                button.clicked.connect(action)
                row.addWidget(button)
            holder = QFrame()
            holder.setLayout(row)
            self.stale_rows.addWidget(holder)
        self.stale_banner.setVisible(bool(notes))
