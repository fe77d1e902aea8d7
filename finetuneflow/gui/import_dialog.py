"""The options of a dataset import: format (detected unless chosen), system prompt, CSV columns."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
)

from finetuneflow.core.dataset.formats import FORMATS, CsvColumns


class ImportDialog(QDialog):
    def __init__(self, path: Path, parent: QDialog | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Import a dataset")
        self.format = QComboBox()
        self.format.addItem("Detect automatically", "auto")
        for name in FORMATS:
            self.format.addItem(name, name)
        if path.suffix.lower() == ".csv":
            self.format.setCurrentIndex(self.format.findData("csv"))
        self.system_prompt = QPlainTextEdit()
        self.system_prompt.setPlaceholderText("Optional: added to examples without one")
        self.system_prompt.setFixedHeight(70)
        self.prompt_column = QLineEdit(placeholderText="detected from the header")
        self.completion_column = QLineEdit(placeholderText="detected from the header")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow(QLabel(f"<b>{path.name}</b>"))
        form.addRow("Format:", self.format)
        form.addRow("System prompt:", self.system_prompt)
        form.addRow("CSV prompt column:", self.prompt_column)
        form.addRow("CSV answer column:", self.completion_column)
        form.addRow(buttons)

    def chosen_format(self) -> str:
        return str(self.format.currentData())

    def csv_columns(self) -> CsvColumns | None:
        prompt, answer = self.prompt_column.text().strip(), self.completion_column.text().strip()
        return CsvColumns(prompt, answer) if prompt and answer else None
