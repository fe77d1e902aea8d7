"""The main window: the dashboard, or the wizard of the project that is open."""

from __future__ import annotations

from PySide6.QtWidgets import QMainWindow, QStackedWidget

from finetuneflow import __version__
from finetuneflow.gui.dashboard import Dashboard
from finetuneflow.gui.wizard import ProjectWizard
from finetuneflow.services.context import AppContext
from finetuneflow.services.projects import ProjectService


class MainWindow(QMainWindow):
    def __init__(self, context: AppContext) -> None:
        super().__init__()
        self.context = context
        self.setWindowTitle("FineTuneFlow")
        self.resize(1100, 720)
        self.dashboard = Dashboard(context)
        self.dashboard.open_project.connect(self.open_project)
        self.wizard: ProjectWizard | None = None
        self.stack = QStackedWidget()
        self.stack.addWidget(self.dashboard)
        self.setCentralWidget(self.stack)
        self.statusBar().showMessage(f"FineTuneFlow {__version__} — data in {context.home.root}")

    def open_project(self, ref: str, page: str | None = None) -> ProjectWizard:
        """Show a project's wizard at `page`, or at the step where the person left it."""
        project = ProjectService(self.context).get(ref)
        self.close_project()
        wizard = ProjectWizard(self.context, project)
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

    def show_dashboard(self) -> None:
        self.close_project()
        self.dashboard.refresh()
        self.stack.setCurrentWidget(self.dashboard)
        self.setWindowTitle("FineTuneFlow")
