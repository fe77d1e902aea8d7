"""Adding files is an `ingest` job: an interrupted one is offered, and Resume opens Data."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QPushButton

from finetuneflow.gui.main_window import MainWindow
from finetuneflow.gui.pages.data_page import DataPage
from finetuneflow.services.context import AppContext
from finetuneflow.services.jobs import JobService
from finetuneflow.storage.tables import Job, JobKind


def test_an_interrupted_ingest_is_offered_and_resume_opens_the_data_step(
        window: MainWindow, context: AppContext) -> None:
    project = window.dashboard.create_project("Half added")
    window.show_dashboard()
    jobs = JobService(context)
    job_id = jobs.create(project.id, JobKind.INGEST)
    jobs.start(job_id)
    with context.database.session() as session:  # as if the worker had been killed mid-file
        session.get(Job, job_id).owner_pid = 999_999_999
    assert jobs.mark_orphans_interrupted() == 1
    window.resume_banner.refresh()

    text = " ".join(label.text() for label in window.resume_banner.findChildren(QLabel))
    assert "Adding files of “Half added” was interrupted" in text
    assert "add the files again" in text
    window.resume_banner.findChild(QPushButton, f"resumeJob{job_id}").click()
    assert isinstance(window.wizard.currentPage(), DataPage)
