"""A failed generation is shown on the page with its cause and what to do, never as a success."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from finetuneflow.core.generation import LLMSettings
from finetuneflow.gui.main_window import MainWindow
from finetuneflow.gui.pages.preview_page import PreviewPage
from finetuneflow.gui.pages.review_page import ReviewPage
from finetuneflow.services.base_model import ModelService
from finetuneflow.services.context import AppContext
from finetuneflow.services.generation import RETRY_BASE_ENV, GenerationService
from finetuneflow.services.ingest import IngestService
from tests.helpers.fake_llm import FakeLLMServer, Fault

pytestmark = pytest.mark.slow


@pytest.fixture
def project_id(window: MainWindow, context: AppContext, tiny_model_dir: Path,
               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(RETRY_BASE_ENV, "0.01")
    document = tmp_path / "valves.txt"
    document.write_text("\n\n".join(
        f"Valve {n} on deck {n + 2} is inspected every {n + 3} days by watch {n}."
        for n in range(30)), encoding="utf-8")
    project = window.dashboard.create_project("Failing")
    ModelService(context).choose(project.id, str(tiny_model_dir))
    IngestService(context).ingest(project.id, [document])
    return project.id


def dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_the_preview_page_shows_why_a_dead_server_failed(
        window: MainWindow, qtbot: QtBot, context: AppContext, project_id: str,
        answer_yes: list[str]) -> None:
    GenerationService(context).set_llm_settings(project_id, LLMSettings(
        provider="ollama", base_url=dead_url(), model="gpt-oss:20b"))
    page = window.open_project(project_id, "preview").currentPage()
    assert isinstance(page, PreviewPage)
    page.generate.click()
    qtbot.waitUntil(lambda: page.generate.isEnabled() and "fail" in page.status.text(),
                    timeout=60_000)
    text = page.status.text()
    assert "Could not connect" in text and "What to do:" in text
    assert "Happy with them" not in text and "\n" not in text
    assert any("Could not connect" in asked for asked in answer_yes)


def test_the_review_page_shows_why_every_502_failed(
        window: MainWindow, qtbot: QtBot, context: AppContext, project_id: str,
        fake_llm: FakeLLMServer, answer_yes: list[str]) -> None:
    GenerationService(context).set_llm_settings(project_id, LLMSettings(
        provider="ollama", base_url=fake_llm.base_url, model="gpt-oss:20b", concurrency=2))
    page = window.open_project(project_id, "review").currentPage()
    assert isinstance(page, ReviewPage)
    fake_llm.set_fault_rate(1.0, [Fault.BAD_GATEWAY])
    page.budget.setValue(2)
    page.generate.click()
    qtbot.waitUntil(lambda: not page.runner.is_running("generate")
                    and "failed" in page.run_status.text(), timeout=60_000)
    text = page.run_status.text()
    assert "HTTP 502" in text and "What to do:" in text and "Done:" not in text
    assert not page.isComplete()


def test_the_structured_output_mode_is_picked_in_the_llm_settings(
        window: MainWindow, context: AppContext, project_id: str) -> None:
    service = GenerationService(context)
    service.set_llm_settings(project_id, LLMSettings(
        provider="openai", base_url="http://127.0.0.1:8000/v1", model="tiny.gguf",
        structured_mode="json_object"))
    page = window.open_project(project_id, "preview").currentPage()
    assert isinstance(page, PreviewPage)
    assert page.llm.structured.currentData() == "json_object"
    page.llm.structured.setCurrentIndex(page.llm.structured.findData("text"))
    assert page.save_llm_settings()
    assert service.llm_settings(project_id).resolved_structured_mode == "text"
