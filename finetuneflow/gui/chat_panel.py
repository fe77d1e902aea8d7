"""“Try it”: one prompt, two answers side by side — the base model's and the fine-tuned one's —
streamed token by token from the trainer child."""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from finetuneflow.core.child_protocol import BASE, FINETUNED
from finetuneflow.gui.errors import describe
from finetuneflow.gui.workers import TaskRunner
from finetuneflow.services.chat import ChatService
from finetuneflow.services.context import AppContext

PLACEHOLDERS = {
    BASE: "The base model's answer, as it was before training, appears here as it is written.",
    FINETUNED: "The fine-tuned model's answer to the same prompt appears here, after the "
               "base model's: compare the two."}
SPEAKING = {BASE: "The base model is answering…", FINETUNED: "The fine-tuned model is answering…"}


class TokenRelay(QObject):
    """Carries streamed text from the worker thread to the main thread (a queued signal)."""

    token = Signal(str, str)  # variant, text


class ChatPanel(QWidget):
    def __init__(self, context: AppContext, project_id: str) -> None:
        super().__init__()
        self.context = context
        self.project_id = project_id
        self.service = ChatService(context)
        self.runner = TaskRunner(self)
        self.run_id: int | None = None
        self._heard: set[str] = set()
        layout = QVBoxLayout(self)
        layout.addLayout(self._build_settings())
        layout.addLayout(self._build_prompt_row())
        layout.addWidget(self._build_answers(), 1)

    def _build_settings(self) -> QHBoxLayout:
        self.system_prompt = QPlainTextEdit(objectName="chatSystemPrompt",
                                            placeholderText="No system prompt")
        self.system_prompt.setFixedHeight(52)
        self.system_prompt.setToolTip("Starts as the system prompt the model was trained with.")
        self.temperature = QDoubleSpinBox(objectName="chatTemperature", minimum=0.0,
                                          maximum=2.0, singleStep=0.1, value=0.7)
        self.temperature.setToolTip("0 always picks the likeliest next token, so the same "
                                    "prompt gives the same answer.")
        self.max_tokens = QSpinBox(objectName="chatMaxTokens", minimum=1, maximum=4096,
                                   value=256)
        row = QHBoxLayout()
        row.addWidget(QLabel("System prompt:"), 0, Qt.AlignmentFlag.AlignTop)
        row.addWidget(self.system_prompt, 1)
        for label, spin in (("Temperature:", self.temperature), ("Max tokens:", self.max_tokens)):
            row.addWidget(QLabel(label), 0, Qt.AlignmentFlag.AlignTop)
            row.addWidget(spin, 0, Qt.AlignmentFlag.AlignTop)
        return row

    def _build_prompt_row(self) -> QHBoxLayout:
        self.prompt = QLineEdit(objectName="chatPrompt", clearButtonEnabled=True,
                                placeholderText="Ask both models something…")
        self.prompt.returnPressed.connect(self.ask)
        self.ask_button = QPushButton("Ask", objectName="askButton")
        self.ask_button.clicked.connect(self.ask)
        self.stop_button = QPushButton("Stop", objectName="stopChat", enabled=False)
        self.stop_button.clicked.connect(self.stop)
        self.status = QLabel(objectName="chatStatus", wordWrap=True)
        row = QHBoxLayout()
        row.addWidget(self.prompt, 3)
        row.addWidget(self.ask_button)
        row.addWidget(self.stop_button)
        row.addWidget(self.status, 2)
        return row

    def _build_answers(self) -> QSplitter:
        self.answers = {
            BASE: QPlainTextEdit(objectName="baseAnswer", readOnly=True,
                                 placeholderText=PLACEHOLDERS[BASE]),
            FINETUNED: QPlainTextEdit(objectName="finetunedAnswer", readOnly=True,
                                      placeholderText=PLACEHOLDERS[FINETUNED])}
        self.boxes = {variant: QGroupBox() for variant in self.answers}
        splitter = QSplitter(Qt.Orientation.Horizontal, objectName="chatAnswers")
        splitter.setChildrenCollapsible(False)  # the point is to see both, side by side
        for variant, pane in self.answers.items():
            box_layout = QVBoxLayout(self.boxes[variant])
            box_layout.addWidget(pane)
            splitter.addWidget(self.boxes[variant])
            splitter.setStretchFactor(splitter.count() - 1, 1)
        return splitter

    def set_run(self, run_id: int) -> None:
        """Answer with this run's adapter, from the system prompt it was trained with."""
        self.run_id = run_id
        self.boxes[BASE].setTitle("Base model")
        self.boxes[FINETUNED].setTitle(f"Fine-tuned (run {run_id})")
        self.system_prompt.setPlainText(self.service.trained_system_prompt(self.project_id,
                                                                           run_id))

    # --- asking ---------------------------------------------------------------------------------

    def ask(self) -> None:
        if self.run_id is None or self.runner.is_running("chat"):
            return
        prompt = self.prompt.text().strip()
        if not prompt:
            self.status.setText("Type a prompt first.")
            return
        for pane in self.answers.values():
            pane.clear()
        self._heard.clear()
        relay = TokenRelay()
        relay.token.connect(self._on_token, Qt.ConnectionType.QueuedConnection)
        run_id, system = self.run_id, self.system_prompt.toPlainText()
        temperature, max_tokens = self.temperature.value(), self.max_tokens.value()
        self._set_running(True)
        self.status.setText("Loading the base and the fine-tuned model…")
        # `relay` is held by the closure, so it lives as long as the worker that emits on it.
        self.runner.start(
            "chat", lambda _progress, cancel: self.service.compare(
                self.project_id, prompt, run_id=run_id, system_prompt=system,
                temperature=temperature, max_tokens=max_tokens, cancel=cancel,
                on_token=lambda variant, text: relay.token.emit(variant, text)),
            on_success=self._answered, on_failure=self._failed,
            on_cancel=lambda: self.status.setText("Stopped. The answers so far are shown."),
            on_finished=lambda: self._set_running(False))

    def stop(self) -> None:
        self.runner.cancel("chat")
        self.status.setText("Stopping after the current token…")

    def _on_token(self, variant: str, text: str) -> None:
        if variant not in self._heard:
            self._heard.add(variant)
            self.status.setText(SPEAKING.get(variant, ""))
        pane = self.answers[variant]
        pane.moveCursor(QTextCursor.MoveOperation.End)
        pane.insertPlainText(text)

    def _answered(self, answers: dict[str, str]) -> None:
        for variant, pane in self.answers.items():
            pane.setPlainText(answers.get(variant, ""))  # the clean, whole answer
        self.status.setText("Done. Ask again, or change the settings.")

    def _failed(self, error: BaseException) -> None:
        self.status.setText(describe(error, self.context.log_file)[0])

    def _set_running(self, running: bool) -> None:
        self.ask_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
