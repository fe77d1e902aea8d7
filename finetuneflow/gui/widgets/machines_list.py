"""The machines to train on over SSH (Settings → Machines): add, remove, test, set up.

Tests and set-ups connect over SSH, so they run on the thread pool; an unknown host key is shown
with its fingerprint and trusted only when the person accepts it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from finetuneflow.gui.colours import set_tone
from finetuneflow.gui.errors import describe
from finetuneflow.gui.workers import TaskRunner
from finetuneflow.services.context import AppContext
from finetuneflow.services.errors import UserError
from finetuneflow.services.machines import (
    DEFAULT_VENV,
    HostKeyUnknown,
    MachineCheck,
    SetupResult,
    add_machine,
    check_machine,
    gpu_names,
    last_check,
    list_machines,
    remove_machine,
    setup_machine,
    trust_host_key,
)

COLUMNS = ("Name", "Address", "Python", "Last check")


class AddMachineDialog(QDialog):
    """Name, ssh:// address, key file (or the SSH agent) and python of a new machine."""

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add a machine")
        self.setMinimumWidth(520)
        self.context = context
        self.name = QLineEdit(objectName="machineName", placeholderText="gpu-box")
        self.url = QLineEdit(objectName="machineUrl", placeholderText="ssh://user@host:22")
        self.key = QLineEdit(objectName="machineKey",
                             placeholderText="empty: the keys of your SSH agent")
        self.python = QLineEdit(objectName="machinePython", placeholderText="python3")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._pick_key)
        key_row = QHBoxLayout()
        key_row.addWidget(self.key, 1)
        key_row.addWidget(browse)
        self.problem = QLabel(objectName="addMachineProblem", wordWrap=True)
        set_tone(self.problem, "error")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow("Name:", self.name)
        form.addRow("Address:", self.url)
        form.addRow("Private key:", key_row)
        form.addRow("Python there:", self.python)
        form.addRow(QLabel("Only the key's path is kept, never a password or the key itself.",
                           wordWrap=True, objectName="hint"))
        form.addRow(self.problem)
        form.addRow(buttons)

    def _pick_key(self) -> None:
        path, _filter = QFileDialog.getOpenFileName(self, "Your private key",
                                                    str(Path.home() / ".ssh"))
        if path:
            self.key.setText(path)

    def accept(self) -> None:
        """Added, or the reason shown here with the dialog kept open to fix it."""
        try:
            add_machine(self.context.home, self.name.text().strip(), self.url.text().strip(),
                        key=self.key.text().strip() or None,
                        python=self.python.text().strip() or None)
        except UserError as error:
            self.problem.setText(str(error))
            return
        super().accept()


