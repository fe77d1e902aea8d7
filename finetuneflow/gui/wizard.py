"""The eight-step wizard for one project, with a side list of the steps."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QWizard, QWizardPage

from finetuneflow.core.steps import STEPS, completed_steps, step_index
from finetuneflow.gui.focus import chain_tab_order, layout_order
from finetuneflow.gui.pages.data_page import DataPage
from finetuneflow.gui.pages.export_page import ExportPage
from finetuneflow.gui.pages.hardware_page import HardwarePage
from finetuneflow.gui.pages.model_page import ModelPage
from finetuneflow.gui.pages.preview_page import PreviewPage
from finetuneflow.gui.pages.review_page import ReviewPage
from finetuneflow.gui.pages.step_page import StepPage
from finetuneflow.gui.pages.task_page import TaskPage
from finetuneflow.gui.pages.train_page import TrainPage
from finetuneflow.gui.training_controller import TrainingController
from finetuneflow.gui.wizard_frame import StepList
from finetuneflow.services.context import AppContext
from finetuneflow.services.progress import ProgressService
from finetuneflow.services.projects import ProjectService, ProjectSummary
from finetuneflow.services.staleness import StalenessService

PAGE_CLASSES: dict[str, type] = {"model": ModelPage, "task": TaskPage, "data": DataPage,
                                 "preview": PreviewPage, "review": ReviewPage,
                                 "hardware": HardwarePage, "export": ExportPage}
# Why Next is off, per step, when the page holds it back (its isComplete() is False). A page
# may say it better with a `next_blocked_reason()` method of its own.
NEXT_BLOCKED = {
    "model": "Next is off until a base model is chosen: pick one in the list, type a Hub id "
             "or choose a folder.",
    "task": "Next is off until the task is complete.",
    "data": "Next is off until there is something to train on: add a document or import a "
            "dataset.",
    "preview": "Next is off until the preview is done.",
    "review": "Next is off until at least one example is kept: generate the dataset, import "
              "one, or Keep a rejected example.",
    "hardware": "Next is off until this computer has been checked and a training plan is "
                "shown.",
    "train": "Next is off until a training run has finished: start one (or resume the last).",
}


def build_pages(context: AppContext, project: ProjectSummary,
                training: TrainingController) -> list[QWizardPage]:
    """One page per step, in the steps' order."""
    return [TrainPage(step, context, project, training) if step.key == "train"
            else PAGE_CLASSES[step.key](step, context, project) for step in STEPS]


