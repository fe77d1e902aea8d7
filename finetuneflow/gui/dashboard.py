"""The dashboard: the list of projects with New, Open and Delete."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QMessageBox,
    QPushButton,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from finetuneflow.core.steps import STEPS, step_index
from finetuneflow.services.context import AppContext
from finetuneflow.services.errors import UserError
from finetuneflow.services.projects import ProjectService, ProjectSummary

COLUMNS = ("Project", "Base model", "Step", "Last activity", "Latest job")


def _row_values(project: ProjectSummary) -> tuple[str, ...]:
    number = step_index(project.current_step)
    job = (f"{project.latest_job_kind}: {project.latest_job_status}"
           if project.latest_job_kind else "—")
    return (project.name, project.base_model or "not chosen yet",
            f"{number + 1}. {STEPS[number].title}",
            project.updated_at.strftime("%Y-%m-%d %H:%M"), job)


class Dashboard(QWidget):
    open_project = Signal(str)  # project id

    def __init__(self, context: AppContext) -> None:
        super().__init__()
        self.setObjectName("dashboard")
        self.projects = ProjectService(context)
        self._summaries: list[ProjectSummary] = []

        heading = QLabel("Your projects")
        heading.setObjectName("heading")
        intro = QLabel("Each project turns your documents into a fine-tuned model, step by step. "
                       "Your work is saved as you go: open a project to continue where you left.")
        intro.setWordWrap(True)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("projectTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.doubleClicked.connect(lambda _index: self._open_selected())
        self.table.itemSelectionChanged.connect(self._update_buttons)

        self.empty = QLabel("No projects yet.\n\nClick “New project” to start: you will pick a "
                            "base model, add your documents, generate training examples, "
                            "train and export.")
        self.empty.setObjectName("emptyState")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)
        self.list_or_empty = QStackedWidget()
        self.list_or_empty.addWidget(self.table)
        self.list_or_empty.addWidget(self.empty)

        self.new_button = QPushButton("New project…")
        self.new_button.setObjectName("newProject")
        self.new_button.setDefault(True)
        self.open_button = QPushButton("Open")
        self.delete_button = QPushButton("Delete…")
        self.new_button.clicked.connect(self._create)
        self.open_button.clicked.connect(self._open_selected)
        self.delete_button.clicked.connect(self._delete_selected)

        buttons = QHBoxLayout()
        buttons.addWidget(self.new_button)
        buttons.addStretch(1)
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.delete_button)

        layout = QVBoxLayout(self)
        layout.addWidget(heading)
        layout.addWidget(intro)
        layout.addWidget(self.list_or_empty, 1)
        layout.addLayout(buttons)
        self.refresh()

    def refresh(self) -> None:
        self._summaries = self.projects.list()
        self.table.setRowCount(len(self._summaries))
        for row, project in enumerate(self._summaries):
            for column, value in enumerate(_row_values(project)):
                item = QTableWidgetItem(value)
                item.setToolTip(value)
                self.table.setItem(row, column, item)
        self.table.resizeColumnsToContents()
        self.list_or_empty.setCurrentWidget(self.table if self._summaries else self.empty)
        if self._summaries and not self.table.selectedItems():
            self.table.selectRow(0)
        self._update_buttons()

    def selected_project(self) -> ProjectSummary | None:
        rows = self.table.selectionModel().selectedRows()
        return self._summaries[rows[0].row()] if rows else None

    def create_project(self, name: str) -> ProjectSummary:
        project = self.projects.create(name)
        self.refresh()
        return project

    def _update_buttons(self) -> None:
        has_selection = self.selected_project() is not None
        self.open_button.setEnabled(has_selection)
        self.delete_button.setEnabled(has_selection)

    def _create(self) -> None:
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
        if project is not None:
            self.open_project.emit(project.id)

    def _delete_selected(self) -> None:
        project = self.selected_project()
        if project is None:
            return
        answer = QMessageBox.question(
            self, "Delete project",
            f"Delete “{project.name}” with its documents, datasets and trained models?\n\n"
            "This cannot be undone. The original files you added elsewhere are not touched.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel)
        if answer == QMessageBox.StandardButton.Yes:
            self.projects.delete(project.id)
            self.refresh()
