from __future__ import annotations

import pytest

from finetuneflow.services.context import AppContext
from finetuneflow.services.errors import NotFoundError, UserError
from finetuneflow.services.jobs import JobService
from finetuneflow.services.projects import ProjectService
from finetuneflow.storage.models import JobKind, JobStatus


def test_create_list_rename_delete(context: AppContext) -> None:
    projects = ProjectService(context)
    first = projects.create("  Tax   forms ")
    assert first.name == "Tax forms" and first.current_step == "model"
    folder = context.home.project_dir(first.id)
    assert (folder / "raw").is_dir() and (folder / "exports").is_dir()
    second = projects.create("Manuals")
    assert {p.id for p in projects.list()} == {first.id, second.id}
    assert projects.rename(first.id, "Forms").name == "Forms"
    projects.delete(first.id)
    assert [p.id for p in projects.list()] == [second.id]
    assert not folder.exists()


def test_find_by_id_prefix_or_name(context: AppContext) -> None:
    projects = ProjectService(context)
    project = projects.create("Alpha")
    assert projects.get(project.id[:8]).id == project.id
    assert projects.get("Alpha").id == project.id
    with pytest.raises(NotFoundError):
        projects.get("Beta")
    projects.create("Alpha")
    with pytest.raises(UserError, match="Several projects"):
        projects.get("Alpha")


def test_names_are_checked(context: AppContext) -> None:
    with pytest.raises(UserError, match="needs a name"):
        ProjectService(context).create("   ")
    with pytest.raises(UserError, match="at most"):
        ProjectService(context).create("x" * 201)


def test_step_is_saved_and_validated(context: AppContext) -> None:
    projects = ProjectService(context)
    project = projects.create("Steps")
    projects.set_step(project.id, "review")
    assert projects.get(project.id).current_step == "review"
    with pytest.raises(ValueError, match="unknown step"):
        projects.set_step(project.id, "deploy")


def test_list_shows_the_latest_job(context: AppContext) -> None:
    projects = ProjectService(context)
    project = projects.create("Jobs")
    jobs = JobService(context)
    jobs.create(project.id, JobKind.PREVIEW)
    latest = jobs.create(project.id, JobKind.GENERATE)
    jobs.start(latest)
    summary = projects.list()[0]
    assert (summary.latest_job_kind, summary.latest_job_status) == ("generate", JobStatus.RUNNING)
    assert summary.to_json()["latest_job"] == {"kind": "generate", "status": "running"}
