from __future__ import annotations

from pytestqt.qtbot import QtBot

from finetuneflow.core.generation.tasks import TaskType
from finetuneflow.gui.main_window import MainWindow
from finetuneflow.gui.pages.task_page import TaskPage
from finetuneflow.services.generation import GenerationService


def test_task_is_saved_on_next_and_custom_needs_an_instruction(window: MainWindow,
                                                               qtbot: QtBot) -> None:
    project = window.dashboard.create_project("Task page")
    page = window.open_project(project.id, "task").currentPage()
    assert isinstance(page, TaskPage) and page.chosen_type() == TaskType.QA
    assert "knowledgeable assistant" in page.system_prompt.toPlainText()

    page.findChild(type(page.choices.button(0)), "task_custom").setChecked(True)
    assert page.chosen_type() == TaskType.CUSTOM
    assert not page.validatePage()  # no instruction yet: stay, with a reason
    assert page.status.text()
    page.instruction.setPlainText("Teach the model to answer like a librarian.")
    page.per_chunk.setValue(5)
    assert page.validatePage()
    saved = GenerationService(page.context).task_settings(project.id)
    assert (saved.type, saved.examples_per_chunk) == (TaskType.CUSTOM, 5)
    assert saved.instruction.startswith("Teach the model")
