"""One identity for every example: imports, generation, edits and the migration agree on it."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import func, select

from finetuneflow.core.generation import LLMSettings, TokenUsage, content_hash
from finetuneflow.core.generation.engine import ChunkResult, GeneratedExample
from finetuneflow.services.context import AppContext
from finetuneflow.services.datasets import DatasetService
from finetuneflow.services.errors import UserError
from finetuneflow.services.generation import GenerationService
from finetuneflow.services.projects import ProjectService
from finetuneflow.services.review import ExampleFilter, ReviewService
from finetuneflow.storage.db import upgrade_to_head
from finetuneflow.storage.tables import (
    Chunk,
    DatasetExample,
    ExampleSplit,
    ExampleStatus,
    FileStatus,
    SourceFile,
)
from tests.helpers.fake_llm import FakeLLMServer
from tests.helpers.migrations import database_at

TEXT = ("The archive keeps every signed contract for seven years in the basement vault. "
        "Requests to read a contract go to the records office by email.")


def chat(question: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def as_line(messages: list[dict[str, str]]) -> str:
    return json.dumps({"messages": messages}, ensure_ascii=False)


def stored(context: AppContext) -> list[DatasetExample]:
    with context.database.session() as session:
        return list(session.scalars(select(DatasetExample).order_by(DatasetExample.id)))


@pytest.fixture
def project_id(context: AppContext) -> str:
    return ProjectService(context).create("Identity").id


def test_an_imported_copy_of_a_generated_example_is_a_duplicate(
        context: AppContext, project_id: str, fake_llm: FakeLLMServer, tmp_path: Path) -> None:
    with context.database.session() as session:
        source = SourceFile(project_id=project_id, original_name="a.txt", stored_path="raw/a",
                            sha256="s", kind="text", size=1, status=FileStatus.OK, chars=1)
        session.add(source)
        session.flush()
        session.add(Chunk(file_id=source.id, project_id=project_id, ordinal=0, text=TEXT,
                          token_count=40, char_start=0, char_end=len(TEXT)))
    generation = GenerationService(context)
    generation.set_llm_settings(project_id, LLMSettings(
        provider="ollama", base_url=fake_llm.base_url, model="gpt-oss:20b"))
    assert generation.run(project_id, preview=False).accepted > 0
    generated = next(e for e in stored(context) if e.status == ExampleStatus.ACCEPTED)
    data = write_jsonl(tmp_path / "mine.jsonl", [as_line(generated.messages),
                                                 as_line(chat("A new question?", "Yes."))])
    summary = DatasetService(context).import_file(project_id, data)
    assert (summary.imported, summary.duplicates) == (1, 1)


def test_importing_a_file_with_bad_lines_again_adds_nothing(
        context: AppContext, project_id: str, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "mixed.jsonl", [
        as_line(chat("One?", "1.")), "{not json", as_line(chat("Two?", "2.")),
        '{"messages": []}', "{not json"])
    datasets = DatasetService(context)
    first = datasets.import_file(project_id, data)
    assert (first.imported, first.rejected, first.duplicates) == (2, 3, 0)
    rows = len(stored(context))
    again = datasets.import_file(project_id, data)
    assert (again.imported, again.rejected, again.duplicates, again.errors) == (0, 0, 5, [])
    assert len(stored(context)) == rows == 5


def test_editing_into_a_copy_of_a_kept_example_is_refused(
        context: AppContext, project_id: str, tmp_path: Path) -> None:
    DatasetService(context).import_file(project_id, write_jsonl(tmp_path / "two.jsonl", [
        as_line(chat("First?", "One.")), as_line(chat("Second?", "Two."))]))
    review = ReviewService(context)
    first, second = (row.id for row in review.page(project_id, ExampleFilter()))
    with pytest.raises(UserError, match=f"same as example {first}"):
        review.edit(second, chat("First?", "One. "))
    assert review.example(second)["messages"] == chat("Second?", "Two.")
    review.reject([first])
    review.edit(second, chat("First?", "One."))  # the original is rejected: allowed now
    with pytest.raises(UserError, match=f"{first} \\(a copy of {second}\\)"):
        review.restore([first])
    assert review.rows({first})[first].status == "rejected"


def test_generating_a_copy_of_a_kept_example_stores_a_rejected_duplicate(
        context: AppContext, project_id: str, tmp_path: Path) -> None:
    """A copy that slipped past the run's duplicate check (kept meanwhile by an import)."""
    messages = chat("Where are contracts kept?", "In the basement vault.")
    DatasetService(context).import_file(project_id, write_jsonl(tmp_path / "one.jsonl",
                                                                [as_line(messages)]))
    copy = GeneratedExample(messages=messages, item={}, content_hash=content_hash(messages))
    result = ChunkResult(None, [copy], [], TokenUsage(), 0.1, 1)
    with context.database.transaction() as tx:
        tx.examples.add_generated(project_id, ExampleSplit.TRAIN, result)
        tx.examples.add_generated(project_id, ExampleSplit.PREVIEW, result)
    original, duplicate, preview = stored(context)
    assert (duplicate.status, duplicate.reject_reason) == (ExampleStatus.REJECTED,
                                                           f"duplicate of {original.id}")
    assert preview.status == ExampleStatus.ACCEPTED  # a preview may repeat the dataset


