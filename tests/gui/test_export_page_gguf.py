"""The Export page's GGUF boxes on a real finished run of the tiny model: what can be made is
offered, what cannot is disabled with the reason, and a ticked box ends in the export."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

import pytest
from PySide6.QtCore import QThreadPool
from pytestqt.qtbot import QtBot

from finetuneflow.gui.main_window import MainWindow
from finetuneflow.gui.pages.export_page import ExportPage
from finetuneflow.services.base_model import ModelService
from finetuneflow.services.context import AppContext
from finetuneflow.services.datasets import DatasetService
from finetuneflow.services.finished_runs import FinishedRuns
from finetuneflow.services.projects import ProjectService
from finetuneflow.storage.home import Home
from tests.helpers.fake_ollama import fake_ollama
from tests.helpers.finished_run import arithmetic_chats, train

pytestmark = pytest.mark.slow
CHILD_TIMEOUT_MS = 300_000


@pytest.fixture(scope="module")
def trained_home(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[tuple[Path, str]]:
    root = tmp_path_factory.mktemp("export-page-gguf")
    patch = pytest.MonkeyPatch()
    patch.setenv("OMP_NUM_THREADS", "1")
    context = AppContext.open(Home(root / "home"))
    try:
        project_id = ProjectService(context).create("GGUF tutor").id
        ModelService(context).choose(project_id, str(tiny_model_dir))
        DatasetService(context).import_file(project_id, arithmetic_chats(root / "chats.jsonl"))
        train(context, project_id)
        yield root / "home", project_id
    finally:
        context.close()
        patch.undo()


@pytest.fixture
def page(qtbot: QtBot, trained_home: tuple[Path, str]) -> Iterator[ExportPage]:
    context = AppContext.open(Home(trained_home[0]))
    window = MainWindow(context)
    qtbot.addWidget(window)
    window.show()
    export_page = window.open_project(trained_home[1], "export").currentPage()
    assert isinstance(export_page, ExportPage)
    qtbot.waitUntil(lambda: not export_page.runner.is_running("report"), timeout=60_000)
    yield export_page
    QThreadPool.globalInstance().waitForDone(CHILD_TIMEOUT_MS)
    context.close()


@pytest.mark.skipif(sys.platform == "win32", reason="the fake ollama is a POSIX script")
def test_ticking_q8_0_exports_a_gguf_that_ollama_registers(
        page: ExportPage, qtbot: QtBot, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert page.gguf["f16"].isEnabled() and page.gguf["q8_0"].isEnabled()
    assert not any(box.isChecked() for box in page.gguf.values())
    if find_spec("llama_cpp") is None:
        assert not page.gguf["q4_k_m"].isEnabled()
        assert "llama-cpp-python" in page.gguf["q4_k_m"].toolTip()
        assert page.gguf_note.isVisible() and "llama-cpp-python" in page.gguf_note.text()
    page.merged.setChecked(False)
    page.gguf["q8_0"].setChecked(True)
    assert page.merged.isChecked()  # the GGUF is made from the merged model
    page.export_button.click()
    assert not page.gguf["q8_0"].isEnabled()  # busy
    qtbot.waitUntil(lambda: page.task is None, timeout=CHILD_TIMEOUT_MS)
    exported = page.exported
    assert exported is not None, page.status.text()
    assert [entry.file for entry in exported.gguf] == ["gguf/model-q8_0.gguf"]
    assert "GGUF Q8_0" in page.summary.text() and page.gguf["q8_0"].isEnabled()
    qtbot.waitUntil(lambda: "gguf/model-q8_0.gguf" in page.report.toPlainText(),
                    timeout=60_000)
    with fake_ollama(tmp_path, monkeypatch, models=["gguf-tutor"]) as server:
        server.set_responder(lambda request, api: "6")
        page.refresh()
        assert page.register.isEnabled() and "gguf folder" in page.ollama_hint.text()
        assert not page.quantize.isEnabled()  # the GGUF is already quantised
        page.register.click()
        qtbot.waitUntil(lambda: page.task is None, timeout=CHILD_TIMEOUT_MS)
        assert "gguf-tutor" in page.ollama_box.title(), page.status.text()


def test_the_adapter_gguf_box_exports_the_lora_gguf_without_the_merged_model(
        page: ExportPage, qtbot: QtBot) -> None:
    assert page.gguf_adapter.isEnabled() and not page.gguf_adapter.isChecked()
    assert "base model" in page.gguf_adapter.toolTip()
    page.merged.setChecked(False)
    page.gguf_adapter.setChecked(True)
    assert not page.merged.isChecked()  # the adapter GGUF needs no merged model
    page.export_button.click()
    assert not page.gguf_adapter.isEnabled()  # busy
    qtbot.waitUntil(lambda: page.task is None, timeout=CHILD_TIMEOUT_MS)
    exported = page.exported
    assert exported is not None, page.status.text()
    assert [(entry.file, entry.kind) for entry in exported.gguf] == [
        ("gguf/adapter-f16.gguf", "adapter")]
    assert (exported.folder / "gguf" / "Modelfile.adapter").is_file()
    assert "GGUF F16 adapter" in page.summary.text() and page.gguf_adapter.isEnabled()
    assert not page.register.isEnabled()  # Ollama's import needs the merged model or GGUF


@pytest.fixture
def dora_adapter(trained_home: tuple[Path, str]) -> Iterator[None]:
    """The run's adapter marked as DoRA (which llama.cpp cannot apply) while the test runs."""
    context = AppContext.open(Home(trained_home[0]))
    path = FinishedRuns(context).get(trained_home[1]).adapter_dir / "adapter_config.json"
    context.close()
    original = path.read_text()
    path.write_text(json.dumps({**json.loads(original), "use_dora": True}))
    yield
    path.write_text(original)


def test_an_adapter_that_cannot_be_written_disables_the_box_with_the_reason(
        dora_adapter: None, page: ExportPage) -> None:
    assert not page.gguf_adapter.isEnabled() and not page.gguf_adapter.isChecked()
    assert "DoRA" in page.gguf_adapter.toolTip() and "DoRA" in page.gguf_note.text()
    assert page.gguf["f16"].isEnabled()  # the merged model's GGUF is still offered
