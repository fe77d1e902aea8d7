"""The sample project: its three documents are ingested into chunks, with the Q&A task."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import select

from finetuneflow.services.context import AppContext
from finetuneflow.services.generation import GenerationService
from finetuneflow.services.ingest import IngestService
from finetuneflow.services.review import ReviewService
from finetuneflow.services.samples import (
    SAMPLE_FILES,
    SampleService,
    sample_dataset,
    sample_documents,
)
from finetuneflow.storage.tables import DatasetExample, ExampleSource, ExampleStatus

SMALL_CURATED = "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_the_sample_documents_ship_with_the_app() -> None:
    assert [path.name for path in sample_documents()] == list(SAMPLE_FILES)
    assert {path.suffix for path in sample_documents()} == {".pdf", ".docx", ".txt"}
    assert all(path.stat().st_size > 1000 for path in sample_documents())


def test_sample_ingests_all_three_documents_into_chunks(context: AppContext,
                                                        tiny_model_dir: Path) -> None:
    samples = SampleService(context)
    assert samples.existing() is None
    project = samples.create(model=str(tiny_model_dir))
    files = IngestService(context).list_files(project.id)
    assert sorted(f.name for f in files) == sorted(SAMPLE_FILES)
    assert all(f.status == "ok" and f.chunks > 0 for f in files), files
    assert {f.kind for f in files} == {"pdf", "docx", "text"}
    assert GenerationService(context).task_settings(project.id).type.value == "qa"
    assert project.current_step == "review"  # documents and dataset are ready
    assert "needs an LLM" in project.note and "Ollama" in project.note
    assert samples.existing() == project


def test_sample_comes_with_its_reviewed_dataset(context: AppContext,
                                                 tiny_model_dir: Path) -> None:
    """The hand-written dataset is imported whole, so the sample trains without an LLM; the
    note's count is the database's."""
    project = SampleService(context).create(model=str(tiny_model_dir))
    lines = sample_dataset().read_text(encoding="utf-8").splitlines()
    with context.database.session() as session:
        rows = session.scalars(select(DatasetExample).where(
            DatasetExample.project_id == project.id)).all()
    assert len(rows) == len(lines) >= 55
    assert {row.status for row in rows} == {ExampleStatus.ACCEPTED}
    assert {row.source for row in rows} == {ExampleSource.IMPORTED}
    assert f"{len(rows)} reviewed questions and answers" in project.note
    assert ReviewService(context).stats(project.id).usable == len(rows)


def test_sample_without_a_model_waits_at_the_model_step(context: AppContext,
                                                       tmp_path: Path) -> None:
    project = SampleService(context).create(hf_cache=tmp_path / "empty-cache")
    files = IngestService(context).list_files(project.id)
    assert len(files) == 3 and all(f.chars > 500 and f.chunks == 0 for f in files)
    assert project.base_model is None and project.current_step == "model"
    assert "choose a base model" in project.note


def test_sample_picks_a_small_curated_model_already_in_the_cache(
        context: AppContext, tmp_path: Path, tiny_model_dir: Path) -> None:
    cache = tmp_path / "hub"
    repo = cache / f"models--{SMALL_CURATED.replace('/', '--')}"
    shutil.copytree(tiny_model_dir, repo / "snapshots" / "0123abc")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc", encoding="utf-8")
    project = SampleService(context).create(hf_cache=cache)
    assert project.base_model == SMALL_CURATED and project.current_step == "review"
    assert all(f.chunks > 0 for f in IngestService(context).list_files(project.id))
    assert SMALL_CURATED in project.note