class MachinesList(QWidget):
    changed = Signal()  # a machine was added, removed, checked or set up

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.tasks = TaskRunner(self)
        self.table = QTableWidget(0, len(COLUMNS), objectName="machinesTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(False)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._enable)
        self.add_button = QPushButton("Add…", objectName="addMachine")
        self.remove_button = QPushButton("Remove", objectName="removeMachine")
        self.test_button = QPushButton("Test", objectName="testMachine")
        self.setup_button = QPushButton("Set up", objectName="setupMachine")
        self.setup_button.setToolTip(f"Install this version's trainer there, in {DEFAULT_VENV}")
        self.add_button.clicked.connect(self.add)
        self.remove_button.clicked.connect(self.remove)
        self.test_button.clicked.connect(self.test)
        self.setup_button.clicked.connect(self.set_up)
        buttons = QHBoxLayout()
        for button in (self.add_button, self.remove_button, self.test_button,
                       self.setup_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        self.result = QLabel(objectName="machineResult", wordWrap=True)
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.result)
        self.refresh()

    def refresh(self) -> None:
        selected = self.selected()
        machines = list_machines(self.context.home)
        self.table.setRowCount(len(machines))
        for row, machine in enumerate(machines):
            last = last_check(self.context.home, machine.name)
            cells = (machine.name, machine.url, machine.python,
                     last.summary() if last is not None else "Not checked yet")
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(row, column, item)
            if machine.name == selected:
                self.table.selectRow(row)
        self._enable()

    def selected(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        item = self.table.item(rows[0].row(), 0) if rows else None
        return item.text() if item is not None else None

    def select(self, name: str) -> None:
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item is not None and item.text() == name:
                self.table.selectRow(row)

    def _enable(self) -> None:
        busy = self.tasks.busy()
        chosen = self.selected() is not None
        self.add_button.setEnabled(not busy)
        for button in (self.remove_button, self.test_button, self.setup_button):
            button.setEnabled(chosen and not busy)

    # --- actions --------------------------------------------------------------------------------

    def add(self) -> None:
        dialog = AddMachineDialog(self.context, self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self._changed(dialog.name.text().strip())
            self.result.setText(f"Added {dialog.name.text().strip()}: press Test to connect.")

    def remove(self) -> None:
        name = self.selected()
        if name is None:
            return
        answer = QMessageBox.question(
            self, "Remove machine", f"Forget the machine {name}? Nothing on it is deleted.")
        if answer == QMessageBox.StandardButton.Yes:
            remove_machine(self.context.home, name)
            self.result.setText(f"Removed {name}.")
            self._changed(None)

    def test(self) -> None:
        name = self.selected()
        if name is not None:
            self._start(name, f"Connecting to {name} and checking its trainer…",
                        lambda _line: check_machine(self.context.home, name))

    def set_up(self) -> None:
        name = self.selected()
        if name is None:
            return
        answer = QMessageBox.question(
            self, "Set up the trainer",
            f"Install FineTuneFlow's trainer on {name}, in {DEFAULT_VENV} there? Its pip "
            "downloads torch and the other training libraries (several GB) unless they are "
            "there already.")
        if answer == QMessageBox.StandardButton.Yes:
            self._start(name, f"Setting up {name}…",
                        lambda on_line: setup_machine(self.context.home, name, on_line=on_line))

    def _start(self, name: str, doing: str, work: Callable[[Callable[[str], None]], Any]) -> None:
        self.result.setText(doing)
        self.tasks.start(
            "machine", lambda progress, _cancel: work(lambda line: progress(0.0, line)),
            on_progress=lambda _fraction, line: self.result.setText(f"{doing}\n{line}"),
            on_success=self._checked,
            on_failure=lambda error: self._failed(name, error, work),
            on_finished=self._finished, status_text=doing)
        self._enable()

    def _checked(self, outcome: MachineCheck | SetupResult) -> None:
        check = outcome.check if isinstance(outcome, SetupResult) else outcome
        probe = check.probe
        self.result.setText(
            f"{check.machine.name} is ready: Python {check.python_version}, FineTuneFlow "
            f"{check.finetuneflow_version} (trainer protocol {check.protocol}); "
            f"GPUs: {gpu_names(probe) or 'none'}; CUDA {probe.cuda_version or 'none'}.")

    def _failed(self, name: str, error: BaseException,
                work: Callable[[Callable[[str], None]], Any]) -> None:
        if isinstance(error, HostKeyUnknown) and self._trusted(error):
            machine = error.machine
            self._start(name, f"Trusting the host key of {name}, then trying again…",
                        lambda on_line: (trust_host_key(self.context.home, machine,
                                                        error.fingerprint), work(on_line))[1])
            return
        self.result.setText(describe(error, self.context.log_file)[0])

    def _trusted(self, unknown: HostKeyUnknown) -> bool:
        machine = unknown.machine
        answer = QMessageBox.question(
            self, "Unknown host key",
            f"The host key of {machine.name} ({machine.host}:{machine.port}) is not known yet."
            f"\n\nIts fingerprint is\n{unknown.fingerprint}\n\nCompare it with the one the "
            "machine's owner gives you. Trust this key and connect?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel)
        return answer == QMessageBox.StandardButton.Yes

    def _finished(self) -> None:
        self._changed(self.selected())

    def _changed(self, select: str | None) -> None:
        self.refresh()
        if select is not None:
            self.select(select)
        self.changed.emit()
