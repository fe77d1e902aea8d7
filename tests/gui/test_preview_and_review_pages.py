"""The Preview and Review pages against the fake LLM server, over real HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QItemSelectionModel
from pytestqt.qtbot import QtBot

from finetuneflow.core.generation import LLMSettings
from finetuneflow.core.steps import step_index
from finetuneflow.gui.main_window import MainWindow
from finetuneflow.gui.pages.preview_page import PreviewPage
from finetuneflow.gui.pages.review_page import ReviewPage
from finetuneflow.services.base_model import ModelService
from finetuneflow.services.context import AppContext
from finetuneflow.services.generation import GenerationService
from finetuneflow.services.ingest import IngestService
from finetuneflow.services.review import ExampleFilter, ReviewService
from tests.helpers.fake_llm import FakeLLMServer
from tests.helpers.images import assert_not_blank

pytestmark = pytest.mark.slow


def write_document(folder: Path) -> Path:
    paragraphs = [" ".join(f"Valve {p}-{s} on deck {s + 2} is inspected every {p + 3} days "
                           f"by the crew of watch {s}." for s in range(6)) for p in range(24)]
    path = folder / "maintenance.txt"
    path.write_text("\n\n".join(paragraphs), encoding="utf-8")
    return path


@pytest.fixture
def project_id(window: MainWindow, context: AppContext, tiny_model_dir: Path,
               tmp_path: Path) -> str:
    project = window.dashboard.create_project("Review")
    ModelService(context).choose(project.id, str(tiny_model_dir))
    IngestService(context).ingest(project.id, [write_document(tmp_path)])
    return project.id


def use_server(context: AppContext, project_id: str, server: FakeLLMServer,
               concurrency: int = 4) -> None:
    GenerationService(context).set_llm_settings(project_id, LLMSettings(
        provider="ollama", base_url=server.base_url, model="gpt-oss:20b",
        concurrency=concurrency))


def test_preview_tests_the_connection_and_shows_examples_next_to_their_text(
        window: MainWindow, qtbot: QtBot, project_id: str, fake_llm: FakeLLMServer,
        tmp_path: Path) -> None:
    page = window.open_project(project_id, "preview").currentPage()
    assert isinstance(page, PreviewPage) and page.empty.isVisible()
    page.llm.provider.setCurrentIndex(page.llm.provider.findData("ollama"))
    page.llm.base_url.setText(fake_llm.base_url)
    page.llm.model.setCurrentText("no-such-model")
    page.llm.test.click()
    qtbot.waitUntil(lambda: page.llm.test.isEnabled() and "Testing" not in page.llm.result.text(),
                    timeout=30_000)
    assert "no-such-model" in page.llm.result.text() and "Connected" not in page.llm.result.text()
    assert page.llm.model.findText("gpt-oss:20b") >= 0  # the server's list fills the choices

    page.llm.model.setCurrentText("gpt-oss:20b")
    page.generate.click()
    qtbot.waitUntil(lambda: page.generate.isEnabled() and page.chunks.count() > 0,
                    timeout=60_000)
    assert page.chunks.count() >= 3 and not page.empty.isVisible()
    passage = page.chunk_text.toPlainText()
    assert "Valve" in passage
    shown = page.examples.toPlainText()
    assert "Q:" in shown and "A:" in shown
    saved = GenerationService(page.context).llm_settings(project_id)
    assert (saved.base_url, saved.model) == (fake_llm.base_url, "gpt-oss:20b")
    shot = tmp_path / "preview.png"
    window.grab().save(str(shot))
    assert_not_blank(shot)


def test_review_generates_edits_rejects_filters_and_writes_the_dataset(
        window: MainWindow, qtbot: QtBot, project_id: str, context: AppContext,
        fake_llm: FakeLLMServer) -> None:
    use_server(context, project_id, fake_llm)
    GenerationService(context).run(project_id, preview=True)
    page = window.open_project(project_id, "review").currentPage()
    assert isinstance(page, ReviewPage) and not page.isComplete()
    assert "requests" in page.estimate.text() and "tokens" in page.estimate.text()

    page.generate.click()
    qtbot.waitUntil(lambda: not page.runner.is_running("generate"), timeout=120_000)
    assert page.isComplete() and "Done" in page.run_status.text()
    assert not page.generate.isEnabled() and "Every chunk has its examples" in page.estimate.text()
    review = ReviewService(context)
    total = review.count(project_id, ExampleFilter())
    assert page.model.rowCount() == total and page.shown.text() == f"{total:,} shown"
    assert all(page.model.row_at(r).tokens for r in range(page.model.rowCount()))

    select_rows(page, [0])
    page.reply_text.setPlainText("Every ten days, by the day watch.")
    page.save_current_edit()
    edited = page.model.row_at(0)
    assert edited.status == "edited" and edited.reply == "Every ten days, by the day watch."
    # Kept rows come first; the rejected ones after them, where Reject has nothing to do.
    kept = review.count(project_id, ExampleFilter()) - review.count(
        project_id, ExampleFilter(status="rejected"))
    assert all(page.model.row_at(r).status != "rejected" for r in range(kept))
    select_rows(page, [1, 2])
    if page.model.row_at(1).status == "rejected":
        assert not page.reject.isEnabled() and page.restore.isEnabled()
        page.restore.click()  # kept after all, then rejected by hand below
    assert page.reject.isEnabled()
    page.reject.click()
    assert [page.model.row_at(r).status for r in (1, 2)] == ["rejected", "rejected"]
    assert "rejected in review: 2" in page.stats.text()

    page.status_filter.setCurrentIndex(page.status_filter.findData("rejected"))
    rejected = review.count(project_id, ExampleFilter(status="rejected"))
    assert page.model.rowCount() == rejected >= 2
    page.reason_filter.setCurrentIndex(page.reason_filter.findData("rejected in review"))
    assert page.model.rowCount() == 2
    page.status_filter.setCurrentIndex(0)
    page.reason_filter.setCurrentIndex(0)
    page.search.setText("Every ten days")
    qtbot.waitUntil(lambda: page.model.rowCount() == 1, timeout=5_000)

    page.write.click()
    files = page.datasets.export(project_id)  # what the button wrote, read back
    assert files.train + files.eval == review.stats(project_id).usable == total - rejected
    assert "Wrote" in page.written.text()


def test_cancel_stops_at_once_and_keeps_what_is_done(
        window: MainWindow, qtbot: QtBot, project_id: str, context: AppContext) -> None:
    with FakeLLMServer(latency_ms=(300, 20_000), seed=3) as slow:
        use_server(context, project_id, slow, concurrency=3)
        page = window.open_project(project_id, "review").currentPage()
        assert isinstance(page, ReviewPage)
        page.generate.click()
        qtbot.waitUntil(lambda: page.request_pool.activeThreadCount() == 3, timeout=10_000)
        qtbot.waitUntil(lambda: page.progress.value() > 0, timeout=60_000)
        page.cancel.click()
        # Requests still in flight take up to 20 s; the run must not wait for them.
        qtbot.waitUntil(lambda: not page.runner.is_running("generate"), timeout=5_000)
    assert "Stopped" in page.run_status.text() and page.generate.isEnabled()
    kept = ReviewService(context).count(project_id, ExampleFilter())
    assert kept > 0 and page.model.rowCount() == kept


def select_rows(page: ReviewPage, rows: list[int]) -> None:
    selection = page.table.selectionModel()
    selection.clearSelection()
    flags = (QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows)
    for row in rows:
        selection.select(page.model.index(row, 0), flags)


def test_walking_past_preview_keeps_settings_changed_elsewhere(
        window: MainWindow, project_id: str, context: AppContext,
        fake_llm: FakeLLMServer) -> None:
    wizard = window.open_project(project_id, "preview")  # the Preview page is built now
    wizard.go_to_index(step_index("data"))
    use_server(context, project_id, fake_llm)  # then the settings change (CLI, Settings…)
    wizard.start_at("review")  # walks through Preview, which saves its box on the way
    assert GenerationService(context).llm_settings(project_id).base_url == fake_llm.base_url
