"""Settings → Machines and the Hardware page's "Train on" choice, offscreen, against a real sshd
on 127.0.0.1 (tests/helpers/sshd.py) through the real OpenSSH client."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PySide6.QtWidgets import QDialog, QMessageBox
from pytestqt.qtbot import QtBot

from finetuneflow.core.child_protocol import JOB_VERSION
from finetuneflow.gui.main_window import MainWindow
from finetuneflow.gui.pages.hardware_page import HardwarePage, describe_probe
from finetuneflow.gui.settings_dialog import SettingsDialog
from finetuneflow.gui.widgets.machines_list import AddMachineDialog, MachinesList
from finetuneflow.services.context import AppContext
from finetuneflow.services.machines import add_machine, last_check, list_machines
from tests.helpers.gui_projects import project_with_examples
from tests.helpers.images import assert_not_blank
from tests.helpers.sshd import Sshd, fingerprint, running_sshd
from tests.integration.test_machine_setup import BASE_PYTHON, lend_libraries
from tests.integration.test_machines import SYSTEM_PYTHON, trusted_machine, wrapper_python

pytestmark = pytest.mark.slow
SHOTS = Path("/tmp/remotesetup-shots")
CHECK_S = 240_000  # a check runs the trainer's probe there, which imports torch


def machines_section(qtbot: QtBot, context: AppContext) -> tuple[SettingsDialog, MachinesList]:
    dialog = SettingsDialog(context)
    qtbot.addWidget(dialog)
    dialog.tabs.setCurrentIndex(dialog.tabs.indexOf(dialog.machines.parentWidget()))
    dialog.resize(1100, 800)
    dialog.show()
    return dialog, dialog.machines


def cell(machines: MachinesList, column: int, row: int = 0) -> str:
    item = machines.table.item(row, column)
    assert item is not None
    return item.text()


def shot(widget: QDialog | MainWindow, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    widget.grab().save(str(SHOTS / name))
    assert_not_blank(SHOTS / name)


def test_add_dialog_adds_or_keeps_open_with_the_reason(qtbot: QtBot, context: AppContext,
                                                        tmp_path: Path) -> None:
    dialog = AddMachineDialog(context)
    qtbot.addWidget(dialog)
    dialog.name.setText("box")
    dialog.url.setText("http://alice@gpu.example")
    dialog.accept()
    assert "is not an ssh:// address" in dialog.problem.text()
    dialog.url.setText("ssh://alice@gpu.example:2222")
    dialog.key.setText(str(tmp_path / "missing_key"))
    dialog.accept()
    assert "does not exist" in dialog.problem.text()
    assert dialog.result() != QDialog.DialogCode.Accepted and list_machines(context.home) == []
    key = tmp_path / "id_ed25519"
    key.write_text("not read: only the path is kept")
    dialog.key.setText(str(key))
    dialog.accept()
    assert dialog.result() == QDialog.DialogCode.Accepted
    [machine] = list_machines(context.home)
    assert (machine.url, machine.key, machine.python) == (
        "ssh://alice@gpu.example:2222", str(key), "python3")


def test_test_asks_about_an_unknown_host_key_then_shows_the_trainer(
        qtbot: QtBot, context: AppContext, sshd: Sshd, answer_yes: list[str]) -> None:
    add_machine(context.home, "box", sshd.url, key=str(sshd.user_key), python=sys.executable)
    dialog, machines = machines_section(qtbot, context)
    assert cell(machines, 3) == "Not checked yet"
    machines.select("box")
    machines.test_button.click()
    assert not machines.test_button.isEnabled()  # one connection at a time
    qtbot.waitUntil(lambda: "is ready" in machines.result.text(), timeout=CHECK_S)
    assert any(fingerprint(sshd.host_key) in text for text in answer_yes)
    assert f"(trainer protocol {JOB_VERSION})" in machines.result.text()
    # The list shows the stored last check once it is read again, a turn after the result.
    qtbot.waitUntil(lambda: cell(machines, 3).startswith("Ready "), timeout=CHECK_S)
    assert machines.test_button.isEnabled()
    shot(dialog, "settings_machines.png")
    machines.remove_button.click()  # answered Yes
    assert machines.table.rowCount() == 0 and list_machines(context.home) == []


def test_declined_key_then_missing_trainer_then_changed_key(
        qtbot: QtBot, context: AppContext, sshd: Sshd, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    bare = wrapper_python(tmp_path, "bare-python", f'unset PYTHONPATH\nexec {SYSTEM_PYTHON} "$@"')
    add_machine(context.home, "box", sshd.url, key=str(sshd.user_key), python=bare)
    _dialog, machines = machines_section(qtbot, context)
    machines.select("box")
    answers = [QMessageBox.StandardButton.Cancel]
    monkeypatch.setattr(QMessageBox, "question", lambda *_a, **_k: answers[0])
    machines.test_button.click()
    qtbot.waitUntil(lambda: "is not known yet" in machines.result.text(), timeout=60_000)
    assert not (context.home.root / "ssh" / "known_hosts").exists()
    qtbot.waitUntil(machines.test_button.isEnabled)
    assert cell(machines, 3).startswith("Failed ") and "is not known yet" in cell(machines, 3)

    answers[0] = QMessageBox.StandardButton.Yes
    machines.test_button.click()
    qtbot.waitUntil(lambda: "machine setup box" in machines.result.text(), timeout=60_000)
    assert "FineTuneFlow's trainer is not installed" in machines.result.text()

    sshd.restart_with_new_host_key()
    qtbot.waitUntil(machines.test_button.isEnabled)
    machines.test_button.click()
    qtbot.waitUntil(lambda: "has changed" in machines.result.text(), timeout=60_000)
    assert "ask the machine's owner" in machines.result.text()


def test_set_up_installs_the_trainer_there(qtbot: QtBot, context: AppContext,
                                           tmp_path: Path) -> None:
    # A remote without FineTuneFlow whose python finds torch & co. (nothing is downloaded).
    remote_home = tmp_path / "remote-home"
    remote_home.mkdir()
    environment = {"PYTHONPATH": str(lend_libraries(tmp_path / "libraries")),
                   "HOME": str(remote_home)}
    (tmp_path / "sshd").mkdir()
    with running_sshd(tmp_path / "sshd", environment) as sshd:
        trusted_machine(context.home.root, sshd, python=BASE_PYTHON)
        _dialog, machines = machines_section(qtbot, context)
        machines.select("box")
        machines.setup_button.click()  # answered Yes
        qtbot.waitUntil(lambda: "Installing" in machines.result.text(), timeout=120_000)
        qtbot.waitUntil(lambda: "is ready" in machines.result.text(), timeout=2 * CHECK_S)
    venv_python = remote_home / ".finetuneflow-remote" / "venv" / "bin" / "python"
    # The list is re-read once the task has finished, a turn after its outcome is shown.
    qtbot.waitUntil(lambda: cell(machines, 2) == str(venv_python), timeout=5000)
    assert cell(machines, 3).startswith("Ready ")


def test_hardware_page_recommends_for_the_machine_chosen(
        qtbot: QtBot, window: MainWindow, context: AppContext, sshd: Sshd,
        tiny_model_dir: Path, tmp_path: Path) -> None:
    trusted_machine(context.home.root, sshd)
    project = project_with_examples(window, context, tiny_model_dir, tmp_path, "Remote", 40)
    window.resize(1100, 800)
    page = window.open_project(project, "hardware").currentPage()
    assert isinstance(page, HardwarePage)
    qtbot.waitUntil(page.isComplete, timeout=120_000)
    assert [page.train_on.itemText(i) for i in range(page.train_on.count())] == [
        "This computer", f"box ({sshd.url})"]

    assert page.remote_note.isHidden()
    page.train_on.setCurrentIndex(page.train_on.findData("box"))
    assert page.findings.text() == "Connecting to box and inspecting it…"
    # Where the run will go is said plainly: the Train step trains here.
    assert not page.remote_note.isHidden()
    assert "finetuneflow train Remote --on box" in page.remote_note.text()
    qtbot.waitUntil(lambda: "Connecting" not in page.findings.text(), timeout=CHECK_S)
    checked = last_check(context.home, "box")
    assert checked is not None and checked.ok and checked.probe is not None
    assert page.probe == checked.probe and page.findings.text() == describe_probe(checked.probe)
    qtbot.waitUntil(page.isComplete, timeout=60_000)
    assert "LORA" in page.recommendation.text()
    assert "box's hardware" in page.duration.text()
    shot(window, "hardware_machine.png")

    # The machine's probe is kept for a day, as this computer's: no connection to show it.
    sshd.stop()
    page.train_on.setCurrentIndex(0)
    qtbot.waitUntil(lambda: not page.tasks.is_running("probe") and page.isComplete(),
                    timeout=120_000)
    page.train_on.setCurrentIndex(page.train_on.findData("box"))
    qtbot.waitUntil(lambda: page.probe == checked.probe and page.isComplete(), timeout=60_000)
    page.start_probe(refresh=True)  # Check again: the machine is down now
    qtbot.waitUntil(lambda: "refused the connection" in page.findings.text(), timeout=60_000)
    assert not page.isComplete() and page.recommendation.text() == ""
