"""Work goes on while the person moves around; interrupted work is offered for resuming."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QLabel, QPushButton
from pytestqt.qtbot import QtBot

from finetuneflow.core.generation import LLMSettings
from finetuneflow.gui.main_window import MainWindow
from finetuneflow.gui.pages.review_page import ReviewPage
from finetuneflow.services.base_model import ModelService
from finetuneflow.services.context import AppContext
from finetuneflow.services.generation import GenerationService
from finetuneflow.services.ingest import IngestService
from finetuneflow.services.jobs import JobService
from finetuneflow.services.review import ExampleFilter, ReviewService
from finetuneflow.storage.tables import Job, JobKind, JobStatus
from tests.gui.test_preview_and_review_pages import write_document
from tests.helpers.documents import write_books
from tests.helpers.fake_llm import FakeLLMServer

pytestmark = pytest.mark.slow


@pytest.fixture
def project_id(window: MainWindow, context: AppContext, tiny_model_dir: Path,
               tmp_path: Path) -> str:
    project = window.dashboard.create_project("Long jobs")
    ModelService(context).choose(project.id, str(tiny_model_dir))
    IngestService(context).ingest(project.id, [write_document(tmp_path)])
    window.show_dashboard()
    return project.id


def use(context: AppContext, project_id: str, server: FakeLLMServer) -> None:
    GenerationService(context).set_llm_settings(project_id, LLMSettings(
        provider="ollama", base_url=server.base_url, model="gpt-oss:20b", concurrency=2))


def test_generation_goes_on_while_the_person_is_on_the_dashboard(
        window: MainWindow, qtbot: QtBot, project_id: str, context: AppContext,
        tmp_path: Path) -> None:
    with FakeLLMServer(latency_ms=300) as server:
        use(context, project_id, server)
        page = window.open_project(project_id, "review").currentPage()
        assert isinstance(page, ReviewPage)
        page.start_generation()
        window.show_dashboard()
        status = window.findChild(QLabel, "runningJobs")
        qtbot.waitUntil(lambda: "Generating “Long jobs”" in status.text(), timeout=10_000)
        assert window.wizards[project_id] is page.wizard()  # kept alive while it works
        qtbot.waitUntil(lambda: not page.runner.is_running("generate"), timeout=120_000)
    assert JobService(context).latest(project_id, JobKind.GENERATE).status == JobStatus.SUCCEEDED
    again = window.open_project(project_id)
    assert again is page.wizard()
    window.show_dashboard()
    assert project_id not in window.wizards  # idle now: released

    more = tmp_path / "pumps.txt"
    more.write_text("\n\n".join(f"Pump {i} in bay {i + 1} is serviced every {i + 5} days."
                                  for i in range(40)), encoding="utf-8")
    IngestService(context).ingest(project_id, [more])
    page = window.open_project(project_id, "review").currentPage()
    assert page.stale_banner.isVisible()
    redo = page.findChild(QPushButton, "redo_start_generation")
    assert redo is not None and redo.text() == "Generate them"


def test_closing_asks_and_stops_generation_keeping_what_is_done(
        window: MainWindow, qtbot: QtBot, project_id: str, context: AppContext,
        answer_yes: list[str]) -> None:
    asked = answer_yes
    with FakeLLMServer(latency_ms=(200, 4000), seed=5) as server:
        use(context, project_id, server)
        page = window.open_project(project_id, "review").currentPage()
        page.start_generation()
        qtbot.waitUntil(lambda: page.progress.value() > 0, timeout=60_000)
        window.close()
        qtbot.waitUntil(lambda: not page.runner.is_running("generate"), timeout=5_000)
    assert asked and "What is finished is kept" in asked[0]
    job = JobService(context).latest(project_id, JobKind.GENERATE)
    assert job.status == JobStatus.CANCELLED
    assert ReviewService(context).count(project_id, ExampleFilter()) > 0


def test_an_interrupted_generation_is_offered_and_resumed(
        qtbot: QtBot, context: AppContext, project_id: str, window: MainWindow,
        fake_llm: FakeLLMServer) -> None:
    use(context, project_id, fake_llm)
    jobs = JobService(context)
    job_id = jobs.create(project_id, JobKind.GENERATE)
    jobs.start(job_id)
    with context.database.session() as session:  # as if the app had been killed mid-run
        session.get(Job, job_id).owner_pid = 999_999_999
    assert jobs.mark_orphans_interrupted() == 1
    window.resume_banner.refresh()
    assert window.resume_banner.isVisible()
    button = window.resume_banner.findChild(QPushButton, f"resumeJob{job_id}")
    button.click()
    page = window.wizard.currentPage()
    assert isinstance(page, ReviewPage)
    qtbot.waitUntil(lambda: not page.runner.is_running("generate"), timeout=120_000)
    assert jobs.latest(project_id, JobKind.GENERATE).status == JobStatus.SUCCEEDED
    assert not window.resume_banner.isVisible() and jobs.resumable() == []


def test_adding_files_goes_on_and_shows_in_the_status_bar_from_the_dashboard(
        window: MainWindow, qtbot: QtBot, project_id: str, tmp_path: Path) -> None:
    books = write_books(tmp_path / "books", 3)
    page = window.open_project(project_id, "data").currentPage()
    page.add_paths(books)
    window.show_dashboard()
    status = window.findChild(QLabel, "runningJobs")
    qtbot.waitUntil(lambda: "Adding files to “Long jobs”" in status.text(), timeout=10_000)
    assert window.wizards[project_id] is page.wizard()  # kept alive while it works
    qtbot.waitUntil(lambda: not page.tasks.is_running("ingest"), timeout=120_000)
    qtbot.waitUntil(lambda: "Adding files" not in status.text(), timeout=5_000)
    assert [f.name for f in page.ingest.list_files(project_id)][-3:] == [b.name for b in books]


def test_closing_while_adding_files_stops_the_worker_after_its_file(
        window: MainWindow, qtbot: QtBot, project_id: str, tmp_path: Path,
        answer_yes: list[str]) -> None:
    books = write_books(tmp_path / "books", 6)
    page = window.open_project(project_id, "data").currentPage()
    page.add_paths(books)
    qtbot.waitUntil(lambda: page.summary.text().startswith("Reading book-"), timeout=30_000)
    window.close()
    assert answer_yes and "What is finished is kept" in answer_yes[0]
    qtbot.waitUntil(lambda: not page.tasks.is_running("ingest"), timeout=60_000)
    added = [f for f in page.ingest.list_files(project_id) if f.name.startswith("book-")]
    assert len(added) < len(books) and all(f.chunks > 0 for f in added)
