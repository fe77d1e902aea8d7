"""The Preview page says when the server refused json_schema and another mode is used."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from finetuneflow.core.generation import LLMSettings
from finetuneflow.core.generation.client import forget_structured_modes
from finetuneflow.gui.main_window import MainWindow
from finetuneflow.gui.pages.preview_page import PreviewPage
from finetuneflow.services.base_model import ModelService
from finetuneflow.services.context import AppContext
from finetuneflow.services.generation import RETRY_BASE_ENV, GenerationService
from finetuneflow.services.ingest import IngestService
from tests.helpers.fake_llm import FakeLLMServer

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def fresh_modes() -> Iterator[None]:
    forget_structured_modes()
    yield
    forget_structured_modes()


def test_the_preview_page_says_the_structured_output_fallback(
        window: MainWindow, qtbot: QtBot, context: AppContext, tiny_model_dir: Path,
        tmp_path: Path, fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RETRY_BASE_ENV, "0.01")
    document = tmp_path / "valves.txt"
    document.write_text("\n\n".join(f"Valve {n} on deck {n + 2} is inspected every {n + 3} "
                                    "days." for n in range(30)), encoding="utf-8")
    project = window.dashboard.create_project("Schema")
    ModelService(context).choose(project.id, str(tiny_model_dir))
    IngestService(context).ingest(project.id, [document])
    GenerationService(context).set_llm_settings(project.id, LLMSettings(
        provider="openai", base_url=f"{fake_llm.base_url}/v1", model="gpt-oss:20b"))
    fake_llm.set_reject_json_schema()
    page = window.open_project(project.id, "preview").currentPage()
    assert isinstance(page, PreviewPage)
    page.generate.click()
    qtbot.waitUntil(lambda: page.generate.isEnabled() and "kept" in page.status.text(),
                    timeout=60_000)
    text = page.status.text()
    assert "The server does not accept json_schema; using json_object for this server" in text
    assert "Happy with them? Go on to Review." in text
