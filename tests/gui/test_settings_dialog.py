"""The Settings dialog: defaults that new projects use, the keys in the keychain, the storage
move."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PySide6.QtWidgets import QDialog, QMessageBox
from pytestqt.qtbot import QtBot

from finetuneflow.core.training.config import preset_config
from finetuneflow.gui.main_window import MainWindow
from finetuneflow.gui.settings_dialog import SettingsDialog
from finetuneflow.gui.workers import TaskRunner
from finetuneflow.services.context import AppContext
from finetuneflow.services.generation import GenerationService
from finetuneflow.services.projects import ProjectService
from finetuneflow.services.secrets import KEYRING_SERVICE
from finetuneflow.services.settings import AppSettings
from finetuneflow.services.training import TrainingService
from finetuneflow.storage.home import HOME_ENV, default_home, location_file
from tests.helpers.memory_keyring import MemoryKeyring

HF_TOKEN = "hf_abcdefghijklmnopqrstuvwxyz012345"


@pytest.fixture
def dialog(qtbot: QtBot, context: AppContext) -> SettingsDialog:
    settings = SettingsDialog(context)
    qtbot.addWidget(settings)
    settings.show()
    return settings


def test_saved_defaults_are_what_a_new_project_starts_with(dialog: SettingsDialog,
                                                            context: AppContext) -> None:
    llm = dialog.llm
    llm.provider.setCurrentIndex(llm.provider.findData("ollama"))
    llm.base_url.setText("http://127.0.0.1:11434")
    llm.model.setCurrentText("qwen3:4b")
    dialog.preset.setCurrentIndex(dialog.preset.findData("quick"))
    dialog.max_file_mb.setValue(50)
    dialog.buttons.button(dialog.buttons.StandardButton.Save).click()
    assert dialog.result() == QDialog.DialogCode.Accepted
    assert AppSettings.load(context.home).max_file_mb == 50

    project = ProjectService(context).create("New one")
    settings = GenerationService(context).llm_settings(project.id)
    assert (settings.provider, settings.model) == ("ollama", "qwen3:4b")
    assert TrainingService(context).config_for(project.id) == preset_config("quick")


def test_the_document_limits_are_saved(dialog: SettingsDialog, context: AppContext) -> None:
    assert dialog.max_part_mb.value() == 128 and dialog.max_zip_ratio.value() == 200
    dialog.max_part_mb.setValue(16)
    dialog.max_unpacked_mb.setValue(64)
    dialog.max_zip_ratio.setValue(40)
    dialog.buttons.button(dialog.buttons.StandardButton.Save).click()
    saved = AppSettings.load(context.home)
    assert (saved.max_part_mb, saved.max_unpacked_mb, saved.max_zip_ratio) == (16, 64, 40)
    assert SettingsDialog(context).max_unpacked_mb.value() == 64
def test_the_dataset_import_limits_are_saved(dialog: SettingsDialog,
                                             context: AppContext) -> None:
    assert (dialog.max_dataset_mb.value(), dialog.max_line_mb.value(),
            dialog.chars_per_token.value()) == (2048, 8, 8)
    dialog.max_dataset_mb.setValue(100)
    dialog.max_line_mb.setValue(2)
    dialog.chars_per_token.setValue(4)
    dialog.buttons.button(dialog.buttons.StandardButton.Save).click()
    saved = AppSettings.load(context.home)
    assert (saved.max_dataset_mb, saved.max_line_mb, saved.example_chars_per_token) == (100, 2, 4)


def test_bad_defaults_keep_the_dialog_open(dialog: SettingsDialog, context: AppContext,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    warnings: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text: warnings.append(text))
    dialog.llm.provider.setCurrentIndex(dialog.llm.provider.findData("ollama"))  # no model
    dialog.save()
    assert "Choose a model" in warnings[0] and dialog.isVisible()
    assert AppSettings.load(context.home) == AppSettings()


def test_the_llm_key_goes_to_the_keychain(dialog: SettingsDialog,
                                          keychain: MemoryKeyring) -> None:
    dialog.llm.key.setText("secret-key-123")
    dialog.llm.save_key.click()
    assert keychain.store[(KEYRING_SERVICE, "llm-api-key")] == "secret-key-123"
    assert dialog.llm.key.text() == "" and "keychain" in dialog.llm.key.placeholderText()


def test_hf_token_is_saved_shown_by_source_and_removed(
        dialog: SettingsDialog, keychain: MemoryKeyring, context: AppContext,
        monkeypatch: pytest.MonkeyPatch, qtbot: QtBot) -> None:
    assert "No token" in dialog.token_state.text()
    assert not dialog.remove_token.isEnabled()
    dialog.token.setText(f"  {HF_TOKEN} ")
    dialog.save_token.click()
    assert keychain.store[(KEYRING_SERVICE, "hf-token")] == HF_TOKEN
    assert "keychain" in dialog.token_state.text() and dialog.token.text() == ""
    assert HF_TOKEN not in dialog.token_state.text()
    dialog.remove_token.click()
    assert (KEYRING_SERVICE, "hf-token") not in keychain.store
    assert "No token" in dialog.token_state.text()

    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)
    from_env = SettingsDialog(context)
    qtbot.addWidget(from_env)
    assert "HF_TOKEN environment variable" in from_env.token_state.text()
    assert not from_env.remove_token.isEnabled()


def test_storage_move_from_the_dialog(qtbot: QtBot, window: MainWindow, context: AppContext,
                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    window.dashboard.create_project("Garden")
    monkeypatch.delenv(HOME_ENV)  # otherwise the variable decides the folder and Move is off
    dialog = SettingsDialog(context, window)
    qtbot.addWidget(dialog)
    assert dialog.move_button.isEnabled()
    assert dialog.home_path.text() == str(context.home.root)
    target = tmp_path / "new-place"
    target.mkdir()
    with qtbot.waitSignal(dialog.storage_moved, timeout=60_000):
        dialog.move_storage(target)
    assert context.home.root == target.resolve() == default_home()
    assert dialog.home_path.text() == str(target.resolve())
    assert "is kept" in dialog.move_result.text() and location_file().is_file()
    qtbot.waitUntil(lambda: dialog.buttons.isEnabled())
    window.dashboard.refresh()
    assert window.dashboard.table.item(0, 0).text() == "Garden"


def test_move_is_off_while_the_environment_names_the_folder(dialog: SettingsDialog) -> None:
    assert not dialog.move_button.isEnabled()


def test_move_waits_for_background_work(qtbot: QtBot, window: MainWindow, context: AppContext,
                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(HOME_ENV)
    release = threading.Event()
    runner = TaskRunner(window)
    runner.start("ingest", lambda _progress, _cancel: release.wait(30))
    dialog = SettingsDialog(context, window.dashboard)
    qtbot.addWidget(dialog)
    dialog.move_storage(tmp_path)
    assert "wait for it to finish" in dialog.move_result.text()
    assert context.home.root != tmp_path and not location_file().exists()
    release.set()
    qtbot.waitUntil(lambda: not runner.busy())
