"""What the export, the chat and Ollama read from the database, without training: rows of
runs and export jobs written directly, read back through the run repository and FinishedRuns."""

from __future__ import annotations

import pytest

from finetuneflow.services.context import AppContext
from finetuneflow.services.errors import UserError
from finetuneflow.services.finished_runs import FinishedRuns
from finetuneflow.services.projects import ProjectService
from finetuneflow.storage.tables import Job, JobKind, JobStatus, Run

ADAPTER = {"adapter": "artifacts/run/adapter"}


def add_runs(context: AppContext, project_id: str,
             runs: list[tuple[JobStatus, dict[str, str]]]) -> list[int]:
    with context.database.session() as session:
        rows = [Run(project_id=project_id, status=status, artifacts=artifacts)
                for status, artifacts in runs]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def add_export_jobs(context: AppContext, project_id: str,
                    jobs: list[tuple[JobStatus, dict[str, int]]]) -> None:
    with context.database.session() as session:
        session.add_all([Job(project_id=project_id, kind=JobKind.EXPORT, status=status,
                             result=result) for status, result in jobs])


def test_only_succeeded_runs_with_an_adapter_are_exportable_newest_first(
        context: AppContext) -> None:
    projects = ProjectService(context)
    project_id, other_id = projects.create("Runs").id, projects.create("Other").id
    old, _failed, _no_adapter, new = add_runs(context, project_id, [
        (JobStatus.SUCCEEDED, ADAPTER), (JobStatus.FAILED, ADAPTER),
        (JobStatus.SUCCEEDED, {}), (JobStatus.SUCCEEDED, ADAPTER)])
    add_runs(context, other_id, [(JobStatus.SUCCEEDED, ADAPTER)])
    with context.transaction() as tx:
        assert [run.id for run in tx.runs.exportable(project_id)] == [new, old]
    assert FinishedRuns(context).ids("Runs") == [new, old]


def test_export_results_are_the_succeeded_export_jobs_newest_first(context: AppContext) -> None:
    projects = ProjectService(context)
    project_id, other_id = projects.create("Exports").id, projects.create("Other").id
    add_export_jobs(context, project_id, [
        (JobStatus.SUCCEEDED, {"run_id": 1}), (JobStatus.FAILED, {"run_id": 2}),
        (JobStatus.SUCCEEDED, {"run_id": 3})])
    add_export_jobs(context, other_id, [(JobStatus.SUCCEEDED, {"run_id": 4})])
    with context.database.session() as session:
        session.add(Job(project_id=project_id, kind=JobKind.TRAIN, status=JobStatus.SUCCEEDED,
                        result={"run_id": 5}))
    with context.transaction() as tx:
        assert tx.jobs.results_of_succeeded(project_id, JobKind.EXPORT) == [
            {"run_id": 3}, {"run_id": 1}]


def test_asking_for_a_run_that_is_not_finished_names_the_finished_ones(
        context: AppContext) -> None:
    project_id = ProjectService(context).create("Runs").id
    runs = FinishedRuns(context)
    with pytest.raises(UserError, match="no finished training run"):
        runs.get(project_id)
    first, failed = add_runs(context, project_id, [(JobStatus.SUCCEEDED, ADAPTER),
                                                   (JobStatus.FAILED, ADAPTER)])
    with pytest.raises(UserError, match=rf"Run {failed} is not a finished run of this "
                                        rf"project; finished runs: {first}\."):
        runs.get(project_id, failed)
    with pytest.raises(UserError, match=rf"Run {first}'s job file cannot be read"):
        runs.get(project_id)
