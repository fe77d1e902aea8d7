"""Step 2 — Task: what the fine-tuned model should do, and the system prompt it carries."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtWidgets import (
    QButtonGroup,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
)

from finetuneflow.core.generation.tasks import TASK_SPECS, TaskSettings, TaskType
from finetuneflow.core.steps import Step
from finetuneflow.gui.errors import describe
from finetuneflow.gui.pages.step_page import StepPage
from finetuneflow.services.context import AppContext
from finetuneflow.services.generation import GenerationService
from finetuneflow.services.projects import ProjectSummary


class TaskPage(StepPage):
    def __init__(self, step: Step, context: AppContext, project: ProjectSummary) -> None:
        super().__init__(step, context, project)
        self.generation = GenerationService(context)
        settings = self.generation.task_settings(project.id)

        self.choices = QButtonGroup(self)
        kinds = QGroupBox("The model should…")
        kinds_layout = QVBoxLayout(kinds)
        for index, (task_type, spec) in enumerate(TASK_SPECS.items()):
            button = QRadioButton(f"{spec.title} — {spec.description}")
            button.setObjectName(f"task_{task_type.value}")
            button.setChecked(task_type == settings.type)
            self.choices.addButton(button, index)
            kinds_layout.addWidget(button)
        self.choices.idToggled.connect(lambda _id, on: on and self._task_changed())

        self.system_prompt = QPlainTextEdit()
        self.system_prompt.setFixedHeight(80)
        self.per_chunk = QSpinBox(minimum=1, maximum=20, value=settings.examples_per_chunk)
        self.language = QLineEdit(settings.language,
                                  placeholderText="the documents' own language")
        self.style = QLineEdit(settings.style, placeholderText="e.g. formal, short answers")
        self.instruction = QPlainTextEdit(settings.instruction)
        self.instruction.setFixedHeight(60)
        self.instruction.setPlaceholderText("Custom task: what the examples must teach")
        self.status = QLabel()
        self.status.setWordWrap(True)
        form = QFormLayout()
        form.addRow("System prompt:", self.system_prompt)
        form.addRow("Examples per chunk:", self.per_chunk)
        form.addRow("Language:", self.language)
        form.addRow("Style:", self.style)
        form.addRow("Custom instruction:", self.instruction)

        self.body.addWidget(kinds)
        self.body.addLayout(form)
        self.body.addWidget(self.status)
        self.body.addStretch(1)
        self._show_system_prompt(settings)

    def chosen_type(self) -> TaskType:
        return list(TASK_SPECS)[self.choices.checkedId()]

    def _task_changed(self) -> None:
        self._show_system_prompt(replace(self.generation.task_settings(self.project_id),
                                         type=self.chosen_type(), system_prompt=""))

    def _show_system_prompt(self, settings: TaskSettings) -> None:
        default = TASK_SPECS[settings.type].default_system_prompt
        self.system_prompt.setPlainText(settings.system_prompt or default)

    def validatePage(self) -> bool:
        """Store the task when the person moves on; a bad value keeps them here with a reason."""
        task_type = self.chosen_type()
        prompt = self.system_prompt.toPlainText().strip()
        try:
            settings = self.generation.update_task(
                self.project_id, type=task_type, examples_per_chunk=self.per_chunk.value(),
                system_prompt="" if prompt == TASK_SPECS[task_type].default_system_prompt
                else prompt, language=self.language.text().strip(),
                style=self.style.text().strip(),
                instruction=self.instruction.toPlainText().strip())
        except Exception as error:
            self.status.setText(describe(error, self.context.log_file)[0])
            return False
        self.status.setText(f"Saved: {TASK_SPECS[settings.type].title}.")
        return True
