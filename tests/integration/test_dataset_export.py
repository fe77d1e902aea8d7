from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from finetuneflow.services.context import AppContext
from finetuneflow.services.datasets import DatasetService
from finetuneflow.services.errors import UserError
from finetuneflow.services.projects import ProjectService
from finetuneflow.storage.tables import (
    Chunk,
    DatasetExample,
    ExampleSource,
    ExampleSplit,
    ExampleStatus,
    FileStatus,
    SourceFile,
)
from tests.helpers.cli import run_cli_json


def _chat(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": "Answer."}]


def seed_examples(context: AppContext, project_id: str, chunks: int, per_chunk: int) -> None:
    with context.database.session() as session:
        source = SourceFile(project_id=project_id, original_name="a.txt", stored_path="raw/a",
                            sha256="s", kind="text", size=1, status=FileStatus.OK, chars=1)
        session.add(source)
        session.flush()
        for ordinal in range(chunks):
            chunk = Chunk(file_id=source.id, project_id=project_id, ordinal=ordinal, text="t",
                          token_count=1, char_start=0, char_end=1)
            session.add(chunk)
            session.flush()
            for n in range(per_chunk):
                session.add(DatasetExample(
                    project_id=project_id, chunk_id=chunk.id, split=ExampleSplit.TRAIN,
                    messages=_chat(f"q{ordinal}-{n}"), content_hash=f"h{ordinal}-{n}",
                    source=ExampleSource.GENERATED))
        session.add(DatasetExample(project_id=project_id, split=ExampleSplit.TRAIN,
                                   messages=_chat("bad"), content_hash="bad",
                                   status=ExampleStatus.REJECTED, reject_reason="ungrounded",
                                   source=ExampleSource.GENERATED))
        session.add(DatasetExample(project_id=project_id, split=ExampleSplit.PREVIEW,
                                   messages=_chat("preview"), content_hash="p",
                                   source=ExampleSource.GENERATED))


@pytest.fixture
def project_id(context: AppContext) -> str:
    return ProjectService(context).create("Export").id


def test_split_is_grouped_by_chunk_and_files_load(context: AppContext, project_id: str) -> None:
    seed_examples(context, project_id, chunks=40, per_chunk=3)
    files = DatasetService(context).export(project_id)
    assert files.train + files.eval == 120 and files.eval > 0
    assert files.rejected_by_reason == {"ungrounded": 1}
    with context.database.session() as session:
        rows = session.execute(select(DatasetExample.chunk_id, DatasetExample.split).where(
            DatasetExample.chunk_id.is_not(None))).all()
    sides: dict[int, set[str]] = {}
    for chunk_id, split in rows:
        sides.setdefault(chunk_id, set()).add(split)
    assert all(len(s) == 1 for s in sides.values()), "a chunk feeds both train and eval"

    from datasets import load_dataset

    loaded = load_dataset("json", data_files={"train": str(files.train_path),
                                              "eval": str(files.eval_path)})
    assert loaded["train"].num_rows == files.train
    assert "preview" not in files.train_path.read_text() + files.eval_path.read_text()


def test_files_are_current_until_an_example_changes(context: AppContext,
                                                    project_id: str) -> None:
    service = DatasetService(context)
    assert not service.files_are_current(project_id)
    seed_examples(context, project_id, chunks=5, per_chunk=2)
    files = service.export(project_id)
    assert service.files_are_current(project_id)
    past = time.time() - 60
    os.utime(files.train_path, (past, past))
    os.utime(files.eval_path, (past, past))
    assert not service.files_are_current(project_id)


def test_nothing_to_export_is_a_user_error(context: AppContext, project_id: str) -> None:
    with pytest.raises(UserError, match="no accepted examples"):
        DatasetService(context).export(project_id)


def test_cli_dataset_export(home: Path, tmp_path: Path) -> None:
    project = run_cli_json(home, "project", "create", "CLI export")["id"]
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(
        f'{{"prompt": "q{i}", "completion": "a{i}"}}' for i in range(20)), encoding="utf-8")
    run_cli_json(home, "dataset", "import", project, str(data))
    result = run_cli_json(home, "dataset", "export", project)
    assert result["train"] + result["eval"] == 20 and result["eval"] >= 1
    assert Path(result["train_path"]).exists()
