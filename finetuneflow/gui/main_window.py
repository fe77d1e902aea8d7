"""The main window: the dashboard, or the wizard of the project that is open."""

from __future__ import annotations

import gc
import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import QThreadPool, QTimer
from PySide6.QtWidgets import QMainWindow, QStackedWidget, QVBoxLayout, QWidget

from finetuneflow import __version__
from finetuneflow.gui.dashboard_frame import DashboardPlaceholder
from finetuneflow.gui.window_state import restore_geometry, save_geometry
from finetuneflow.gui.workers import TaskRunner
from finetuneflow.services.data_folder import Home

# The window's frame shows before the database opens: what needs the database (SQLAlchemy, the
# services, the dashboard) is imported when a context is attached. So are the Qt classes the
# frame does not use: the first use of each builds its enums (QCloseEvent's alone, ~3 ms).
if TYPE_CHECKING:
    from PySide6.QtGui import QCloseEvent

    from finetuneflow.gui.dashboard import Dashboard
    from finetuneflow.gui.resume_banner import ResumeBanner
    from finetuneflow.gui.training_controller import TrainingController
    from finetuneflow.gui.wizard import ProjectWizard
    from finetuneflow.gui.wizard_frame import WizardFrame
    from finetuneflow.services.context import AppContext
    from finetuneflow.services.jobs import JobInfo


log = logging.getLogger(__name__)
PRELOAD_DELAY_MS = 1500  # after the dashboard has shown and settled

# Which step resumes each kind of job, and the page method that does it.
# Closing during a run on a machine: the follow ends at once (ssh killed); its job is then
# written as interrupted, which takes a moment.
DETACH_WAIT_MS = 10_000
RESUME_STEPS = {"preview": "preview", "generate": "review", "train": "train", "export": "export",
                "ingest": "data"}
# Adding files has no action: the person adds them again (finished ones are recognised).
RESUME_ACTIONS = {"preview": "start_preview", "generate": "start_generation", "train": "resume",
                  "export": "start_export"}


def preload() -> None:
    """For a pool thread: a first generation's one-off work (services/generation), the
    wizard's pages and the charts' library (0.4–0.6 s to import), done ahead, so neither a
    run's start nor a page's first visit holds up the window."""
    try:
        from finetuneflow.gui.wizard import import_pages
        from finetuneflow.services.generation import preload as preload_generation

        preload_generation()
        import_pages()
        import pyqtgraph  # noqa: F401  # imported once; the chart's first build finds it loaded
    except Exception:  # only a head start: the run does the same work itself if this failed
        log.warning("Preloading failed", exc_info=True)
    # What is loaded by now (modules, classes, the data layer) lives as long as the app: kept
    # out of the collector's full passes, each of which otherwise walks it all again, a pause
    # of about 0.1 s that lands on whatever the person does next. Once per process: a later
    # window's freeze would also keep for good whatever garbage waits for collection then.
    if gc.get_freeze_count() == 0:
        gc.freeze()