class ProjectWizard(QWizard):
    back_to_projects = Signal()

    def __init__(self, context: AppContext, project: ProjectSummary,
                 training: TrainingController) -> None:
        super().__init__()
        self.setWindowFlags(Qt.WindowType.Widget)  # embedded in the main window, not a dialog
        self.context = context
        self.project = project
        self.setWizardStyle(QWizard.WizardStyle.ModernStyle)
        self.setOption(QWizard.WizardOption.HaveCustomButton1, True)
        self.setButtonText(QWizard.WizardButton.CustomButton1, "← &Projects")
        self.setOption(QWizard.WizardOption.NoCancelButton, True)
        self.setButtonLayout([QWizard.WizardButton.CustomButton1, QWizard.WizardButton.Stretch,
                              QWizard.WizardButton.BackButton, QWizard.WizardButton.NextButton,
                              QWizard.WizardButton.FinishButton])
        self.customButtonClicked.connect(lambda _which: self.back_to_projects.emit())
        # Finish on the last step would hide the embedded wizard: it leads back to the projects.
        self.accepted.connect(self.back_to_projects.emit)
        self._walking = False  # during go_to_index: the pages passed on the way are not visits
        pages = build_pages(context, project, training)
        for page in pages:
            self.addPage(page)
        self.steps = StepList(self)
        self.setSideWidget(self.steps)
        self.steps.currentRowChanged.connect(self.go_to_index)
        self.currentIdChanged.connect(self._on_page_changed)
        self._add_keyboard_navigation(pages)
        for page in pages:
            page.completeChanged.connect(self.explain_next)
            # What made the page complete (a model chosen, examples kept) may finish a step.
            page.completeChanged.connect(self.refresh_progress)
        self.currentIdChanged.connect(lambda _id: self.explain_next())

    def _add_keyboard_navigation(self, pages: list[QWizardPage]) -> None:
        """Tab runs through the page, then Back, Next, Finish, Projects and the step list;
        Ctrl+1…8 jump to a step (Alt+B, Alt+N and Alt+P are the buttons' own mnemonics)."""
        buttons = [self.button(which) for which in (
            QWizard.WizardButton.BackButton, QWizard.WizardButton.NextButton,
            QWizard.WizardButton.FinishButton, QWizard.WizardButton.CustomButton1)]
        chain_tab_order([*(w for page in pages for w in layout_order(page)), *buttons,
                         self.steps])
        for index in range(len(STEPS)):
            shortcut = QShortcut(QKeySequence(f"Ctrl+{index + 1}"), self)
            shortcut.setContext(Qt.ShortcutContext.WindowShortcut)  # only a shown wizard's
            shortcut.activated.connect(lambda index=index: self.go_to_index(index))

    def refresh_progress(self) -> None:
        """Mark the steps whose result exists (read again on every page change)."""
        facts = ProgressService(self.context).of(self.project.id)
        self.steps.mark_completed(completed_steps(facts))

    def next_blocked_reason(self) -> str:
        """Why Next is off on the current page; "" when it is on (or there is no Next)."""
        page = self.currentPage()
        if page is None or self.currentId() >= len(STEPS) - 1 or page.isComplete():
            return ""
        own = getattr(page, "next_blocked_reason", None)
        return (own() if callable(own) else "") or NEXT_BLOCKED[STEPS[self.currentId()].key]

    def explain_next(self) -> None:
        """Say why Next is off, under the step's purpose and on the button itself (for the
        page a walk ends on: the pages it passes are not shown)."""
        page = self.currentPage()
        if page is None or self._walking:
            return
        reason = self.next_blocked_reason()
        purpose = STEPS[self.currentId()].purpose
        page.setSubTitle(f"{purpose}\n⚠ {reason}" if reason else purpose)
        self.button(QWizard.WizardButton.NextButton).setToolTip(reason)

    def start_at(self, step_key: str) -> None:
        self.refresh_progress()
        self.restart()
        self.go_to_index(step_index(step_key))

    def go_to_index(self, index: int) -> None:
        """Walk to a step with next()/back(): each page's own checks still apply on the way.
        Only the page where the walk ends is recorded and checked for stale results."""
        start = self.currentId()
        self._walking = True
        try:
            while self.currentId() < index:
                before = self.currentId()
                self.next()
                if self.currentId() == before:  # a page refused to move on
                    break
            while self.currentId() > index:
                self.back()
        finally:
            self._walking = False
        if self.currentId() != start:
            self._arrive(self.currentId())
        self._sync_step_list()
        self.explain_next()

    def current_step_key(self) -> str:
        return STEPS[max(self.currentId(), 0)].key

    def _on_page_changed(self, page_id: int) -> None:
        if page_id >= 0 and not self._walking:
            self._arrive(page_id)

    def _arrive(self, page_id: int) -> None:
        self._sync_step_list()
        self.refresh_progress()
        ProjectService(self.context).set_step(self.project.id, STEPS[page_id].key)
        page = self.currentPage()
        if isinstance(page, StepPage):
            page.arrive()
        self.show_stale_results()
        self._focus_first_field()

    def _focus_first_field(self) -> None:
        """Keyboard users land in the new page, not on a button of the one they left."""
        for widget in layout_order(self.currentPage()):
            if widget.isVisibleTo(self) and widget.isEnabled():
                widget.setFocus(Qt.FocusReason.OtherFocusReason)
                return

    def show_stale_results(self) -> None:
        page = self.currentPage()
        if isinstance(page, StepPage):
            notes = StalenessService(self.context).notes(self.project.id)
            page.show_stale([note for note in notes if note.step == page.step.key])

    def _sync_step_list(self) -> None:
        self.steps.blockSignals(True)
        self.steps.setCurrentRow(max(self.currentId(), 0))
        self.steps.blockSignals(False)
