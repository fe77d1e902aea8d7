"""Where the examples are written: provider, address, model, key, concurrency, and a Test.

The key goes to the system keychain the moment it is saved and is never part of the
project's settings (OLLAMA_API_KEY, when set, wins and is shown as such).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from finetuneflow.core.generation import (
    AuthError,
    ConnectionCheck,
    LLMSettings,
    ModelNotFoundError,
    QuotaExhaustedError,
    plain_http_key_warning,
)
from finetuneflow.core.generation.errors import ContextTooSmallError
from finetuneflow.core.generation.settings import (
    DEFAULT_BASE_URLS,
    DEFAULT_CONCURRENCY,
    DEFAULT_MODELS,
)
from finetuneflow.gui.colours import set_tone
from finetuneflow.gui.errors import describe
from finetuneflow.gui.workers import TaskRunner
from finetuneflow.services.context import AppContext
from finetuneflow.services.generation import GenerationFailed, GenerationService
from finetuneflow.services.secrets import Secret, secret_source, set_secret

PROVIDERS = {"ollama-cloud": "Ollama Cloud", "ollama": "Local Ollama",
             "openai": "OpenAI-compatible server"}
STRUCTURED_MODES = {"auto": "Automatic (what the server takes)",
                    "json_schema": "JSON schema", "json_object": "Any JSON object",
                    "text": "Plain text (schema in the prompt)"}


def run_failure_text(error: BaseException, log_file: Path) -> str:
    """A failed generation run: its cause, then what to do about it, for a status label."""
    text, is_bug = describe(error, log_file)
    if is_bug:
        return " ".join(text.split())
    cause = error.error if isinstance(error, GenerationFailed) else None
    if isinstance(cause, ModelNotFoundError):
        hint = "pick a model the server lists in Model above (Test connection fills the list)"
    elif isinstance(cause, AuthError):
        hint = "paste a valid API key above and press Save key"
    elif isinstance(cause, ContextTooSmallError):
        hint = ("make the chunks smaller (Data step: Chunk size, then Re-cut chunks), or choose "
                "a model or server with a larger context")
    elif isinstance(cause, QuotaExhaustedError):
        hint = "wait for the limit to reset, or change plan, and generate again"
    else:
        hint = ("check the server and the LLM settings above (Test connection says what is "
                "wrong), then generate again")
    return f"{text} What to do: {hint}."


class LLMSettingsBox(QGroupBox):
    """Edits LLMSettings; `changed` fires on every edit so the owner can mark results stale."""

    changed = Signal()

    def __init__(self, context: AppContext, settings: LLMSettings,
                 parent: QWidget | None = None) -> None:
        super().__init__("LLM that writes the examples", parent)
        self.context = context
        self.generation = GenerationService(context)
        self.runner = TaskRunner(self)
        self._build()
        self.set_settings(settings)

    def _build(self) -> None:
        self.provider = QComboBox(objectName="llmProvider")
        for key, label in PROVIDERS.items():
            self.provider.addItem(label, key)
        self.base_url = QLineEdit(objectName="llmBaseUrl")
        self.model = QComboBox(objectName="llmModel", editable=True)
        self.key = QLineEdit(objectName="llmKey", echoMode=QLineEdit.EchoMode.Password)
        self.save_key = QPushButton("Save key", objectName="saveKey")
        self.concurrency = QSpinBox(objectName="llmConcurrency", minimum=1, maximum=64)
        self.structured = QComboBox(objectName="llmStructuredOutput")
        for key, label in STRUCTURED_MODES.items():
            self.structured.addItem(label, key)
        self.structured.setToolTip(
            "How the examples' JSON shape is asked for. Automatic tries a JSON schema, then "
            "any JSON object, then the schema written in the prompt, as far as the server needs.")
        self.test = QPushButton("Test connection", objectName="testConnection")
        self.result = QLabel(objectName="connectionResult", wordWrap=True)
        self.key_warning = QLabel(objectName="llmKeyWarning", wordWrap=True, visible=False)
        set_tone(self.key_warning, "warning")
        key_row = QHBoxLayout()
        key_row.addWidget(self.key, 1)
        key_row.addWidget(self.save_key)
        test_row = QHBoxLayout()
        test_row.addWidget(self.test)
        test_row.addWidget(self.result, 1)
        form = QFormLayout(self)
        form.addRow("Provider:", self.provider)
        form.addRow("Server address:", self.base_url)
        form.addRow("Model:", self.model)
        form.addRow("API key:", key_row)
        form.addRow(self.key_warning)
        form.addRow("Requests at once:", self.concurrency)
        form.addRow("Structured output:", self.structured)
        form.addRow(test_row)
        self.provider.currentIndexChanged.connect(self._provider_changed)
        for signal in (self.base_url.textEdited, self.model.currentTextChanged,
                       self.concurrency.valueChanged, self.structured.currentIndexChanged):
            signal.connect(self.changed)
        self.save_key.clicked.connect(self._save_key)
        self.test.clicked.connect(self.run_test)
        for signal in (self.base_url.textChanged, self.key.textChanged,
                       self.provider.currentIndexChanged):
            signal.connect(self._show_key_warning)

    def settings(self) -> LLMSettings:
        provider = self.provider.currentData()
        concurrency = self.concurrency.value()
        return LLMSettings(
            provider=provider, base_url=self.base_url.text().strip(),
            model=self.model.currentText().strip(),
            concurrency=None if concurrency == DEFAULT_CONCURRENCY[provider] else concurrency,
            structured_mode=self.structured.currentData())

    def set_settings(self, settings: LLMSettings) -> None:
        self.provider.blockSignals(True)
        self.provider.setCurrentIndex(max(0, self.provider.findData(settings.provider)))
        self.provider.blockSignals(False)
        self._show_defaults(settings.provider)
        self.base_url.setText(settings.base_url)
        self.model.setCurrentText(settings.model)
        self.concurrency.setValue(settings.resolved_concurrency)
        self.structured.blockSignals(True)
        self.structured.setCurrentIndex(
            max(0, self.structured.findData(settings.resolved_structured_mode)))
        self.structured.blockSignals(False)
        # Asking the keychain loads its library (a tenth of a second or more): a box that is
        # built but not shown yet (a page not visited) asks when it is first shown.
        self._key_state_shown = False
        if self.isVisible():
            self._show_key_state()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._key_state_shown:
            self._show_key_state()

    def _provider_changed(self) -> None:
        provider = self.provider.currentData()
        self._show_defaults(provider)
        self.base_url.clear()
        self.model.setCurrentText("")
        self.concurrency.setValue(DEFAULT_CONCURRENCY[provider])
        self.result.clear()
        self.changed.emit()

    def _show_defaults(self, provider: str) -> None:
        self.base_url.setPlaceholderText(DEFAULT_BASE_URLS.get(provider) or "http://host:8000/v1")
        self.model.lineEdit().setPlaceholderText(DEFAULT_MODELS.get(provider) or
                                                 "the model's name on that server")
        self.concurrency.setToolTip(
            "How many requests run at once. Ollama Cloud plans allow 1, 3 or 10."
            if provider == "ollama-cloud" else "How many requests run at once.")

    def _show_key_state(self) -> None:
        self._key_state_shown = True
        source = secret_source(Secret.LLM_API_KEY)
        self.key.clear()
        self.key.setPlaceholderText({
            "environment": "set by OLLAMA_API_KEY in the environment",
            "keychain": "saved in the system keychain (type a new one to replace it)",
        }.get(source or "", "paste your key (needed for Ollama Cloud)"))
        self._show_key_warning()

    def _show_key_warning(self) -> None:
        """Before the key crosses the network unencrypted, say so (loopback is fine)."""
        has_key = bool(self.key.text().strip()) or secret_source(Secret.LLM_API_KEY) is not None
        warning = plain_http_key_warning(self.settings(), has_key)
        self.key_warning.setText(warning or "")
        self.key_warning.setVisible(warning is not None)

    def _save_key(self) -> None:
        value = self.key.text().strip()
        if not value:
            return
        try:
            set_secret(Secret.LLM_API_KEY, value)
        except Exception as error:
            self._show_result(describe(error, self.context.log_file)[0], ok=False)
            return
        self._show_key_state()
        self._show_result("Key saved in the system keychain.", ok=True)

    def run_test(self) -> None:
        if self.key.text().strip():
            self._save_key()
        settings = self.settings()
        self.test.setEnabled(False)
        set_tone(self.result, None)
        self.result.setText("Testing…")
        self.runner.start("test", lambda _progress, _cancel:
                          self.generation.check_connection(settings),
                          on_success=self._tested, on_finished=lambda: self.test.setEnabled(True),
                          on_failure=lambda error: self._show_result(
                              describe(error, self.context.log_file)[0], ok=False))

    def _tested(self, check: ConnectionCheck) -> None:
        if check.models:
            current = self.model.currentText()
            self.model.blockSignals(True)
            self.model.clear()
            self.model.addItems(list(check.models))
            self.model.setCurrentText(current)
            self.model.blockSignals(False)
        self._show_result(check.message, ok=check.ok)

    def _show_result(self, text: str, *, ok: bool) -> None:
        set_tone(self.result, "ok" if ok else "error")
        self.result.setText(text)
