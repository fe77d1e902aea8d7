from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from finetuneflow.services.context import AppContext
from finetuneflow.services.errors import NotFoundError, UserError
from finetuneflow.services.jobs import JobService
from finetuneflow.services.projects import ProjectService
from finetuneflow.storage.tables import (
    Chunk,
    DatasetExample,
    ExampleSource,
    ExampleSplit,
    ExampleStatus,
    JobKind,
    JobStatus,
    SourceFile,
)


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


def _project_with_documents_and_examples(context: AppContext, tmp_path: Path,
                                         tiny_model_dir: Path) -> str:
    """A project with two documents cut into chunks, examples from one chunk, and a job."""
    from finetuneflow.services.base_model import ModelService
    from finetuneflow.services.generation import GenerationService
    from finetuneflow.services.ingest import IngestService

    project = ProjectService(context).create("Garden")
    ModelService(context).choose(project.id, str(tiny_model_dir))
    GenerationService(context).set_task(project.id, "summary")
    ProjectService(context).set_step(project.id, "export")
    documents = []
    for name, topic in (("beds.txt", "raised beds"), ("compost.md", "the compost bins")):
        path = tmp_path / name
        path.write_text(f"# About {topic}\n\n" + f"Water {topic} at dawn. " * 120,
                        encoding="utf-8")
        documents.append(path)
    IngestService(context).ingest(project.id, documents)
    with context.database.session() as session:
        chunk = session.scalars(select(Chunk).where(Chunk.project_id == project.id)).first()
        assert chunk is not None
        for chunk_id in (chunk.id, None):
            session.add(DatasetExample(
                project_id=project.id, chunk_id=chunk_id, split=ExampleSplit.TRAIN,
                messages=[{"role": "user", "content": "When?"},
                          {"role": "assistant", "content": "At dawn."}],
                status=ExampleStatus.ACCEPTED, content_hash=f"h{chunk_id}",
                source=ExampleSource.GENERATED))
    JobService(context).create(project.id, JobKind.TRAIN)
    return project.id


def test_duplicate_copies_documents_and_dataset_but_not_jobs(
        context: AppContext, tmp_path: Path, tiny_model_dir: Path) -> None:
    projects = ProjectService(context)
    source_id = _project_with_documents_and_examples(context, tmp_path, tiny_model_dir)
    copy = projects.duplicate(source_id)

    assert copy.name == "Garden (copy)" and copy.id != source_id
    assert copy.base_model == str(tiny_model_dir.resolve())
    assert copy.current_step == "hardware"  # no runs came along, so not Train or Export
    assert copy.latest_job_kind is None
    from finetuneflow.services.generation import GenerationService
    from finetuneflow.services.ingest import IngestService

    assert GenerationService(context).task_settings(copy.id).type.value == "summary"
    ingest = IngestService(context)
    source_files, copied_files = ingest.list_files(source_id), ingest.list_files(copy.id)
    assert [(f.name, f.chunks) for f in copied_files] == [(f.name, f.chunks)
                                                         for f in source_files]
    assert all(f.chunks > 0 for f in copied_files)
    assert {f.id for f in copied_files}.isdisjoint(f.id for f in source_files)
    with context.database.session() as session:
        rows = session.execute(select(DatasetExample.chunk_id, Chunk.project_id).outerjoin(
            Chunk, Chunk.id == DatasetExample.chunk_id).where(
            DatasetExample.project_id == copy.id)).all()
        originals = session.scalars(select(SourceFile.stored_path).where(
            SourceFile.project_id == copy.id)).all()
    assert sorted(project for _chunk, project in rows if project) == [copy.id]
    assert len(rows) == 2

    folder = context.home.project_dir(copy.id)
    assert all((folder / stored).is_file() for stored in originals)
    assert sorted(p.name for p in (folder / "chunks").iterdir()) == sorted(
        f"{f.id}.json" for f in copied_files)
    # The copy stands on its own: re-cutting reads its own extracted text.
    assert ingest.rechunk(copy.id) == sum(f.chunks for f in source_files)
    projects.delete(source_id)
    assert ingest.count_chunks(copy.id) == sum(f.chunks for f in copied_files)
    assert all((folder / stored).is_file() for stored in originals)


def test_duplicate_names(context: AppContext) -> None:
    projects = ProjectService(context)
    project = projects.create("Notes")
    assert projects.duplicate(project.id).name == "Notes (copy)"
    assert projects.duplicate(project.id).name == "Notes (copy 2)"
    assert projects.duplicate(project.id, name=" Field  notes ").name == "Field notes"
    long = projects.create("x" * 200)
    assert projects.duplicate(long.id).name == "x" * 193 + " (copy)"
    with pytest.raises(NotFoundError):
        projects.duplicate("nothing-like-this")


def test_delete_waits_for_a_running_job(context: AppContext) -> None:
    projects = ProjectService(context)
    project = projects.create("Busy")
    jobs = JobService(context)
    job_id = jobs.create(project.id, JobKind.GENERATE)
    jobs.start(job_id)  # owned by this (living) process
    with pytest.raises(UserError, match="generate running"):
        projects.delete(project.id)
    jobs.succeed(job_id)
    projects.delete(project.id)
    assert projects.list() == []


def test_list_json_keeps_its_keys_and_adds_activity_and_note(context: AppContext) -> None:
    projects = ProjectService(context)
    project = projects.create("Keys")
    projects.set_note(project.id, "Needs an LLM key at the Preview step.")
    data = projects.list()[0].to_json()
    assert {"id", "name", "base_model", "current_step", "created_at", "updated_at",
            "latest_job"} <= data.keys()
    assert data["note"] == "Needs an LLM key at the Preview step."
    assert data["last_activity"] == data["updated_at"]
