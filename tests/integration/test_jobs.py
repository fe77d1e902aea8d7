from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from finetuneflow.services.context import AppContext
from finetuneflow.services.errors import NotFoundError, UserError
from finetuneflow.services.jobs import JobService, ThrottledProgress, process_alive
from finetuneflow.services.projects import ProjectService
from finetuneflow.storage.home import Home
from finetuneflow.storage.tables import Job, JobKind, JobStatus, Run


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


def test_reports_from_many_threads(context: AppContext) -> None:
    jobs = JobService(context)
    projects = ProjectService(context)
    job_ids = [jobs.create(projects.create(f"Threads {n}").id, JobKind.GENERATE)
               for n in range(8)]
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


def test_one_running_job_per_project_and_kind(context: AppContext, project_id: str) -> None:
    jobs = JobService(context)
    first = jobs.create(project_id, JobKind.GENERATE)
    jobs.start(first)
    waiting = jobs.create(project_id, JobKind.GENERATE)  # queued: blocks nothing
    jobs.start(jobs.create(project_id, JobKind.TRAIN))  # another kind may run beside it
    with pytest.raises(UserError) as refused:
        jobs.start(waiting)
    assert str(refused.value) == (
        f"“Jobs” already has a generate job running (job {first}, process {os.getpid()}): "
        "wait for it or stop it first.")
    with pytest.raises(NotFoundError):  # it never ran: nothing is kept of it
        jobs.get(waiting)
    jobs.succeed(first)
    again = jobs.create(project_id, JobKind.GENERATE)
    jobs.start(again)
    assert jobs.get(again).status is JobStatus.RUNNING


def test_the_database_refuses_a_second_running_job(context: AppContext, project_id: str
                                                   ) -> None:
    jobs = JobService(context)
    first, second = (jobs.create(project_id, JobKind.GENERATE) for _ in range(2))
    jobs.start(first)
    with pytest.raises(IntegrityError), context.database.session() as session:
        session.get(Job, second).status = JobStatus.RUNNING


def test_a_job_of_a_dead_process_gives_way(context: AppContext, project_id: str) -> None:
    jobs = JobService(context)
    orphan = jobs.create(project_id, JobKind.GENERATE)
    jobs.start(orphan)
    with context.database.session() as session:
        session.get(Job, orphan).owner_pid = _dead_pid()
    new = jobs.create(project_id, JobKind.GENERATE)
    jobs.start(new)
    assert jobs.get(orphan).status is JobStatus.INTERRUPTED
    assert jobs.get(new).status is JobStatus.RUNNING


def test_a_training_job_and_its_run_are_interrupted_together(home: Path) -> None:
    context = AppContext.open()
    project_id = ProjectService(context).create("Killed").id
    jobs = JobService(context)
    with context.transaction() as tx:
        run_id = tx.runs.add(project_id, {}).id
    job_id = jobs.create(project_id, JobKind.TRAIN, {"run_id": run_id})
    with context.transaction() as tx:
        tx.runs.attach_job(run_id, job_id)
    jobs.start(job_id)
    with context.database.session() as session:
        assert session.get(Run, run_id).status is JobStatus.RUNNING
        session.get(Job, job_id).owner_pid = _dead_pid()
    context.close()

    reopened = AppContext.open(Home(home))
    with reopened.database.session() as session:
        run, job = session.get(Run, run_id), session.get(Job, job_id)
        assert (job.status, run.status) == (JobStatus.INTERRUPTED, JobStatus.INTERRUPTED)
        assert run.finished_at is not None
    reopened.close()
