"""The main window: the dashboard, or the wizard of the project that is open."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QMainWindow, QMessageBox, QStackedWidget

from finetuneflow import __version__
from finetuneflow.gui.dashboard import Dashboard
from finetuneflow.gui.training_controller import TrainingController
from finetuneflow.services.context import AppContext
from finetuneflow.services.projects import ProjectService
from finetuneflow.services.trainer_process import STOP_GRACE_SECONDS

if TYPE_CHECKING:
    from finetuneflow.gui.wizard import ProjectWizard


class MainWindow(QMainWindow):
    def __init__(self, context: AppContext) -> None:
        super().__init__()
        self.context = context
        self.setWindowTitle("FineTuneFlow")
        self.resize(1100, 720)
        self.dashboard = Dashboard(context)
        self.dashboard.open_project.connect(self.open_project)
        self.wizard: ProjectWizard | None = None  # the open project's wizard
        self.training = TrainingController(context)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.dashboard)
        self.setCentralWidget(self.stack)
        self.statusBar().showMessage(f"FineTuneFlow {__version__} — data in {context.home.root}")

    def open_project(self, ref: str, page: str | None = None) -> ProjectWizard:
        """Show a project's wizard at `page`, or at the step where the person left it."""
        project = ProjectService(self.context).get(ref)
        self.close_project()
        # Imported here: the pages pull in the chart library and the LLM client, which the
        # dashboard does not need, so the window appears sooner.
        from finetuneflow.gui.wizard import ProjectWizard

        wizard = ProjectWizard(self.context, project, self.training)
        wizard.back_to_projects.connect(self.show_dashboard)
        self.stack.addWidget(wizard)
        self.stack.setCurrentWidget(wizard)
        wizard.start_at(page or project.current_step)
        self.wizard = wizard
        self.setWindowTitle(f"{project.name} — FineTuneFlow")
        return wizard

    def close_project(self) -> None:
        if self.wizard is not None:
            self.stack.removeWidget(self.wizard)
            self.wizard.deleteLater()
            self.wizard = None

    def closeEvent(self, event: QCloseEvent) -> None:
        """A running training is stopped gracefully (with a checkpoint) before the app closes."""
        if self.training.running:
            answer = QMessageBox.question(
                self, "Training is running",
                "Stop the training and close? It finishes the current step and saves a "
                "checkpoint, so you can resume it later.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel)
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
            self.training.stop()
            self.statusBar().showMessage("Saving a checkpoint before closing…")
            self.training.wait_for_end(int(STOP_GRACE_SECONDS * 1000))
        event.accept()

    def show_dashboard(self) -> None:
        self.close_project()
        self.dashboard.refresh()
        self.stack.setCurrentWidget(self.dashboard)
        self.setWindowTitle("FineTuneFlow")
