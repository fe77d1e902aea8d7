"""App-wide settings: the defaults new projects start with, the Hugging Face token, the machines
to train on over SSH, and where the data is kept (with a safe move)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from finetuneflow.core.training.config import PRESETS
from finetuneflow.gui.errors import describe
from finetuneflow.gui.llm_settings_box import LLMSettingsBox
from finetuneflow.gui.widgets.machines_list import MachinesList
from finetuneflow.gui.workers import TaskRunner
from finetuneflow.services.context import AppContext
from finetuneflow.services.data_folder import HOME_ENV
from finetuneflow.services.errors import UserError
from finetuneflow.services.secrets import Secret, delete_secret, secret_source, set_secret
from finetuneflow.services.settings import AppSettings
from finetuneflow.services.storage_move import MoveResult, move_home

TOKENS_PAGE = "https://huggingface.co/settings/tokens"
TOKEN_STATES = {
    "environment": "A token is set by the HF_TOKEN environment variable; it is used first.",
    "keychain": "A token is saved in the system keychain.",
    None: "No token saved. Public models need none.",
}


def _note(text: str) -> QLabel:
    return QLabel(text, wordWrap=True, objectName="hint")


class SettingsDialog(QDialog):
    storage_moved = Signal(str)  # the new home folder

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(640)
        self.context = context
        self.tasks = TaskRunner(self)
        settings = AppSettings.load(context.home)
        self.tabs = QTabWidget()
        self.tabs.addTab(self._llm_tab(settings), "Writing examples")
        self.tabs.addTab(self._training_tab(settings), "Training && documents")
        self.tabs.addTab(self._hub_tab(), "Hugging Face")
        self.tabs.addTab(self._machines_tab(), "Machines")
        self.tabs.addTab(self._storage_tab(), "Storage")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        layout.addWidget(self.buttons)

    # --- defaults for new projects --------------------------------------------------------------

    def _llm_tab(self, settings: AppSettings) -> QWidget:
        self.llm = LLMSettingsBox(self.context, settings.default_llm())
        tab = QWidget()
        layout = QVBoxLayout(tab)
        layout.addWidget(_note("New projects write their examples with these settings until "
                               "you change them in the project's Preview step. The API key is "
                               "kept in the system keychain and shared by all projects."))
        layout.addWidget(self.llm)
        layout.addWidget(self._llm_limits_box(settings))
        layout.addStretch(1)
        return tab

    def _llm_limits_box(self, settings: AppSettings) -> QGroupBox:
        self.llm_max_answer = QSpinBox(objectName="llmMaxAnswerMb", minimum=1, maximum=1024,
                                       suffix=" MB", value=settings.llm_max_answer_mb)
        self.llm_max_line = QSpinBox(objectName="llmMaxLineKb", minimum=1, maximum=1024 * 1024,
                                     suffix=" KB", value=settings.llm_max_line_kb)
        self.llm_deadline = QDoubleSpinBox(objectName="llmDeadline", minimum=0.1,
                                           maximum=86_400, decimals=1, suffix=" s",
                                           value=settings.llm_deadline_s)
        box = QGroupBox("Limits on each answer")
        form = QFormLayout(box)
        form.addRow("Largest answer:", self.llm_max_answer)
        form.addRow("Longest streamed line:", self.llm_max_line)
        form.addRow("Longest request:", self.llm_deadline)
        form.addRow(_note("A broken or hostile server cannot fill the memory or hold a request "
                          "forever: an answer past these limits is stopped and its chunk "
                          "rejected (or, past the time, tried again on the next run)."))
        return box

    def _training_tab(self, settings: AppSettings) -> QWidget:
        self.preset = QComboBox(objectName="defaultPreset")
        for key, preset in PRESETS.items():
            self.preset.addItem(preset.label, key)
        self.preset.setCurrentIndex(max(0, self.preset.findData(settings.default_preset)))
        self.preset_about = _note("")
        self.preset.currentIndexChanged.connect(self._show_preset)
        self._show_preset()
        self.max_file_mb = QSpinBox(objectName="maxFileMb", minimum=1, maximum=100_000,
                                    suffix=" MB", value=settings.max_file_mb)
        self.retry_smaller = QCheckBox("Out of GPU memory: retry once with smaller settings",
                                       checked=settings.retry_smaller_on_oom)
        training = QGroupBox("Training")
        form = QFormLayout(training)
        form.addRow("Preset for new projects:", self.preset)
        form.addRow(self.preset_about)
        form.addRow(self.retry_smaller)
        documents = QGroupBox("Documents")
        size = QFormLayout(documents)
        size.addRow("Largest document accepted:", self.max_file_mb)
        size.addRow(_note("Larger files are refused before they are copied into a project."))
        self._zip_limits(size, settings)
        tab = QWidget()
        layout = QVBoxLayout(tab)
        layout.addWidget(training)
        layout.addWidget(documents)
        layout.addWidget(self._dataset_limits(settings))
        layout.addStretch(1)
        return tab

    def _zip_limits(self, form: QFormLayout, settings: AppSettings) -> None:
        self.max_part_mb = QSpinBox(objectName="maxPartMb", minimum=1, maximum=100_000,
                                    suffix=" MB", value=settings.max_part_mb)
        self.max_unpacked_mb = QSpinBox(objectName="maxUnpackedMb", minimum=1, maximum=100_000,
                                        suffix=" MB", value=settings.max_unpacked_mb)
        self.max_zip_ratio = QSpinBox(objectName="maxZipRatio", minimum=2, maximum=100_000,
                                      suffix=" ×", value=settings.max_zip_ratio)
        form.addRow("Largest part of a Word file, unpacked:", self.max_part_mb)
        form.addRow("All parts of a Word file, unpacked:", self.max_unpacked_mb)
        form.addRow("Tightest packing of a large part:", self.max_zip_ratio)
        form.addRow(_note("A .docx is a zip: these refuse one that would unpack to more "
                          "memory than it is worth (a zip bomb) before it is unpacked."))
    def _dataset_limits(self, settings: AppSettings) -> QGroupBox:
        self.max_dataset_mb = QSpinBox(objectName="maxDatasetMb", minimum=1, maximum=100_000,
                                       suffix=" MB", value=settings.max_dataset_mb)
        self.max_line_mb = QSpinBox(objectName="maxLineMb", minimum=1, maximum=1024,
                                    suffix=" MB", value=settings.max_line_mb)
        self.chars_per_token = QSpinBox(objectName="exampleCharsPerToken", minimum=1,
                                        maximum=100, value=settings.example_chars_per_token)
        datasets = QGroupBox("Dataset import")
        form = QFormLayout(datasets)
        form.addRow("Largest dataset file:", self.max_dataset_mb)
        form.addRow("Longest dataset line:", self.max_line_mb)
        form.addRow("Characters per token of the longest example:", self.chars_per_token)
        form.addRow(_note("An imported example longer than this many characters per token of "
                          "the training's max length is rejected, with its reason."))
        return datasets

    def _show_preset(self) -> None:
        self.preset_about.setText(PRESETS[self.preset.currentData()].description)

    def save(self) -> None:
        try:
            replace(AppSettings.load(self.context.home),  # keeps what this dialog does not show
                    max_file_mb=self.max_file_mb.value(),
                    retry_smaller_on_oom=self.retry_smaller.isChecked(),
                    default_preset=self.preset.currentData(),
                    max_part_mb=self.max_part_mb.value(),
                    max_unpacked_mb=self.max_unpacked_mb.value(),
                    max_zip_ratio=self.max_zip_ratio.value(),
                    llm_max_answer_mb=self.llm_max_answer.value(),
                    llm_max_line_kb=self.llm_max_line.value(),
                    llm_deadline_s=self.llm_deadline.value(),
                    max_dataset_mb=self.max_dataset_mb.value(),
                    max_line_mb=self.max_line_mb.value(),
                    example_chars_per_token=self.chars_per_token.value(),
                    ).with_default_llm(self.llm.settings()).save(self.context.home)
        except UserError as error:
            QMessageBox.warning(self, "Settings", str(error))
            return
        self.accept()

    # --- Hugging Face token ---------------------------------------------------------------------

    def _hub_tab(self) -> QWidget:
        self.token_state = QLabel(objectName="hfTokenState", wordWrap=True)
        self.token = QLineEdit(objectName="hfToken", echoMode=QLineEdit.EchoMode.Password,
                               placeholderText="hf_… (paste a read token)")
        self.save_token = QPushButton("Save token", objectName="saveToken")
        self.remove_token = QPushButton("Remove token", objectName="removeToken")
        self.save_token.clicked.connect(self._save_token)
        self.remove_token.clicked.connect(self._remove_token)
        row = QHBoxLayout()
        row.addWidget(self.token, 1)
        row.addWidget(self.save_token)
        row.addWidget(self.remove_token)
        tab = QWidget()
        layout = QVBoxLayout(tab)
        get_token = QPushButton("Create a token on huggingface.co…", objectName="getToken")
        get_token.clicked.connect(lambda: QDesktopServices.openUrl(QUrl(TOKENS_PAGE)))
        layout.addWidget(_note(
            "Gated models (Llama, Gemma, Mistral) download only with a Hugging Face token, "
            "after you accept their licence on the model's page. A read token is enough. It "
            "is kept in the system keychain, never in a file."))
        layout.addWidget(self.token_state)
        layout.addLayout(row)
        layout.addWidget(get_token, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addStretch(1)
        self._show_token_state()
        return tab

    def _show_token_state(self) -> None:
        source = secret_source(Secret.HF_TOKEN)
        self.token_state.setText(TOKEN_STATES[source])
        self.remove_token.setEnabled(source == "keychain")

    def _save_token(self) -> None:
        value = self.token.text().strip()
        if not value:
            return
        try:
            set_secret(Secret.HF_TOKEN, value)
        except UserError as error:
            QMessageBox.warning(self, "Hugging Face token", str(error))
            return
        self.token.clear()
        self._show_token_state()

    def _remove_token(self) -> None:
        delete_secret(Secret.HF_TOKEN)
        self._show_token_state()

    # --- machines to train on -------------------------------------------------------------------

    def _machines_tab(self) -> QWidget:
        self.machines = MachinesList(self.context)
        tab = QWidget()
        layout = QVBoxLayout(tab)
        layout.addWidget(_note(
            "Train on a bigger computer over SSH: a workstation, a cloud GPU or a university "
            "server. FineTuneFlow connects with your own key or SSH agent and checks the "
            "server's host key. Set up installs this version's trainer there, in a venv in "
            "your home folder on that machine."))
        layout.addWidget(self.machines, 1)
        return tab

    # --- storage --------------------------------------------------------------------------------

    def _storage_tab(self) -> QWidget:
        self.home_path = QLabel(str(self.context.home.root), objectName="homePath",
                                wordWrap=True)
        self.home_path.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        show_folder = QPushButton("Show")
        show_folder.clicked.connect(lambda: QDesktopServices.openUrl(
            QUrl.fromLocalFile(str(self.context.home.root))))
        self.move_button = QPushButton("Move…", objectName="moveStorage")
        self.move_button.clicked.connect(self._pick_folder)
        self.move_progress = QProgressBar(objectName="moveProgress", visible=False)
        self.move_result = QLabel(objectName="moveResult", wordWrap=True)
        path_row = QHBoxLayout()
        path_row.addWidget(self.home_path, 1)
        path_row.addWidget(show_folder)
        path_row.addWidget(self.move_button)
        tab = QWidget()
        layout = QVBoxLayout(tab)
        layout.addWidget(_note("Projects, documents, datasets, trained models and logs are "
                               "kept in this folder:"))
        layout.addLayout(path_row)
        layout.addWidget(_note("Move copies everything to an empty folder, checks the copy, "
                               "then works there; the old folder is kept until you delete "
                               "it. It waits until no job is running."))
        if os.environ.get(HOME_ENV):
            self.move_button.setEnabled(False)
            layout.addWidget(_note(f"{HOME_ENV} is set, so FineTuneFlow always starts with "
                                   "that folder: change the variable to move the data."))
        layout.addWidget(self.move_progress)
        layout.addWidget(self.move_result)
        layout.addStretch(1)
        return tab

    def _pick_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Move the data to an empty folder")
        if folder:
            self.move_storage(Path(folder))

    def move_storage(self, target: Path) -> None:
        if self._background_work():
            self.move_result.setText("Work is still running in the background (adding "
                                     "documents, writing examples…): wait for it to finish, "
                                     "then move the data.")
            return
        self._set_moving(True)
        self.move_result.clear()
        self.tasks.start(
            "move", lambda progress, cancel: move_home(self.context, target, progress=progress,
                                                       cancel=cancel),
            on_progress=lambda fraction, _text: self.move_progress.setValue(int(fraction * 100)),
            on_success=self._moved,
            on_failure=lambda error: self.move_result.setText(
                describe(error, self.context.log_file)[0]),
            on_finished=lambda: self._set_moving(False))

    def _background_work(self) -> bool:
        """Whether the app's other background tasks (a project's ingestion, say: not a job, so
        the move's own check cannot see it) are still writing into the data folder."""
        parent = self.parentWidget()
        if parent is None:
            return False
        mine = set(self.findChildren(TaskRunner))
        return any(runner.busy() for runner in parent.window().findChildren(TaskRunner)
                   if runner not in mine)

    def _moved(self, result: MoveResult) -> None:
        self.home_path.setText(str(result.new))
        self.move_result.setText(f"Moved {result.files} files. FineTuneFlow now works in "
                                 f"{result.new}. The old folder {result.old} is kept: delete it "
                                 "once you have checked that your projects are all here.")
        self.storage_moved.emit(str(result.new))

    def reject(self) -> None:
        if not self.tasks.busy():  # a move in progress finishes (or fails) before closing
            super().reject()

    def _set_moving(self, moving: bool) -> None:
        self.move_progress.setVisible(moving)
        self.move_button.setEnabled(not moving and not os.environ.get(HOME_ENV))
        self.buttons.setEnabled(not moving)
