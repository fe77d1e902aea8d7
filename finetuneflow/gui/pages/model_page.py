"""Step 1 — Model: the curated list, a Hub id, or a local folder; the model's facts; weights."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from finetuneflow.core.model_catalogue import CuratedModel, curated_models, format_params
from finetuneflow.core.steps import Step
from finetuneflow.core.units import format_bytes
from finetuneflow.gui.colours import set_tone
from finetuneflow.gui.errors import describe
from finetuneflow.gui.pages.step_page import StepPage
from finetuneflow.gui.styles import styled
from finetuneflow.gui.workers import TaskRunner
from finetuneflow.services.base_model import GatedModelError, ModelChoice, ModelService
from finetuneflow.services.context import AppContext
from finetuneflow.services.errors import UserError
from finetuneflow.services.ingest import IngestService
from finetuneflow.services.projects import ProjectSummary
from finetuneflow.services.samples import SampleService
from finetuneflow.services.secrets import Secret, set_secret

COLUMNS = ("Model", "Size", "Licence", "Access", "Ollama")
SIZE_TIP = ("Parameters (M: million, B: billion) and the size of the weights to download "
            "(16-bit); QLoRA training holds them in about a quarter of that.")


WEIGHT_BYTES = 2  # a parameter in the 16-bit weights the Hub serves


def describe_size(params: int) -> str:
    """"135M parameters · about 258 MB": the count with its unit, and the download it means."""
    return f"{format_params(params)} parameters · about {format_bytes(params * WEIGHT_BYTES)}"


def _row(model: CuratedModel) -> tuple[str, ...]:
    return (model.id, describe_size(model.params), model.licence,
            "gated: needs a token" if model.gated else "open", _ollama(model))


def _ollama(model: CuratedModel) -> str:
    if model.ollama_merged:
        return "yes"
    return "via GGUF" if model.gguf else "no"


def _tip(model: CuratedModel, column: int) -> str:
    if column == 1:
        return SIZE_TIP
    if column == COLUMNS.index("Ollama") and model.export_note:
        return model.export_note
    return model.note or model.id


class ModelPage(StepPage):
    def __init__(self, step: Step, context: AppContext, project: ProjectSummary) -> None:
        super().__init__(step, context, project)
        self.models = ModelService(context)
        self.tasks = TaskRunner(self)
        self.choice: ModelChoice | None = None
        self._last_ref = ""
        self._token_wanted_for: str | None = None  # a gated model whose check just failed
        self._curated = curated_models()
        self.samples = SampleService(context)
        self.project_note = styled(QLabel(objectName="projectNote", wordWrap=True))
        self.body.addWidget(self.project_note)
        self._show_note(project.note)

        self.filter = QLineEdit(placeholderText="Filter: family, size, licence…")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self._apply_filter)
        self.table = self._build_table()

        self.hub_id = QLineEdit(placeholderText="or any Hugging Face id, e.g. Qwen/Qwen3-1.7B")
        self.hub_id.returnPressed.connect(lambda: self.select(self.hub_id.text()))
        use_hub = QPushButton("Use this id")
        use_hub.clicked.connect(lambda: self.select(self.hub_id.text()))
        pick_folder = QPushButton("Choose a folder…")
        pick_folder.clicked.connect(self._pick_folder)
        other = QHBoxLayout()
        other.addWidget(self.hub_id, 1)
        other.addWidget(use_hub)
        other.addWidget(pick_folder)

        self.body.addWidget(self.filter)
        self.body.addWidget(self.table, 1)
        self.body.addLayout(other)
        self.body.addWidget(self._build_facts_box())
        self._show_choice(self.models.current(project.id))

    def _build_table(self) -> QTableWidget:
        table = QTableWidget(len(self._curated), len(COLUMNS))
        table.setObjectName("curatedModels")
        table.setHorizontalHeaderLabels(COLUMNS)
        table.verticalHeader().hide()
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        for row, model in enumerate(self._curated):
            for column, value in enumerate(_row(model)):
                item = QTableWidgetItem(value)
                item.setToolTip(_tip(model, column))
                table.setItem(row, column, item)
        table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        table.resizeColumnsToContents()
        # Only a click or Enter chooses: a selection Qt makes by itself must not download.
        table.cellClicked.connect(lambda row, _col: self._choose_row(row))
        table.activated.connect(lambda index: self._choose_row(index.row()))
        return table

    def _build_facts_box(self) -> QGroupBox:
        box = QGroupBox("Chosen model")
        self.facts = QLabel("No model chosen yet: pick one above, type a Hub id, or choose a "
                            "folder with a model (config.json and tokenizer files).")
        self.facts.setWordWrap(True)
        self.facts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.hide()
        self.download = QPushButton("Download weights")
        self.download.clicked.connect(self._download_weights)
        self.download.hide()
        self.cancel = QPushButton("Cancel")
        self.cancel.clicked.connect(self.tasks.cancel_all)
        self.cancel.hide()
        buttons = QHBoxLayout()
        buttons.addWidget(self.progress, 1)
        buttons.addWidget(self.download)
        buttons.addWidget(self.cancel)
        layout = QVBoxLayout(box)
        layout.addWidget(self.facts)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        return box

    # --- choosing -------------------------------------------------------------------------------

    def _apply_filter(self, text: str) -> None:
        words = text.lower().split()
        for row, model in enumerate(self._curated):
            tags = ("thinking",) if model.thinking else ()
            haystack = " ".join((*_row(model), model.family, model.note, *tags)).lower()
            self.table.setRowHidden(row, not all(word in haystack for word in words))

    def _choose_row(self, row: int) -> None:
        if self._curated[row].id != (self.choice and self.choice.ref):
            self.select(self._curated[row].id)

    def _pick_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a model folder")
        if folder:
            self.select(folder)

    def select(self, ref: str) -> None:
        """Check the model and store it on the project, in the background."""
        if not ref.strip() or self.tasks.is_running("choose"):
            return
        self._last_ref = ref.strip()
        self._busy(f"Checking {self._last_ref}…")
        self.tasks.start(
            "choose", lambda progress, cancel: self.models.choose(
                self.project_id, ref, cancel, rechunk=lambda project: IngestService(
                    self.context).rechunk_in_worker(project, progress, cancel)),
            on_progress=lambda _fraction, message: self.status.setText(message),
            on_success=self._show_choice, on_failure=self._show_failure, on_finished=self._idle)

    def _download_weights(self) -> None:
        self._busy("Downloading the weights… you can go on meanwhile.")
        self.progress.setRange(0, 1000)
        self.tasks.start(
            "download",
            lambda progress, cancel: self.models.download_weights(self.project_id, progress,
                                                                  cancel),
            on_progress=self._show_progress, on_success=self._show_choice,
            on_failure=self._show_failure, on_finished=self._idle,
            on_cancel=lambda: self.status.setText("Download cancelled; finished files are kept."))

    def _show_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(fraction * 1000))
        self.status.setText(message)

    # --- showing --------------------------------------------------------------------------------

    def _busy(self, message: str) -> None:
        self.status.setText(message)
        set_tone(self.status, None)
        self.progress.setRange(0, 0)
        self.progress.show()
        self.cancel.show()
        self.download.setEnabled(False)

    def _idle(self) -> None:
        self.progress.hide()
        self.cancel.hide()
        self.download.setEnabled(True)
        ref, self._token_wanted_for = self._token_wanted_for, None
        if ref:
            self._ask_token(ref)

    def _show_choice(self, choice: ModelChoice | None) -> None:
        self.choice = choice
        if choice is not None:
            self.facts.setText(f"<b>{choice.ref}</b><br>{choice.facts.describe()}")
            weights = ("Weights are on this computer." if choice.weights_ready else
                       "Weights are not downloaded yet: they are fetched before training, or "
                       "now with “Download weights”.")
            note = choice.facts.export_note
            self.status.setText(f"{weights} {note}".strip())
            set_tone(self.status, "warning" if note else None)
            self.download.setVisible(not choice.weights_ready)
            self.hub_id.setText("" if choice.ref in {m.id for m in self._curated} else choice.ref)
            self._show_note(self.project_note.text())
        self.completeChanged.emit()

    def _show_note(self, stored: str = "") -> None:
        """The project's note: the sample's follows its state (a model chosen here changes
        what it says next); another project's is the one it was given."""
        note = self.samples.note(self.project_id) or stored
        self.project_note.setText(note)
        self.project_note.setVisible(bool(note))

    def _show_failure(self, error: BaseException) -> None:
        text, _is_bug = describe(error, self.context.log_file)
        self.status.setText(text)
        set_tone(self.status, "error")
        if isinstance(error, GatedModelError) and self._last_ref:
            self._token_wanted_for = self._last_ref  # asked once the task has ended: _idle

    def _ask_token(self, ref: str) -> None:
        """A gated model: take the token into the keychain and try again."""
        token, ok = QInputDialog.getText(
            self, "Hugging Face token",
            f"{ref} is gated. Accept its licence on huggingface.co, then paste a token with "
            "read access (it is kept in the system keychain, never in the project):",
            QLineEdit.EchoMode.Password)
        if not (ok and token.strip()):
            return
        try:
            set_secret(Secret.HF_TOKEN, token)
        except UserError as error:
            self.status.setText(str(error))
            return
        self.select(ref)

    def isComplete(self) -> bool:
        return self.choice is not None
