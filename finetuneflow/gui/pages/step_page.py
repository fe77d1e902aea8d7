"""The base of every wizard page: the step's title, what it does, and a body to fill."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QVBoxLayout, QWizardPage

from finetuneflow.core.steps import Step


class StepPage(QWizardPage):
    """A wizard page for one step. Subclasses add their widgets to `self.body`."""

    def __init__(self, step: Step) -> None:
        super().__init__()
        self.step = step
        self.setObjectName(f"page_{step.key}")
        self.setTitle(step.title)
        self.setSubTitle(step.purpose)
        self.body = QVBoxLayout(self)
        self.body.setContentsMargins(0, 8, 0, 0)


class PlannedStepPage(StepPage):
    """A step whose controls are not built yet: it says so plainly instead of showing nothing."""

    def __init__(self, step: Step) -> None:
        super().__init__(step)
        note = QLabel("This step is not available in this version of FineTuneFlow yet. "
                      "You can move on with Next; nothing you do here is lost.")
        note.setWordWrap(True)
        note.setObjectName("plannedNote")
        self.body.addWidget(note)
        self.body.addStretch(1)
