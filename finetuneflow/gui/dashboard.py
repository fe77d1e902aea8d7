"""The dashboard: the list of projects; new, sample, open, rename, duplicate, delete; settings."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from finetuneflow.core.project_summary import ProjectSummary
from finetuneflow.core.statuses import JobStatus
from finetuneflow.core.steps import STEPS, ProgressFacts, describe_progress, step_index
from finetuneflow.gui.dashboard_frame import PROJECTS_HEADING
from finetuneflow.gui.styles import styled
from finetuneflow.gui.workers import TaskRunner, Work
from finetuneflow.services.errors import UserError

# Light at import: the window's first frame shows the list (read without SQLAlchemy) before
# the database layer is attached. The first use of a PySide6 class builds its enums (a few ms
# each), so the dialogs, the menu and the keys are imported where the working dashboard uses
# them.
if TYPE_CHECKING:
    from PySide6.QtCore import QPoint, Qt

    from finetuneflow.gui.orphan_banner import OrphanBanner
    from finetuneflow.services.context import AppContext
    from finetuneflow.services.projects import ProjectService

COLUMNS = ("Project", "Base model", "Step", "Last activity", "Latest job")
JOB_KINDS = {"preview": "Preview", "generate": "Generation", "train": "Training",
             "eval": "Evaluation", "export": "Export", "ingest": "Adding files"}
JOB_STATES = {JobStatus.RUNNING: "running", JobStatus.INTERRUPTED: "interrupted",
              JobStatus.FAILED: "failed", JobStatus.SUCCEEDED: "done",
              JobStatus.CANCELLED: "stopped", JobStatus.QUEUED: "waiting"}
# States that want the person's attention are shown in bold.
NOTABLE = {JobStatus.RUNNING, JobStatus.INTERRUPTED, JobStatus.FAILED}
EMPTY_TEXT = ("No projects yet.\n\n"
              "Click “New project…” to start with your own documents: you pick a base model, "
              "add documents, generate training examples, train and export.\n\n"
              "Or click “Try the sample project” to walk through the steps with three short "
              "documents that come with the app.")


def describe_job(project: ProjectSummary) -> str:
    if project.latest_job_kind is None or project.latest_job_status is None:
        return "—"
    kind = JOB_KINDS.get(project.latest_job_kind, project.latest_job_kind.title())
    return f"{kind} {JOB_STATES.get(project.latest_job_status, project.latest_job_status)}"


def describe_when(moment: datetime, now: datetime | None = None) -> str:
    """A stored (naive UTC) time as the person reads it: local, and relative when recent."""
    local = moment.replace(tzinfo=UTC).astimezone()
    now = now or datetime.now().astimezone()
    age = now - local
    if age < timedelta(minutes=1):
        return "just now"
    if age < timedelta(hours=1):
        return f"{int(age.total_seconds() // 60)} min ago"
    if local.date() == now.date():
        return f"today {local:%H:%M}"
    if local.date() == (now - timedelta(days=1)).date():
        return f"yesterday {local:%H:%M}"
    return f"{local:%Y-%m-%d %H:%M}"


def _row_values(project: ProjectSummary, facts: ProgressFacts | None) -> tuple[str, ...]:
    """The row's texts; the Step column is how far the project is (blank until the facts are
    read, on the list shown before the database layer has loaded)."""
    return (project.name, project.base_model or "not chosen yet",
            "" if facts is None else describe_progress(facts),
            describe_when(project.last_activity or project.updated_at), describe_job(project))


def _step_tip(project: ProjectSummary) -> str:
    number = step_index(project.current_step)
    return (f"The furthest step whose result exists. Opens at step {number + 1}, "
            f"{STEPS[number].title}, where you last were.")


class Dashboard(QWidget):
    open_project = Signal(str)  # project id
    home_changed = Signal()  # the data folder was moved

    # From attach() on:
    context: AppContext
    projects: ProjectService
    tasks: TaskRunner
    orphan_banner: OrphanBanner

    def __init__(self, context: AppContext | None = None,
                 early_list: list[ProjectSummary] | None = None,
                 early_progress: dict[str, ProgressFacts] | None = None) -> None:
        """With a context, a working dashboard. Without one, the list read at start-up
        (`early_list`, with how far each project is: `early_progress`), its actions disabled
        until `attach(context)`."""
        super().__init__()
        self.setObjectName("dashboard")
        self._summaries: list[ProjectSummary] = early_list or []
        self._progress: dict[str, ProgressFacts] = early_progress or {}
        self._notes: dict[str, str] = {}  # the sample's note, worked out from its state
        self.attached = False

        heading = styled(QLabel(PROJECTS_HEADING, objectName="heading"))
        self.sample_button = QPushButton("Try the sample project", objectName="sampleProject")
        self.sample_button.setToolTip("A ready-made project with three short documents about a "
                                      "community garden, set up for questions and answers.")
        self.settings_button = QPushButton("Settings…", objectName="settings")
        top = QHBoxLayout()
        top.addWidget(heading, 1)
        top.addWidget(self.sample_button)
        top.addWidget(self.settings_button)
        intro = QLabel("Each project turns your documents into a fine-tuned model, step by step. "
                       "Your work is saved as you go: open a project to continue where you left.",
                       wordWrap=True)

        self.table = self._build_table()
        self.empty = styled(QLabel(EMPTY_TEXT, objectName="emptyState", wordWrap=True))
        self.list_or_empty = QStackedWidget()
        self.list_or_empty.addWidget(self.table)
        self.list_or_empty.addWidget(self.empty)
        self.note = styled(QLabel(objectName="projectNote", wordWrap=True))
        self.note.hide()

        self.new_button = QPushButton("New project…", objectName="newProject", default=True)
        self.open_button = QPushButton("Open")
        self.rename_button = QPushButton("Rename…")
        self.duplicate_button = QPushButton("Duplicate")
        self.duplicate_button.setToolTip("Copy the settings, documents and examples into a new "
                                         "project (not the trained models)")
        self.delete_button = QPushButton("Delete…")
        buttons = QHBoxLayout()
        buttons.addWidget(self.new_button)
        buttons.addStretch(1)
        for button in (self.open_button, self.rename_button, self.duplicate_button,
                       self.delete_button):
            buttons.addWidget(button)

        self.column = QVBoxLayout(self)
        self.column.addLayout(top)  # the orphan banner comes under it (attach)
        self.column.addWidget(intro)
        self.column.addWidget(self.list_or_empty, 1)
        self.column.addWidget(self.note)
        self.column.addLayout(buttons)
        self._connect()
        if context is not None:
            self.attach(context)
        else:
            self._show_list()

    def attach(self, context: AppContext) -> None:
        """Work with the database from now on: the list is read again and the actions enabled."""
        from finetuneflow.services.projects import ProjectService

        self.context = context
        self.projects = ProjectService(context)
        self._finish_setup()
        self.attached = True
        self.refresh()
        self.orphan_banner.check(context, {project.id for project in self._summaries})

    def _finish_setup(self) -> None:
        """What the list does not show: background tasks, the orphan banner, and what needs
        PySide6's Qt namespace (~25 ms to load): keys and the menu, which need the database
        anyway. Done once the first frame is on screen."""
        from PySide6.QtCore import Qt

        from finetuneflow.gui.orphan_banner import OrphanBanner

        self.tasks = TaskRunner(self)
        self.orphan_banner = OrphanBanner(self.tasks)
        self.orphan_banner.finished.connect(self.refresh)
        self.orphan_banner.restore_button.clicked.connect(self._update_buttons)  # now busy
        self.column.insertWidget(1, self.orphan_banner)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._show_menu)
        self._add_shortcuts(Qt.ShortcutContext.WidgetWithChildrenShortcut)

    def _build_table(self) -> QTableWidget:
        table = QTableWidget(0, len(COLUMNS), objectName="projectTable")
        table.setHorizontalHeaderLabels(COLUMNS)
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.verticalHeader().hide()
        header = table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        return table

    def _connect(self) -> None:
        self.table.doubleClicked.connect(lambda _index: self._open_selected())
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.new_button.clicked.connect(self._create)
        self.sample_button.clicked.connect(self.open_sample)
        self.settings_button.clicked.connect(self.show_settings)
        self.open_button.clicked.connect(self._open_selected)
        self.rename_button.clicked.connect(self._rename_selected)
        self.duplicate_button.clicked.connect(self._duplicate_selected)
        self.delete_button.clicked.connect(self._delete_selected)

    def _add_shortcuts(self, context: Qt.ShortcutContext) -> None:
        """Enter opens, F2 renames and Delete deletes the selected project; Ctrl+N makes one
        and Ctrl+, opens the settings."""
        from PySide6.QtGui import QKeySequence, QShortcut

        for keys, action, scope in (
                ("Return", self._open_selected, self.table),
                ("Enter", self._open_selected, self.table),
                ("F2", self._rename_selected, self.table),
                ("Delete", self._delete_selected, self.table),
                ("Ctrl+N", self._create, self),
                ("Ctrl+,", self.show_settings, self)):
            shortcut = QShortcut(QKeySequence(keys), scope)
            shortcut.setContext(context)
            shortcut.activated.connect(action)
        for button, keys in ((self.new_button, "Ctrl+N"), (self.settings_button, "Ctrl+,"),
                             (self.open_button, "Enter"), (self.rename_button, "F2"),
                             (self.delete_button, "Delete")):
            hint = f"Shortcut: {keys}"
            button.setToolTip(f"{button.toolTip()}\n{hint}" if button.toolTip() else hint)

    # --- the list -------------------------------------------------------------------------------

    def refresh(self, select_id: str | None = None) -> None:
        """Reload the list, keeping (or moving to) the selected project."""
        current = self.selected_project()
        from finetuneflow.services.progress import ProgressService
        from finetuneflow.services.samples import SampleService

        self._summaries = self.projects.list()
        self._progress = ProgressService(self.context).all()
        self._notes = SampleService(self.context).notes(self._progress)
        self._show_list(select_id or (current.id if current else None))

    def _show_list(self, select_id: str | None = None) -> None:
        self.table.setRowCount(len(self._summaries))
        for row, project in enumerate(self._summaries):
            self._fill_row(row, project)
        self.list_or_empty.setCurrentWidget(self.table if self._summaries else self.empty)
        ids = [project.id for project in self._summaries]
        if self._summaries:
            self.table.selectRow(ids.index(select_id) if select_id in ids else 0)
        self._update_buttons()

    def _fill_row(self, row: int, project: ProjectSummary) -> None:
        tips = {0: self.note_of(project), 2: _step_tip(project)}
        for column, value in enumerate(_row_values(project, self._progress.get(project.id))):
            item = QTableWidgetItem(value)
            item.setToolTip(tips.get(column) or value)
            if column == len(COLUMNS) - 1 and project.latest_job_status in NOTABLE:
                font = item.font()  # a copy
                font.setBold(True)
                item.setFont(font)
            self.table.setItem(row, column, item)

    def selected_project(self) -> ProjectSummary | None:
        rows = self.table.selectionModel().selectedRows()
        return self._summaries[rows[0].row()] if rows else None

    def _update_buttons(self) -> None:
        project = self.selected_project()
        busy = not self.attached or self.tasks.busy()  # the early list only shows
        for button in (self.open_button, self.rename_button, self.duplicate_button,
                       self.delete_button):
            button.setEnabled(project is not None and not busy)
        for button in (self.new_button, self.sample_button, self.settings_button):
            button.setEnabled(not busy)
        note = self.note_of(project) if project else ""
        self.note.setText(note)
        self.note.setVisible(bool(note))

    def note_of(self, project: ProjectSummary) -> str:
        return self._notes.get(project.id, project.note)

    def _show_menu(self, position: QPoint) -> None:
        if self.selected_project() is None or self.tasks.busy():
            return
        from PySide6.QtWidgets import QMenu

        menu = QMenu(self)
        menu.addAction("Open", self._open_selected)
        menu.addAction("Rename…", self._rename_selected)
        menu.addAction("Duplicate", self._duplicate_selected)
        menu.addSeparator()
        menu.addAction("Delete…", self._delete_selected)
        menu.exec(self.table.viewport().mapToGlobal(position))

    # --- actions --------------------------------------------------------------------------------

    def create_project(self, name: str) -> ProjectSummary:
        project = self.projects.create(name)
        self.refresh(project.id)
        return project

    def _create(self) -> None:
        from PySide6.QtWidgets import QInputDialog, QMessageBox

        name, ok = QInputDialog.getText(self, "New project", "Name of the new project:")
        if not ok:
            return
        try:
            project = self.create_project(name)
        except UserError as error:
            QMessageBox.warning(self, "New project", str(error))
            return
        self.open_project.emit(project.id)

    def _open_selected(self) -> None:
        project = self.selected_project()
        if project is not None and self.attached:  # a double-click on the early list waits
            self.open_project.emit(project.id)

    def _rename_selected(self) -> None:
        project = self.selected_project()
        if project is None:
            return
        from PySide6.QtWidgets import QInputDialog

        name, ok = QInputDialog.getText(self, "Rename project", "New name:", text=project.name)
        if ok:
            self.rename(project.id, name)

    def rename(self, project_id: str, name: str) -> None:
        from PySide6.QtWidgets import QMessageBox

        try:
            self.projects.rename(project_id, name)
        except UserError as error:
            QMessageBox.warning(self, "Rename project", str(error))
            return
        self.refresh(project_id)

    def _duplicate_selected(self) -> None:
        project = self.selected_project()
        if project is not None:
            self._run("duplicate", "Duplicate project",
                      lambda _progress, _cancel: self.projects.duplicate(project.id),
                      lambda copy: self.refresh(copy.id))

    def _delete_selected(self) -> None:
        project = self.selected_project()
        if project is None:
            return
        from PySide6.QtWidgets import QMessageBox

        answer = QMessageBox.question(
            self, "Delete project",
            f"Delete “{project.name}” with its documents, datasets and trained models?\n\n"
            "This cannot be undone. The original files you added elsewhere are not touched.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel)
        if answer != QMessageBox.StandardButton.Yes:
            return
        try:
            self.projects.delete(project.id)
        except UserError as error:
            QMessageBox.warning(self, "Delete project", str(error))
        self.refresh()

    def open_sample(self) -> None:
        """Open the sample project, making it first if there is none."""
        # Imported here: it pulls in ingestion and the LLM client, not needed to show the list.
        from finetuneflow.services.samples import SampleService

        samples = SampleService(self.context)
        existing = samples.existing()
        if existing is not None:
            self.open_project.emit(existing.id)
            return
        self.sample_button.setText("Preparing the sample…")
        self._run("sample", "Sample project",
                  lambda progress, _cancel: samples.create(progress=progress),
                  lambda project: self.open_project.emit(project.id),
                  lambda: self.sample_button.setText("Try the sample project"))

    def _run(self, name: str, title: str, work: Work, on_success: Callable[[Any], None],
             on_finished: Callable[[], None] | None = None) -> None:
        """A project action on the thread pool (copying files can take a while)."""
        from finetuneflow.gui.errors import show_error

        def finished() -> None:
            if on_finished is not None:
                on_finished()
            self.refresh()

        self.tasks.start(name, work, on_success=on_success,
                         on_failure=lambda error: show_error(self, title, error,
                                                             self.context.log_file),
                         on_finished=finished)
        self._update_buttons()

    def show_settings(self) -> None:
        from finetuneflow.gui.settings_dialog import SettingsDialog

        before = self.context.home.root
        SettingsDialog(self.context, self).exec()
        if self.context.home.root != before:
            self.home_changed.emit()
        self.refresh()
