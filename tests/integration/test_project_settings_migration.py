"""Migration 0005: a database built at 0001, with real rows, moves its settings bag into the
typed columns without losing a value a person set; garbage becomes the defaults."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from finetuneflow.core.chunking import ChunkSettings
from finetuneflow.core.generation.settings import LLMSettings
from finetuneflow.core.generation.tasks import TaskType
from finetuneflow.core.project_settings import ModelRef, ProjectSettings
from finetuneflow.core.training.config import preset_config
from finetuneflow.storage.db import Database, make_engine, upgrade_to_head
from tests.helpers.migrations import database_at, downgrade_to

LLM = LLMSettings(provider="ollama", base_url="http://127.0.0.1:11434", model="qwen3:4b")
TRAINING = preset_config("quick", lora_r=4)
MODEL = {"model": "HuggingFaceTB/SmolLM2-135M-Instruct", "source": "hub",
         "folder": "/cache/smollm2", "weights_ready": False, "architecture": "LlamaForCausalLM",
         "parameters": 134515008}
FULL = {"model": MODEL, "chunking": {"max_tokens": 256, "overlap_tokens": 32},
        "llm": LLM.to_dict(), "training": TRAINING.to_dict(), "note": "Sample project: …",
        "sample": True}
GARBAGE = {"model": "not an object", "chunking": {"max_tokens": "lots"}, "llm": "ollama",
           "training": [1, 2], "note": 5, "sample": "yes"}



def _insert(db: sqlite3.Connection, project_id: str, base_model: str | None,
            settings: str, task: str = "{}") -> None:
    db.execute("INSERT INTO projects (id, name, created_at, updated_at, base_model, task_config, "
               "current_step, settings) VALUES (?, ?, '2026-01-01', '2026-01-01', ?, ?, 'data', "
               "?)", (project_id, project_id.title(), base_model, task, settings))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A database at revision 0001 with projects whose settings hold each key, and children."""
    path = tmp_path / "finetuneflow.db"
    engine = database_at(path, "0001")
    engine.dispose()
    with sqlite3.connect(path) as db:
        _insert(db, "full", MODEL["model"], json.dumps(FULL), json.dumps({"type": "summary"}))
        _insert(db, "garbage", None, json.dumps(GARBAGE))
        _insert(db, "not-json", None, "{oops")
        _insert(db, "empty", None, "{}")
        # Chosen before its folder was recorded: the reference stays, to be chosen again.
        _insert(db, "bare-model", "org/model", "{}")
        # The settings copy names another model than the column: its folder is not this one's.
        _insert(db, "mismatch", "org/model", json.dumps({"model": MODEL}))
        # Only the settings copy named the model: it is kept.
        _insert(db, "copy-only", None, json.dumps({"model": MODEL}))
        db.execute("INSERT INTO files (id, project_id, original_name, stored_path, sha256, kind, "
                   "size, status, message, chars, created_at) VALUES (1, 'full', 'a.pdf', "
                   "'raw/a.pdf', 'x', 'pdf', 1, 'ok', '', 1, '2026-01-01')")
        db.execute("INSERT INTO jobs (project_id, kind, status, progress, message, params, "
                   "result, created_at, updated_at) VALUES ('full', 'generate', 'succeeded', 1, "
                   "'', '{}', '{}', '2026-01-01', '2026-01-01')")
    return path


def _settings(db_path: Path) -> dict[str, ProjectSettings]:
    database = Database.open(db_path)
    try:
        with database.transaction() as tx:
            return {project.id: tx.projects.settings(project.id)
                    for project, _job in tx.projects.list_with_latest_job()}
    finally:
        database.close()


def test_every_value_moves_into_its_typed_place(db_path: Path) -> None:
    found = _settings(db_path)
    assert found["full"] == ProjectSettings(
        model=ModelRef(MODEL["model"], "hub", Path("/cache/smollm2")),
        task=found["full"].task, chunking=ChunkSettings(256, 32), llm=LLM, training=TRAINING,
        note="Sample project: …", sample=True)
    assert found["full"].task.type is TaskType.SUMMARY
    assert found["copy-only"].model == ModelRef(MODEL["model"], "hub", Path("/cache/smollm2"))
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT count(*) FROM files").fetchone()[0] == 1
        assert db.execute("SELECT count(*) FROM jobs").fetchone()[0] == 1
        models = dict(db.execute("SELECT id, base_model FROM projects"))
        columns = {row[1] for row in db.execute("PRAGMA table_info(projects)")}
    assert models["bare-model"] == models["mismatch"] == "org/model"
    assert models["copy-only"] == MODEL["model"]
    assert "settings" not in columns


def test_the_database_keeps_the_model_choice_whole(db_path: Path) -> None:
    Database.open(db_path).close()
    with sqlite3.connect(db_path) as db:
        for values in ("'org/m', 'ftp', '/m'", "'org/m', 'hub', NULL", "NULL, 'hub', '/m'"):
            with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
                db.execute("INSERT INTO projects (id, name, created_at, updated_at, task_config, "
                           "current_step, base_model, base_model_source, base_model_folder) "
                           f"VALUES ('x', 'X', '2026-01-01', '2026-01-01', '{{}}', 'model', "
                           f"{values})")


def test_garbage_becomes_the_defaults_without_failing(db_path: Path) -> None:
    found = _settings(db_path)
    for project_id in ("garbage", "not-json", "empty"):
        assert found[project_id] == ProjectSettings(), project_id
    # A model without a known folder is chosen again, as before the migration.
    assert found["bare-model"].model is None and found["mismatch"].model is None


def test_downgrade_puts_the_settings_back_in_the_bag(db_path: Path) -> None:
    engine = make_engine(db_path)
    upgrade_to_head(engine)
    engine.dispose()
    downgrade_to(db_path, "0001")
    with sqlite3.connect(db_path) as db:
        bags = {project_id: json.loads(bag) for project_id, bag
                in db.execute("SELECT id, settings FROM projects")}
        assert db.execute("SELECT count(*) FROM files").fetchone()[0] == 1
    moved = {key: FULL[key] for key in ("chunking", "llm", "training", "note", "sample")}
    assert bags["full"] == {**moved, "model": {key: MODEL[key]
                                               for key in ("model", "source", "folder")}}
    assert bags["empty"] == bags["not-json"] == {}
    assert bags["garbage"] == {"chunking": {"max_tokens": "lots"}}  # moved as it was
