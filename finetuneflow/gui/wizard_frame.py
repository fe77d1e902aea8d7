"""A project's wizard as the first frame shows it, before the database layer has loaded: the
steps with their check marks, the step it opens at (title and purpose) and a note where the
page's fields come. Qt alone and the quick read: the wizard takes its place once the data layer
is attached (`MainWindow.open_project`)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from finetuneflow.core.steps import STEPS, step_index
from finetuneflow.gui.styles import styled

DONE_MARK = "✓"
NOT_DONE_MARK = "\u2003"  # an em space: the titles stay aligned with and without the mark
STEP_LIST_WIDTH = 170


class StepList(QListWidget):
    """The steps down the side: where you are, and a click to go to another step."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)  # a parent now, so the tab order can include it at once
        self.setObjectName("stepList")
        styled(self)
        for step in STEPS:
            item = QListWidgetItem()
            item.setToolTip(step.purpose)
            self.addItem(item)
        self.mark_completed(frozenset())
        self.setFixedWidth(STEP_LIST_WIDTH)
        self.setFocusPolicy(Qt.FocusPolicy.TabFocus)

    def mark_completed(self, done: frozenset[str]) -> None:
        """A check mark before each step whose result exists (the same facts as the Step
        column of the projects list)."""
        for number, step in enumerate(STEPS, start=1):
            item = self.item(number - 1)
            mark = DONE_MARK if step.key in done else NOT_DONE_MARK
            item.setText(f"{mark} {number}. {step.title}")
            state = "done" if step.key in done else "not done yet"
            item.setToolTip(f"{step.purpose}\n({state})")


class WizardFrame(QWidget):
    def __init__(self, project_name: str, step_key: str, done: frozenset[str]) -> None:
        super().__init__()
        self.setObjectName("wizardFrame")
        step = STEPS[step_index(step_key)]
        self.title = styled(QLabel(step.title, objectName="heading"))
        self.purpose = QLabel(step.purpose, wordWrap=True)
        self.steps = StepList(self)
        self.steps.mark_completed(done)
        self.steps.setCurrentRow(step_index(step_key))
        self.steps.setEnabled(False)  # a click waits for the wizard
        self.note = styled(QLabel(f"Opening {project_name}…", objectName="emptyState"))
        note = QHBoxLayout()
        note.addStretch(1)
        note.addWidget(self.note)
        note.addStretch(1)
        page = QVBoxLayout()
        page.addStretch(1)
        page.addLayout(note)
        page.addStretch(1)
        middle = QHBoxLayout()
        middle.addWidget(self.steps)
        middle.addLayout(page, 1)
        buttons = QHBoxLayout()
        for position, text in enumerate(("← Projects", "< Back", "Next >")):
            if position == 1:
                buttons.addStretch(1)
            buttons.addWidget(QPushButton(text, enabled=False))
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.purpose)
        layout.addLayout(middle, 1)
        layout.addLayout(buttons)