def test_the_migration_rejects_existing_duplicates_and_recomputes_hashes(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = database_at(tmp_path / "old.db", "0001")
    same, spaced = chat("What is LoRA?", "An adapter."), chat("What is  LoRA?", "An adapter.\n")
    rows = [  # (split, status, source, messages, stored hash as 0001's code wrote it)
        ("train", "accepted", "generated", same, "generated-hash"),
        ("train", "accepted", "imported", same, "imported-hash"),
        ("eval", "edited", "imported", spaced, "edited-hash"),
        ("train", "rejected", "imported", same, "rejected-hash"),
        ("preview", "accepted", "generated", same, "preview-hash"),
        ("train", "accepted", "imported", chat("What is QLoRA?", "LoRA in 4 bit."), "other"),
    ]
    with sqlite3.connect(tmp_path / "old.db") as db:
        db.execute("INSERT INTO projects (id, name, created_at, updated_at, task_config, "
                   "current_step, settings) VALUES ('p1', 'P', '2026-01-01', '2026-01-01', "
                   "'{}', 'model', '{}')")
        for split, status, source, messages, digest in rows:
            db.execute("INSERT INTO dataset_examples (project_id, split, messages, status, "
                       "content_hash, source, created_at, updated_at) VALUES "
                       "('p1', ?, ?, ?, ?, ?, '2026-01-01', '2026-01-01')",
                       (split, json.dumps(messages), status, digest, source))
    with caplog.at_level(logging.INFO, logger="finetuneflow.migrations"):
        upgrade_to_head(engine)
    assert "marked 2 duplicate examples rejected" in caplog.text
    with sqlite3.connect(tmp_path / "old.db") as db:
        found = db.execute("SELECT id, status, reject_reason, content_hash, messages "
                           "FROM dataset_examples ORDER BY id").fetchall()
        assert [(status, reason) for _, status, reason, _, _ in found] == [
            ("accepted", None), ("rejected", "duplicate of 1"), ("rejected", "duplicate of 1"),
            ("rejected", None), ("accepted", None), ("accepted", None)]
        assert all(digest == content_hash(json.loads(messages))
                   for _, _, _, digest, messages in found)
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            db.execute("UPDATE dataset_examples SET status = 'accepted' WHERE id = 2")
    engine.dispose()


def test_reimporting_the_dataset_of_a_copied_project_adds_nothing(
        context: AppContext, project_id: str, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [as_line(chat("Q?", "A.")), "{bad"])
    DatasetService(context).import_file(project_id, data)
    copy = ProjectService(context).duplicate(project_id).id
    DatasetService(context).import_file(copy, data)
    with context.database.session() as session:
        counts = dict(session.execute(select(DatasetExample.project_id, func.count())
                                      .group_by(DatasetExample.project_id)).all())
    assert counts == {project_id: 2, copy: 2}


def test_a_batch_part_of_which_the_project_holds_stores_only_the_rest(
        context: AppContext, project_id: str, tmp_path: Path) -> None:
    """The lines of a batch already in the project (good or bad) are duplicates; the others,
    good and bad, are stored with their own line numbers, and a copy within the batch once."""
    datasets = DatasetService(context)
    first = datasets.import_file(project_id, write_jsonl(tmp_path / "a.jsonl", [
        as_line(chat("One?", "1.")), "{bad one", as_line(chat("Two?", "2."))]))
    assert (first.imported, first.rejected) == (2, 1)
    second = datasets.import_file(project_id, write_jsonl(tmp_path / "b.jsonl", [
        as_line(chat("Two?", "2.")), as_line(chat("Three?", "3.")), "{bad one", "{bad two",
        as_line(chat("Three?", "3.")), as_line(chat("One?", "1."))]))
    assert (second.imported, second.rejected, second.duplicates) == (1, 1, 4)
    assert second.errors == ["line 4: not valid JSON (Expecting property name enclosed in "
                             "double quotes at column 2)"]
    rows = stored(context)
    assert len(rows) == 5
    assert rows[-2].messages == chat("Three?", "3.")
    assert rows[-1].reject_reason == second.errors[0]
    assert rows[-1].messages == [{"role": "user", "content": "{bad two"}]
