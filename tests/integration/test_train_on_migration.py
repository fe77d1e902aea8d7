"""Migration 0008: a database at 0007 with real rows gains `projects.train_on` (NULL: this
computer) without touching a row; the repository keeps a machine's name there, checked, and the
project's manifest records it, so a restored project trains where it did."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from finetuneflow.core.errors import UserError
from finetuneflow.storage.db import Database, upgrade_to_head
from tests.helpers.migrations import database_at, downgrade_to


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """At 0007: a project with settings, an example, a train job and its run; then at head."""
    path = tmp_path / "finetuneflow.db"
    engine = database_at(path, "0007")
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO projects (id, name, created_at, updated_at, task_config, "
                   "current_step, training, note) VALUES ('p1', 'P', '2026-01-01', "
                   "'2026-01-01', '{\"type\": \"qa\"}', 'train', '{\"max_steps\": 70}', 'kept')")
        db.execute("INSERT INTO dataset_examples (id, project_id, split, messages, status, "
                   "content_hash, hash_key, source, created_at, updated_at) VALUES (1, 'p1', "
                   "'train', '[]', 'accepted', 'h', 5, 'imported', '2026-01-01', '2026-01-01')")
        db.execute("INSERT INTO jobs (id, project_id, kind, status, progress, message, params, "
                   "result, created_at, updated_at) VALUES (1, 'p1', 'train', 'succeeded', 1, "
                   "'', '{}', '{}', '2026-01-01', '2026-01-01')")
        db.execute("INSERT INTO runs (id, project_id, job_id, config, status, metrics, "
                   "artifacts, created_at) VALUES (1, 'p1', 1, '{}', 'succeeded', '{}', '{}', "
                   "'2026-01-01')")
    upgrade_to_head(engine)
    engine.dispose()
    return path


def rows(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return [db.execute(f"SELECT * FROM {table}").fetchall()  # type: ignore[misc]
                for table in ("dataset_examples", "jobs", "runs")]


def test_existing_projects_train_here_and_keep_every_row(db_path: Path) -> None:
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT train_on, note, training FROM projects").fetchall() == [
            (None, "kept", '{"max_steps": 70}')]
        assert db.execute("SELECT count(*) FROM runs WHERE job_id = 1").fetchone() == (1,)
    database = Database.open(db_path)
    try:
        with database.transaction() as tx:
            settings = tx.projects.settings("p1")
            assert settings.train_on is None and settings.note == "kept"
            assert settings.training is not None and settings.training.max_steps == 70
    finally:
        database.close()


def test_a_machine_name_is_kept_checked_and_recorded_in_the_manifest(db_path: Path) -> None:
    (db_path.parent / "storage" / "p1").mkdir(parents=True)  # a project's folder, as made
    database = Database.open(db_path)
    try:
        with database.transaction() as tx:
            tx.projects.save_train_on("p1", "gpu-box.2")
        with database.transaction() as tx:
            assert tx.projects.settings("p1").train_on == "gpu-box.2"
            with pytest.raises(UserError, match="cannot be used"):
                tx.projects.save_train_on("p1", "--on evil")
        manifest = db_path.parent / "storage" / "p1" / "project.json"
        assert json.loads(manifest.read_text())["settings"]["train_on"] == "gpu-box.2"
        with database.transaction() as tx:
            tx.projects.save_train_on("p1", None)
        with database.transaction() as tx:
            assert tx.projects.settings("p1").train_on is None
    finally:
        database.close()
    assert json.loads(manifest.read_text())["settings"]["train_on"] is None


def test_the_downgrade_drops_the_column_and_keeps_the_rest(db_path: Path) -> None:
    before = rows(db_path)
    with sqlite3.connect(db_path) as db:
        db.execute("UPDATE projects SET train_on = 'box'")
    downgrade_to(db_path, "0007")
    with sqlite3.connect(db_path) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(projects)")}
        assert "train_on" not in columns and "training" in columns
        assert db.execute("SELECT note FROM projects").fetchall() == [("kept",)]
    assert rows(db_path) == before
