"""Results older than their inputs are noticed, on the step that can redo them."""

from __future__ import annotations

import shutil
from pathlib import Path

from finetuneflow.core.generation import LLMSettings
from finetuneflow.services.base_model import ModelService
from finetuneflow.services.context import AppContext
from finetuneflow.services.datasets import DatasetService
from finetuneflow.services.generation import GenerationService
from finetuneflow.services.ingest import IngestService
from finetuneflow.services.projects import ProjectService
from finetuneflow.services.review import ExampleFilter, ReviewService
from finetuneflow.services.staleness import StalenessService
from tests.helpers.fake_llm import FakeLLMServer
from tests.helpers.finished_run import arithmetic_chats, train


def document(folder: Path, name: str, topic: str) -> Path:
    path = folder / name
    path.write_text("\n\n".join(f"The {topic} number {i} is kept in cabinet {i + 4} and checked "
                                f"every {i + 2} weeks by the {topic} team." for i in range(30)),
                    encoding="utf-8")
    return path


def test_documents_added_after_generation_leave_chunks_to_do(
        context: AppContext, tiny_model_dir: Path, tmp_path: Path,
        fake_llm: FakeLLMServer) -> None:
    project = ProjectService(context).create("Stale").id
    ModelService(context).choose(project, str(tiny_model_dir))
    ingest = IngestService(context)
    ingest.ingest(project, [document(tmp_path, "a.txt", "ledger")])
    staleness = StalenessService(context)
    assert staleness.notes(project) == []  # nothing generated yet: nothing is stale
    generation = GenerationService(context)
    generation.set_llm_settings(project, LLMSettings(provider="ollama",
                                                     base_url=fake_llm.base_url,
                                                     model="gpt-oss:20b"))
    generation.run(project, preview=False)
    assert staleness.notes(project) == []
    ingest.ingest(project, [document(tmp_path, "b.txt", "archive")])
    [note] = staleness.notes(project)
    assert note.step == "review" and note.method == "start_generation"
    assert note.message.startswith(f"{generation.estimate(project).chunks} chunks")


def test_a_new_base_model_or_new_examples_after_training(
        context: AppContext, tiny_model_dir: Path, tmp_path: Path) -> None:
    project = ProjectService(context).create("Stale run").id
    ModelService(context).choose(project, str(tiny_model_dir))
    DatasetService(context).import_file(project, arithmetic_chats(tmp_path / "a.jsonl"))
    train(context, project)
    staleness = StalenessService(context)
    assert staleness.notes(project) == []

    other = shutil.copytree(tiny_model_dir, tmp_path / "other-model")
    ModelService(context).choose(project, str(other))
    assert [note.step for note in staleness.notes(project)] == ["train"]
    assert "base model changed" in staleness.notes(project)[0].message

    ModelService(context).choose(project, str(tiny_model_dir))
    review = ReviewService(context)
    first = review.page(project, ExampleFilter(), 0, 1)[0]
    review.reject([first.id])
    [note] = staleness.notes(project)
    assert "dataset changed" in note.message and note.method == "start"