class MainWindow(QMainWindow):
    """Built as a frame (`MainWindow(home=...)`), shown, then filled by `attach(context)`;
    `MainWindow(context)` does both at once."""

    context: AppContext
    dashboard: Dashboard
    training: TrainingController
    resume_banner: ResumeBanner

    def __init__(self, context: AppContext | None = None, home: Home | None = None,
                 project: str | None = None, page: str | None = None) -> None:
        super().__init__()
        self.setWindowTitle("FineTuneFlow")
        self.resize(1100, 720)
        home = context.home if context else home or Home.default()
        restore_geometry(self, home)
        self.wizard: ProjectWizard | None = None  # the open project's wizard
        self.wizards: dict[str, ProjectWizard] = {}  # by project: the open one, and busy ones
        self.stack = QStackedWidget()
        self.placeholder: QWidget | None = None
        # The project the window opens at (`gui --project`), drawn from the quick read until
        # its wizard is built: it stays in front of the dashboard until then.
        self.project_frame = self._early_wizard(home, project, page) if project else None
        if context is None:  # the frame: the list read without the database layer, if it can be
            # (behind a project's frame, the list is not seen: it waits for the database)
            self.placeholder = (DashboardPlaceholder() if self.project_frame
                                else self._early_dashboard(home))
            self.stack.addWidget(self.placeholder)
        if self.project_frame is not None:
            self.stack.addWidget(self.project_frame)
            self.stack.setCurrentWidget(self.project_frame)
        central = QWidget()
        self.column = QVBoxLayout(central)
        self.column.setContentsMargins(0, 0, 0, 0)
        self.column.setSpacing(0)
        self.column.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        self.statusBar()  # in the frame already, so nothing moves when the window is filled
        if context is not None:
            self.attach(context)

    @staticmethod
    def _early_dashboard(home: Home) -> QWidget:
        """The projects list read straight from the file (no SQLAlchemy), its actions waiting
        for `attach`; or, when there is none to show, a heading and 'Opening your projects…'."""
        from finetuneflow.services.data_folder import progress_at_start, projects_at_start

        early_list = projects_at_start(home)
        if not early_list:  # "No projects yet" waits for the database: it offers actions
            return DashboardPlaceholder()
        from finetuneflow.gui.dashboard import Dashboard

        return Dashboard(early_list=early_list, early_progress=progress_at_start(home))

    def _early_wizard(self, home: Home, ref: str, page: str | None) -> WizardFrame | None:
        """The project's wizard as far as the quick read shows it; None when it cannot tell
        which project `ref` is (the dashboard's frame shows, and the full open says why)."""
        from finetuneflow.core.steps import STEP_KEYS, completed_steps
        from finetuneflow.gui.wizard_frame import WizardFrame
        from finetuneflow.services.data_folder import progress_at_start, project_at_start

        project = project_at_start(home, ref)
        step = page or (project.current_step if project else "")
        if project is None or step not in STEP_KEYS:
            return None
        facts = progress_at_start(home).get(project.id)
        self.setWindowTitle(f"{project.name} — FineTuneFlow")
        return WizardFrame(project.name, step,
                           completed_steps(facts) if facts else frozenset())

    def attach(self, context: AppContext) -> None:
        """Fill the frame: the working dashboard, the banner, the status bar."""
        from finetuneflow.gui.dashboard import Dashboard
        from finetuneflow.gui.job_status import JobStatus
        from finetuneflow.gui.resume_banner import ResumeBanner
        from finetuneflow.gui.training_controller import TrainingController

        self.context = context
        if isinstance(self.placeholder, Dashboard):  # the early list: the same widget goes on
            self.dashboard = self.placeholder
            self.dashboard.attach(context)
        else:
            self.dashboard = Dashboard(context)
            self.stack.insertWidget(0, self.dashboard)
            if self.project_frame is None:
                self.stack.setCurrentWidget(self.dashboard)
            if self.placeholder is not None:
                self.stack.removeWidget(self.placeholder)
                self.placeholder.deleteLater()
        self.placeholder = None
        self.dashboard.open_project.connect(self.open_project)
        self.training = TrainingController(context)
        self.resume_banner = ResumeBanner(context)
        self.resume_banner.resume_requested.connect(self.resume_job)
        self.column.insertWidget(0, self.resume_banner)
        self.show_home()
        self.dashboard.home_changed.connect(self.show_home)
        self.statusBar().addPermanentWidget(JobStatus(context))
        QTimer.singleShot(PRELOAD_DELAY_MS, lambda: QThreadPool.globalInstance().start(
            preload))

    def show_home(self) -> None:
        self.statusBar().showMessage(
            f"FineTuneFlow {__version__} — data in {self.context.home.root}")

    def open_project(self, ref: str, page: str | None = None) -> ProjectWizard:
        """Show a project's wizard at `page`, or at the step where the person left it.

        A project's wizard lives until it has no work running, so ingestion, generation and
        export go on (and their pages keep listening) while the person is elsewhere."""
        from finetuneflow.services.projects import ProjectService

        project = ProjectService(self.context).get(ref)
        wizard = self.wizards.get(project.id)
        if wizard is None:
            # Imported here: the pages pull in the chart library and the LLM client, which the
            # dashboard does not need, so the window appears sooner.
            from finetuneflow.gui.wizard import ProjectWizard

            wizard = ProjectWizard(self.context, project, self.training)
            wizard.back_to_projects.connect(self.show_dashboard)
            self.stack.addWidget(wizard)
            self.wizards[project.id] = wizard
            wizard.start_at(page or project.current_step)
        elif page:
            wizard.start_at(page)
        self.stack.setCurrentWidget(wizard)
        self.wizard = wizard
        self.setWindowTitle(f"{project.name} — FineTuneFlow")
        self._drop_project_frame()
        self._release_idle_wizards()
        return wizard

    def _drop_project_frame(self) -> None:
        if self.project_frame is not None:
            self.stack.removeWidget(self.project_frame)
            self.project_frame.deleteLater()
            self.project_frame = None

    def close_project(self) -> None:
        self.wizard = None
        self._release_idle_wizards()

    def _release_idle_wizards(self) -> None:
        for project_id, wizard in list(self.wizards.items()):
            if wizard is self.wizard or any(r.busy() for r in wizard.findChildren(TaskRunner)):
                continue
            del self.wizards[project_id]
            self.stack.removeWidget(wizard)
            wizard.deleteLater()

    def forget_project(self, project_id: str) -> None:
        """A deleted project: stop its work and drop its wizard."""
        wizard = self.wizards.pop(project_id, None)
        if wizard is not None:
            for runner in wizard.findChildren(TaskRunner):
                runner.cancel_all()
            self.stack.removeWidget(wizard)
            wizard.deleteLater()
        if self.wizard is wizard:
            self.wizard = None

    def closeEvent(self, event: QCloseEvent) -> None:
        """Running work stops gracefully before the app closes: training saves a checkpoint,
        background tasks (generation, ingestion) keep what they finished."""
        if self.placeholder is not None:  # a frame not filled (opening the data failed)
            event.accept()
            return
        if not self._confirm_close():
            event.ignore()
            return
        for runner in self.findChildren(TaskRunner):
            runner.cancel_all()
        if self.training.machine is not None:  # it trains on there: stop following only
            self.training.detach()
            self.training.wait_for_end(DETACH_WAIT_MS)
        elif self.training.running:
            from finetuneflow.services.trainer_process import STOP_GRACE_SECONDS

            self.training.stop()
            self.statusBar().showMessage("Saving a checkpoint before closing…")
            self.training.wait_for_end(int(STOP_GRACE_SECONDS * 1000))
        save_geometry(self, self.context.home)
        event.accept()

    def _confirm_close(self) -> bool:
        from PySide6.QtWidgets import QMessageBox

        busy = [runner for runner in self.findChildren(TaskRunner) if runner.busy()]
        if not (self.training.running or busy):
            return True
        machine = self.training.machine
        what = (f"Training runs on {machine}. It goes on there while FineTuneFlow is closed; "
                "reopen the project and Reattach to follow it again." if machine else
                "Training is running. It finishes the current step and saves a checkpoint, "
                "so you can resume it later." if self.training.running else
                "Work is running in the background. What is finished is kept, and you can "
                "continue later.")
        answer = QMessageBox.question(
            self, "Close?" if machine else "Stop and close?",
            f"{what}\n\n{'Close' if machine else 'Stop it and close'} FineTuneFlow?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel)
        return answer == QMessageBox.StandardButton.Yes

    def resume_job(self, job: JobInfo) -> None:
        """Open the job's step and start it again; each step resumes where the work stopped."""
        step = RESUME_STEPS.get(job.kind.value)
        if step is None:
            return
        page = self.open_project(job.project_id, step).currentPage()
        name = RESUME_ACTIONS.get(job.kind.value)
        action = getattr(page, name, None) if name else None
        if callable(action):
            action()

    def show_dashboard(self) -> None:
        self._drop_project_frame()
        self.close_project()
        self.dashboard.refresh()
        self.stack.setCurrentWidget(self.dashboard)
        self.setWindowTitle("FineTuneFlow")
