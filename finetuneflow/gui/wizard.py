"""The eight-step wizard for one project, with a side list of the steps."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QWizard, QWizardPage

from finetuneflow.core.steps import STEPS, step_index
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
from finetuneflow.services.context import AppContext
from finetuneflow.services.projects import ProjectService, ProjectSummary
from finetuneflow.services.staleness import StalenessService

PAGE_CLASSES: dict[str, type] = {"model": ModelPage, "task": TaskPage, "data": DataPage,
                                 "preview": PreviewPage, "review": ReviewPage,
                                 "hardware": HardwarePage, "export": ExportPage}


def build_pages(context: AppContext, project: ProjectSummary,
                training: TrainingController) -> list[QWizardPage]:
    """One page per step, in the steps' order."""
    return [TrainPage(step, context, project, training) if step.key == "train"
            else PAGE_CLASSES[step.key](step, context, project) for step in STEPS]


class StepList(QListWidget):
    """The steps down the side: where you are, and a click to go to another step."""

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("stepList")
        for number, step in enumerate(STEPS, start=1):
            item = QListWidgetItem(f"{number}. {step.title}")
            item.setToolTip(step.purpose)
            self.addItem(item)
        self.setFixedWidth(170)
        self.setFocusPolicy(Qt.FocusPolicy.TabFocus)


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
        self.setButtonText(QWizard.WizardButton.CustomButton1, "← Projects")
        self.setOption(QWizard.WizardOption.NoCancelButton, True)
        self.setButtonLayout([QWizard.WizardButton.CustomButton1, QWizard.WizardButton.Stretch,
                              QWizard.WizardButton.BackButton, QWizard.WizardButton.NextButton,
                              QWizard.WizardButton.FinishButton])
        self.customButtonClicked.connect(lambda _which: self.back_to_projects.emit())
        # Finish on the last step would hide the embedded wizard: it leads back to the projects.
        self.accepted.connect(self.back_to_projects.emit)
        for page in build_pages(context, project, training):
            self.addPage(page)
        self.steps = StepList()
        self.setSideWidget(self.steps)
        self.steps.currentRowChanged.connect(self.go_to_index)
        self.currentIdChanged.connect(self._on_page_changed)

    def start_at(self, step_key: str) -> None:
        self.restart()
        self.go_to_index(step_index(step_key))

    def go_to_index(self, index: int) -> None:
        """Walk to a step with next()/back(): each page's own checks still apply on the way."""
        while self.currentId() < index:
            before = self.currentId()
            self.next()
            if self.currentId() == before:  # a page refused to move on
                break
        while self.currentId() > index:
            self.back()
        self._sync_step_list()

    def current_step_key(self) -> str:
        return STEPS[max(self.currentId(), 0)].key

    def _on_page_changed(self, page_id: int) -> None:
        if page_id < 0:
            return
        self._sync_step_list()
        ProjectService(self.context).set_step(self.project.id, STEPS[page_id].key)
        self.show_stale_results()

    def show_stale_results(self) -> None:
        page = self.currentPage()
        if isinstance(page, StepPage):
            notes = StalenessService(self.context).notes(self.project.id)
            page.show_stale([note for note in notes if note.step == page.step.key])

    def _sync_step_list(self) -> None:
        self.steps.blockSignals(True)
        self.steps.setCurrentRow(max(self.currentId(), 0))
        self.steps.blockSignals(False)
