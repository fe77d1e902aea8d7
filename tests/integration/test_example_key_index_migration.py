"""Migration 0009: one unique index over (hash key, project, kept mark) replaces the hash-key
index and the partial unique index; the rules stay the same."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.dialects import sqlite
from sqlalchemy.schema import CreateIndex

from finetuneflow.core.dataset.keys import hash_key
from finetuneflow.core.generation.quality import content_hash
from finetuneflow.storage.db import upgrade_to_head
from finetuneflow.storage.tables import EXAMPLE_KEY_INDEX, DatasetExample
from tests.helpers.migrations import database_at, downgrade_to

SAME = [{"role": "user", "content": "What is LoRA?"},
        {"role": "assistant", "content": "An adapter."}]
BAD_LINE = [{"role": "user", "content": "{not json"}]
ROWS = [  # (project, split, status, messages)
    ("p1", "train", "accepted", SAME),
    ("p1", "train", "rejected", SAME),  # a copy that is not kept
    ("p1", "preview", "accepted", SAME),  # the preview may repeat the dataset
    ("p1", "train", "rejected", BAD_LINE),
    ("p1", "train", "rejected", BAD_LINE),
    ("p2", "train", "accepted", SAME),  # another project keeps its own copy
]
INDEXES = ("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
           "AND tbl_name = 'dataset_examples'")
OLD = {"ix_dataset_examples_hash_key", "uq_dataset_examples_kept_hash_key"}
KEPT = {"ix_dataset_examples_chunk_id", "ix_dataset_examples_project_id"}


def _insert(db: sqlite3.Connection, project: str, split: str, status: str,
            messages: list[dict[str, str]]) -> None:
    digest = content_hash(messages)
    db.execute("INSERT INTO dataset_examples (project_id, split, messages, status, content_hash, "
               "hash_key, source, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'imported', "
               "'2026-01-01', '2026-01-01')",
               (project, split, json.dumps(messages), status, digest, hash_key(digest)))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A database at 0008 holding the examples of two projects."""
    path = tmp_path / "finetuneflow.db"
    database_at(path, "0008").dispose()
    with sqlite3.connect(path) as db:
        for project in ("p1", "p2"):
            db.execute("INSERT INTO projects (id, name, created_at, updated_at, task_config, "
                       "current_step) VALUES (?, ?, '2026-01-01', '2026-01-01', '{}', 'data')",
                       (project, project.upper()))
        for row in ROWS:
            _insert(db, *row)
    return path


def _rows(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT * FROM dataset_examples ORDER BY id").fetchall()


def _indexes(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as db:
        return dict(db.execute(INDEXES).fetchall())


def test_the_upgrade_leaves_one_index_as_the_model_declares_it(db_path: Path) -> None:
    before = _rows(db_path)
    upgrade_to_head(database_at(db_path, "0008"))
    assert _rows(db_path) == before
    indexes = _indexes(db_path)
    assert set(indexes) == KEPT | {EXAMPLE_KEY_INDEX}
    # Alembic cannot compare an index on an expression: this does, as SQLite keeps it.
    (model,) = (index for index in DatasetExample.__table__.indexes
                if index.name == EXAMPLE_KEY_INDEX)
    declared = str(CreateIndex(model).compile(dialect=sqlite.dialect()))
    assert " ".join(indexes[EXAMPLE_KEY_INDEX].split()) == " ".join(declared.split())


def test_the_rules_of_the_partial_index_hold_with_the_new_one(db_path: Path) -> None:
    upgrade_to_head(database_at(db_path, "0008"))
    with sqlite3.connect(db_path) as db:
        _insert(db, "p1", "train", "rejected", SAME)  # copies that are not kept: any number
        _insert(db, "p1", "preview", "accepted", SAME)
        _insert(db, "p1", "train", "rejected", BAD_LINE)
        _insert(db, "p2", "eval", "rejected", SAME)
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            _insert(db, "p1", "eval", "edited", SAME)  # a second kept copy
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            db.execute("UPDATE dataset_examples SET status = 'accepted' WHERE id = 2")
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            db.execute("UPDATE dataset_examples SET split = 'train' WHERE id = 3")
        db.execute("UPDATE dataset_examples SET status = 'accepted' WHERE id = 4")  # one kept
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            db.execute("UPDATE dataset_examples SET status = 'accepted' WHERE id = 5")


def test_reads_by_project_keep_their_index(db_path: Path) -> None:
    """The review table pages through a project in id order and counts it by status: through
    the new index those would read the project's rows in hash order (measured 10x slower)."""
    upgrade_to_head(database_at(db_path, "0008"))
    with sqlite3.connect(db_path) as db:
        for query, used in (
                ("SELECT id FROM dataset_examples WHERE project_id = 'p1' AND id > 2 "
                 "ORDER BY id LIMIT 500", "(project_id=? AND rowid>?)"),
                ("SELECT status, count(*) FROM dataset_examples WHERE project_id = 'p1' "
                 "AND split != 'preview' GROUP BY status", "(project_id=?)"),
                ("SELECT id FROM dataset_examples WHERE project_id = 'p1' "
                 "AND hash_key IN (1, 2)", f"{EXAMPLE_KEY_INDEX} (hash_key=? AND project_id=?)")):
            plan = " ".join(row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {query}"))
            index = used if used.startswith("uq") else f"ix_dataset_examples_project_id {used}"
            assert index in plan, (query, plan)
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("DELETE FROM projects WHERE id = 'p1'")  # the cascade finds the examples
        assert db.execute("SELECT DISTINCT project_id FROM dataset_examples").fetchall() == [
            ("p2",)]


def test_the_downgrade_gives_back_the_two_indexes(db_path: Path) -> None:
    before = _rows(db_path)
    upgrade_to_head(database_at(db_path, "0008"))
    downgrade_to(db_path, "0008")
    assert _rows(db_path) == before
    assert set(_indexes(db_path)) == OLD | KEPT
    with sqlite3.connect(db_path) as db, pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        db.execute("UPDATE dataset_examples SET status = 'accepted' WHERE id = 2")
