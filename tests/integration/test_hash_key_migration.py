"""Migration 0007: every example gets the 8-byte key of its content hash, and the two indexes
move from the hex text to the key; kept examples stay unique per project in the database."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from finetuneflow.core.dataset.keys import hash_key
from finetuneflow.core.generation.quality import content_hash
from finetuneflow.storage.db import upgrade_to_head
from tests.helpers.migrations import database_at, downgrade_to


def chat(question: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


SAME, OTHER = chat("What is LoRA?", "An adapter."), chat("What is QLoRA?", "4 bit.")
BAD_LINE = [{"role": "user", "content": "{not json"}]
ROWS = [  # (project, split, status, messages, reject reason)
    ("p1", "train", "accepted", SAME, None),
    ("p1", "train", "rejected", SAME, "duplicate of 1"),  # a copy that is not kept
    ("p1", "preview", "accepted", SAME, None),  # the preview may repeat the dataset
    ("p1", "eval", "edited", OTHER, None),
    ("p1", "train", "rejected", BAD_LINE, "line 3: not valid JSON"),
    ("p1", "train", "rejected", BAD_LINE, "line 4: not valid JSON"),
    ("p2", "train", "accepted", SAME, None),  # another project keeps its own copy
]
INDEXES = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'dataset_examples'"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A database at 0005 holding the examples of two projects."""
    path = tmp_path / "finetuneflow.db"
    database_at(path, "0005").dispose()
    with sqlite3.connect(path) as db:
        for project in ("p1", "p2"):
            db.execute("INSERT INTO projects (id, name, created_at, updated_at, task_config, "
                       "current_step) VALUES (?, ?, '2026-01-01', '2026-01-01', '{}', 'data')",
                       (project, project.upper()))
        for project, split, status, messages, reason in ROWS:
            db.execute("INSERT INTO dataset_examples (project_id, split, messages, status, "
                       "reject_reason, content_hash, source, created_at, updated_at) VALUES "
                       "(?, ?, ?, ?, ?, ?, 'imported', '2026-01-01', '2026-01-01')",
                       (project, split, json.dumps(messages), status, reason,
                        content_hash(messages)))
    return path


def _rows(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT id, project_id, split, status, reject_reason, content_hash, "
                          "messages FROM dataset_examples ORDER BY id").fetchall()


def test_every_example_gets_its_key_and_nothing_else_changes(db_path: Path) -> None:
    before = _rows(db_path)
    engine = database_at(db_path, "0007")
    engine.dispose()
    assert _rows(db_path) == before
    with sqlite3.connect(db_path) as db:
        keys = db.execute("SELECT content_hash, hash_key FROM dataset_examples").fetchall()
        indexes = {name for (name,) in db.execute(INDEXES)}
    assert all(key == hash_key(digest) for digest, key in keys)
    assert len({key for _, key in keys}) == 3  # SAME, OTHER and the bad line
    assert {"ix_dataset_examples_hash_key", "uq_dataset_examples_kept_hash_key"} <= indexes
    assert not {"ix_dataset_examples_content_hash",
                "uq_dataset_examples_kept_content_hash"} & indexes


def test_after_the_upgrade_the_database_refuses_a_second_kept_copy(db_path: Path) -> None:
    upgrade_to_head(database_at(db_path, "0005"))
    with sqlite3.connect(db_path) as db:
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            db.execute("UPDATE dataset_examples SET status = 'accepted', reject_reason = NULL "
                       "WHERE id = 2")
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            db.execute("UPDATE dataset_examples SET split = 'train' WHERE id = 3")
        with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
            db.execute("INSERT INTO dataset_examples (project_id, split, messages, status, "
                       "content_hash, source, created_at, updated_at) VALUES ('p1', 'train', "
                       "'[]', 'rejected', 'x', 'imported', '2026-01-01', '2026-01-01')")
        db.execute("UPDATE dataset_examples SET status = 'accepted' WHERE id = 5")  # one kept
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            db.execute("UPDATE dataset_examples SET status = 'accepted' WHERE id = 6")


def test_the_downgrade_gives_back_the_indexes_on_the_hex_hash(db_path: Path) -> None:
    before = _rows(db_path)
    downgrade_to(db_path, "0005")
    assert _rows(db_path) == before
    with sqlite3.connect(db_path) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(dataset_examples)")}
        indexes = {name for (name,) in db.execute(INDEXES)}
        assert "hash_key" not in columns
        assert {"ix_dataset_examples_content_hash", "uq_dataset_examples_kept_content_hash"} \
            <= indexes
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            db.execute("UPDATE dataset_examples SET status = 'accepted' WHERE id = 2")
