"""Migration 0006: a database at 0005 with real rows gains the evaluation tables, keeps its
rows, and the new tables hold their rules (one question per key, cascades, checks)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from finetuneflow.storage.db import upgrade_to_head
from tests.helpers.migrations import database_at, downgrade_to

QUESTION = ("INSERT INTO evaluation_questions (evaluation_id, key, ordinal, example_id, prompt, "
            "question, reference, reason) VALUES (1, ?, ?, ?, '[]', 'What is 2+2?', '4', '')")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """At 0005: a project, an example, a job and its finished run; then upgraded to head."""
    path = tmp_path / "finetuneflow.db"
    engine = database_at(path, "0005")
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO projects (id, name, created_at, updated_at, task_config, "
                   "current_step) VALUES ('p1', 'P', '2026-01-01', '2026-01-01', '{}', 'train')")
        db.execute("INSERT INTO dataset_examples (id, project_id, split, messages, status, "
                   "content_hash, source, created_at, updated_at) VALUES (1, 'p1', 'eval', "
                   "'[]', 'accepted', 'h', 'imported', '2026-01-01', '2026-01-01')")
        db.execute("INSERT INTO jobs (id, project_id, kind, status, progress, message, params, "
                   "result, created_at, updated_at) VALUES (1, 'p1', 'train', 'succeeded', 1, "
                   "'', '{}', '{}', '2026-01-01', '2026-01-01')")
        db.execute("INSERT INTO runs (id, project_id, job_id, config, status, metrics, "
                   "artifacts, created_at) VALUES (1, 'p1', 1, '{}', 'succeeded', "
                   "'{\"final_eval_loss\": 1.5}', '{}', '2026-01-01')")
    upgrade_to_head(engine)
    engine.dispose()
    return path


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path)
    db.execute("PRAGMA foreign_keys=ON")
    return db


def add_evaluation(db: sqlite3.Connection) -> None:
    db.execute("INSERT INTO evaluations (id, run_id, job_id, status, judge, max_new_tokens, "
               "judge_requests, judge_tokens, message, created_at, updated_at) VALUES "
               "(1, 1, 1, 'running', 1, 256, 0, 0, '', '2026-01-01', '2026-01-01')")


def test_the_old_rows_stay_and_a_question_is_held_once_per_key(db_path: Path) -> None:
    with connect(db_path) as db:
        assert db.execute("SELECT metrics FROM runs").fetchone() == ('{"final_eval_loss": 1.5}',)
        add_evaluation(db)
        db.execute(QUESTION, ("example:1", 1, 1))
        db.execute(QUESTION, ("typed:abc", 2, None))
        with pytest.raises(sqlite3.IntegrityError):
            db.execute(QUESTION, ("example:1", 3, 1))
        with pytest.raises(sqlite3.IntegrityError):  # a verdict is A, B or tie
            db.execute("UPDATE evaluation_questions SET base_first_winner = 'C'")
        with pytest.raises(sqlite3.IntegrityError):
            db.execute("UPDATE evaluations SET status = 'lost'")


def test_deleting_an_example_keeps_its_question_and_a_run_takes_its_evaluations(
        db_path: Path) -> None:
    with connect(db_path) as db:
        add_evaluation(db)
        db.execute(QUESTION, ("example:1", 1, 1))
        db.execute("DELETE FROM dataset_examples")
        assert db.execute("SELECT key, example_id FROM evaluation_questions").fetchall() == [
            ("example:1", None)]
        db.execute("DELETE FROM jobs")
        assert db.execute("SELECT job_id FROM evaluations").fetchall() == [(None,)]
        db.execute("DELETE FROM runs")
        assert db.execute("SELECT count(*) FROM evaluation_questions").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM evaluations").fetchone() == (0,)


def test_the_downgrade_removes_the_tables_and_keeps_the_rest(db_path: Path) -> None:
    with connect(db_path) as db:
        add_evaluation(db)
    downgrade_to(db_path, "0005")
    with connect(db_path) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        assert "evaluations" not in tables and "evaluation_questions" not in tables
        assert db.execute("SELECT count(*) FROM runs").fetchone() == (1,)
