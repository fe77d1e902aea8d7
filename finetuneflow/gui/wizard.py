"""The eight-step wizard for one project, with a side list of the steps.

Each step's page is built, and its module imported, when the wizard first goes there: a project
opens at its step without building the other seven (the Export page alone loads numpy). Until
then a PendingPage holds the step's place, so Qt's page ids, the titles and the walks between
steps are as with every page built. Once a page is shown, the pending pages ahead of it are built
in idle time, one per turn of the event loop, so a first jump there finds its page ready.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from types import ModuleType

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut, QShowEvent
from PySide6.QtWidgets import QWizard, QWizardPage

from finetuneflow.core.steps import STEPS, Step, completed_steps, step_index
from finetuneflow.gui.focus import chain_tab_order, layout_order
from finetuneflow.gui.pages.step_page import StepPage
from finetuneflow.gui.training_controller import TrainingController
from finetuneflow.gui.wizard_frame import StepList
from finetuneflow.services.context import AppContext
from finetuneflow.services.progress import ProgressService
from finetuneflow.services.projects import ProjectService, ProjectSummary
from finetuneflow.services.staleness import StalenessService

# Each step's page class, as "module.Class" in finetuneflow.gui.pages.
PAGE_CLASSES = {"model": "model_page.ModelPage", "task": "task_page.TaskPage",
                "data": "data_page.DataPage", "preview": "preview_page.PreviewPage",
                "review": "review_page.ReviewPage", "hardware": "hardware_page.HardwarePage",
                "train": "train_page.TrainPage", "export": "export_page.ExportPage"}
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


def build_page(step: Step, context: AppContext, project: ProjectSummary,
               training: TrainingController) -> StepPage:
    module, _dot, name = PAGE_CLASSES[step.key].partition(".")
    page_class: Callable[..., StepPage] = getattr(_page_module(module), name)
    if step.key == "train":
        return page_class(step, context, project, training)
    return page_class(step, context, project)


def import_pages() -> None:
    """Import every page's module: for a pool thread, so a page's first visit only builds it."""
    for path in PAGE_CLASSES.values():
        _page_module(path.partition(".")[0])


def _page_module(name: str) -> ModuleType:
    return import_module(f"finetuneflow.gui.pages.{name}")


class PendingPage(QWizardPage):
    """A step's place in the wizard until its page is built: the step's title and purpose."""

    def __init__(self, step: Step) -> None:
        super().__init__()
        self.step = step
        self.setTitle(step.title)
        self.setSubTitle(step.purpose)


class ProjectWizard(QWizard):
    back_to_projects = Signal()

    def __init__(self, context: AppContext, project: ProjectSummary,
                 training: TrainingController) -> None:
        super().__init__()
        self.setWindowFlags(Qt.WindowType.Widget)  # embedded in the main window, not a dialog
        self.context = context
        self.project = project
        self.training = training
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
        self._entering = False  # entering a page just built (_build_current)
        # The pending pages ahead are built one per turn of the event loop (_ahead fires again
        # after each), from the turn after the one that painted the page arrived at (_settled).
        self._ahead = QTimer(self, singleShot=True, interval=0)
        self._ahead.timeout.connect(self._build_ahead)
        self._settled = QTimer(self, singleShot=True, interval=0)
        self._settled.timeout.connect(self._ahead.start)
        for step in STEPS:
            self.addPage(PendingPage(step))
        self.steps = StepList(self)
        self.setSideWidget(self.steps)
        self.steps.currentRowChanged.connect(self.go_to_index)
        self.currentIdChanged.connect(self._on_page_changed)
        self._add_shortcuts()
        # Built now: restart() shows it, and Qt cannot put a page in the place of the only one
        # in its history (_build_current steps back to do it).
        self._build(0)
        self.currentIdChanged.connect(lambda _id: self.explain_next())

    def _build(self, index: int) -> None:
        """Build the step's page in its PendingPage's place, if it is not built yet."""
        pending = self.page(index)
        if not isinstance(pending, PendingPage):
            return
        page = build_page(STEPS[index], self.context, self.project, self.training)
        self.removePage(index)  # when it is the page shown, Qt steps back to the one before
        pending.deleteLater()
        self.setPage(index, page)
        page.completeChanged.connect(self.explain_next)
        # What made the page complete (a model chosen, examples kept) may finish a step.
        page.completeChanged.connect(self.refresh_progress)
        self._chain_tab_order()

    def _build_ahead(self) -> None:
        """Build the first pending page after the current one, and come back for the next.
        Only pages ahead: those behind sit in Qt's history, where a page cannot be replaced.
        Stops while the wizard is hidden (the projects list or another project is shown)."""
        if not self.isVisible() or self._walking:
            return
        ahead = [index for index in range(self.currentId() + 1, len(STEPS))
                 if isinstance(self.page(index), PendingPage)]
        if ahead:
            self._build(ahead[0])
        if len(ahead) > 1:
            self._ahead.start()

    def showEvent(self, event: QShowEvent) -> None:
        """Shown again (back from the projects list): carry on building the pages ahead."""
        super().showEvent(event)
        self._build_ahead_later()

    def _build_ahead_later(self) -> None:
        """Start building the pages ahead once the page shown has painted; a jump meanwhile
        starts over, so no page is built while the page arrived at is being drawn."""
        self._ahead.stop()
        self._settled.start()

    def _build_current(self) -> None:
        """Build the page the wizard has just gone to, if it was pending: its place is taken
        (which steps back) and the page entered from the step before, as Next enters a page,
        without checking that step again."""
        if not isinstance(self.currentPage(), PendingPage):
            return
        walking, self._walking, self._entering = self._walking, True, True
        try:
            self._build(self.currentId())
            self.next()
        finally:
            self._walking, self._entering = walking, False

    def validateCurrentPage(self) -> bool:
        """Qt's check before Next: the page's own, except when entering a page just built."""
        return self._entering or super().validateCurrentPage()

    def _chain_tab_order(self) -> None:
        """Tab runs through the page, then Back, Next, Finish, Projects and the step list."""
        buttons = [self.button(which) for which in (
            QWizard.WizardButton.BackButton, QWizard.WizardButton.NextButton,
            QWizard.WizardButton.FinishButton, QWizard.WizardButton.CustomButton1)]
        pages = [self.page(page_id) for page_id in self.pageIds()]
        chain_tab_order([*(widget for page in pages if not isinstance(page, PendingPage)
                           for widget in layout_order(page)), *buttons, self.steps])

    def _add_shortcuts(self) -> None:
        """Ctrl+1…8 jump to a step (Alt+B, Alt+N and Alt+P are the buttons' own mnemonics)."""
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
        subtitle = f"{purpose}\n⚠ {reason}" if reason else purpose
        if page.subTitle() != subtitle:  # setting it lays the wizard out again, even unchanged
            page.setSubTitle(subtitle)
        self.button(QWizard.WizardButton.NextButton).setToolTip(reason)

    def start_at(self, step_key: str) -> None:
        """Show the step, walking from the first as Qt's wizard starts there."""
        self._walking = True  # the first step, shown by restart(), is passed on the way
        try:
            self.restart()
        finally:
            self._walking = False
        self._walk(step_index(step_key))
        self._arrive(self.currentId())
        self.explain_next()

    def go_to_index(self, index: int) -> None:
        """Walk to a step. Only the page where the walk ends is recorded and checked for stale
        results."""
        start = self.currentId()
        self._walk(index)
        if self.currentId() != start:
            self._arrive(self.currentId())
        self._sync_step_list()
        self.explain_next()

    def _walk(self, index: int) -> None:
        """With next()/back(): each built page's own checks still apply on the way (a pending
        page has none: nothing was entered there). The page the walk ends on is built."""
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
        self._build_current()

    def current_step_key(self) -> str:
        return STEPS[max(self.currentId(), 0)].key

    def _on_page_changed(self, page_id: int) -> None:
        """Next, Back, or a call to next() or back()."""
        if page_id >= 0 and not self._walking:
            self._build_current()
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
        self._build_ahead_later()

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
