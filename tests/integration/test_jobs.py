from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from finetuneflow.services.context import AppContext
from finetuneflow.services.errors import NotFoundError
from finetuneflow.services.jobs import JobService, ThrottledProgress, process_alive
from finetuneflow.services.projects import ProjectService
from finetuneflow.storage.home import Home
from finetuneflow.storage.tables import Job, JobKind, JobStatus


@pytest.fixture
def project_id(context: AppContext) -> str:
    return ProjectService(context).create("Jobs").id


def test_job_lifecycle(context: AppContext, project_id: str) -> None:
    jobs = JobService(context)
    job_id = jobs.create(project_id, JobKind.GENERATE, {"chunks": 10})
    assert jobs.get(job_id).status is JobStatus.QUEUED
    jobs.start(job_id)
    jobs.report(job_id, 0.4, "4 of 10 chunks")
    info = jobs.get(job_id)
    assert (info.status, info.progress, info.message) == (JobStatus.RUNNING, 0.4, "4 of 10 chunks")
    jobs.succeed(job_id, {"examples": 30})
    info = jobs.get(job_id)
    assert info.status is JobStatus.SUCCEEDED and info.progress == 1.0
    assert info.result == {"examples": 30} and info.finished_at is not None


def test_fail_and_cancel_keep_their_reason(context: AppContext, project_id: str) -> None:
    jobs = JobService(context)
    failed = jobs.create(project_id, JobKind.TRAIN)
    jobs.start(failed)
    jobs.fail(failed, "Out of GPU memory at step 3")
    assert jobs.get(failed).error == "Out of GPU memory at step 3"
    cancelled = jobs.create(project_id, JobKind.EXPORT)
    jobs.start(cancelled)
    jobs.cancel(cancelled)
    assert jobs.get(cancelled).status is JobStatus.CANCELLED
    assert jobs.latest(project_id).id == cancelled
    assert jobs.latest(project_id, JobKind.TRAIN).id == failed


def test_progress_is_clamped_and_unknown_job_is_a_user_error(context: AppContext,
                                                             project_id: str) -> None:
    jobs = JobService(context)
    job_id = jobs.create(project_id, JobKind.PREVIEW)
    jobs.report(job_id, 7.0)
    assert jobs.get(job_id).progress == 1.0
    with pytest.raises(NotFoundError):
        jobs.get(9999)


def test_reports_from_many_threads(context: AppContext, project_id: str) -> None:
    jobs = JobService(context)
    job_ids = [jobs.create(project_id, JobKind.GENERATE) for _ in range(8)]
    errors: list[BaseException] = []

    def work(job_id: int) -> None:
        try:
            jobs.start(job_id)
            for step in range(1, 21):
                jobs.report(job_id, step / 20, f"step {step}")
            jobs.succeed(job_id)
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(job_id,)) for job_id in job_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert {jobs.get(job_id).status for job_id in job_ids} == {JobStatus.SUCCEEDED}


def test_throttled_progress_writes_rarely_but_always_the_end(context: AppContext,
                                                             project_id: str) -> None:
    jobs = JobService(context)
    job_id = jobs.create(project_id, JobKind.GENERATE)
    sink = ThrottledProgress(jobs, job_id, interval=3600)
    sink(0.1, "first")
    sink(0.5, "dropped")
    assert jobs.get(job_id).message == "first"
    sink(1.0, "end")
    assert jobs.get(job_id).message == "end"


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_running_jobs_of_dead_processes_become_interrupted_at_start_up(home: Path) -> None:
    context = AppContext.open()
    project_id = ProjectService(context).create("Crash").id
    jobs = JobService(context)
    orphan = jobs.create(project_id, JobKind.GENERATE)
    alive = jobs.create(project_id, JobKind.TRAIN)
    jobs.start(orphan)
    jobs.start(alive)
    with context.database.session() as session:
        session.get(Job, orphan).owner_pid = _dead_pid()
    context.close()

    reopened = AppContext.open(Home(home))
    jobs = JobService(reopened)
    assert jobs.get(orphan).status is JobStatus.INTERRUPTED
    assert "Resume" in jobs.get(orphan).message
    assert jobs.get(alive).status is JobStatus.RUNNING  # this process still runs it
    reopened.close()


def test_process_alive() -> None:
    import os

    assert process_alive(os.getpid())
    assert not process_alive(_dead_pid())
