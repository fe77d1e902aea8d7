"""A damaged, replaced or deleted database: a clear one-line message naming the file and what
to do, a copy before every upgrade, and `finetuneflow doctor` to see what is where."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from finetuneflow.storage.db import BACKUP_INFIX, Database
from tests.helpers.cli import run_cli, run_cli_json
from tests.helpers.migrations import database_at
from tests.integration.test_migrations import _seed_family


def _checkpointed(db_path: Path) -> None:
    with sqlite3.connect(db_path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def test_a_healthy_folder(home: Path) -> None:
    run_cli_json(home, "project", "create", "Garden")
    result = run_cli(home, "doctor")
    assert result.returncode == 0 and result.stdout.strip().endswith("No problems found.")
    report = run_cli_json(home, "doctor")
    assert report["database_status"] == "ok" and report["problems"] == 0


def test_a_file_that_is_not_a_database(home: Path) -> None:
    run_cli_json(home, "project", "create", "Garden")
    (home / "finetuneflow.db").write_bytes(b"overwritten by something else")
    for suffix in ("-wal", "-shm"):
        (home / f"finetuneflow.db{suffix}").unlink(missing_ok=True)
    result = run_cli(home, "project", "list")
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1
    assert f"The database {home / 'finetuneflow.db'} is damaged (file is not a database)" \
        in result.stderr
    assert "move the damaged file aside" in result.stderr
    doctor = run_cli(home, "doctor", "--json")
    assert doctor.returncode == 1 and '"database_status": "damaged"' in doctor.stdout


def test_a_truncated_database(home: Path) -> None:
    for name in ("Garden", "Manuals", "Recipes", "Valves"):
        run_cli_json(home, "project", "create", name)
    db_path = home / "finetuneflow.db"
    _checkpointed(db_path)
    db_path.write_bytes(db_path.read_bytes()[: db_path.stat().st_size // 2])
    result = run_cli(home, "project", "list")
    assert result.returncode == 1
    assert "is damaged (database disk image is malformed)" in result.stderr


def test_a_deleted_database_leaves_its_project_folders_named(home: Path) -> None:
    project = run_cli_json(home, "project", "create", "Garden")
    run_cli_json(home, "project", "rename", project["id"], "Garden 2")
    for path in home.glob("finetuneflow.db*"):
        path.unlink()
    report = run_cli_json_allowing_failure(home, "doctor")
    assert report["database_status"] == "missing"
    assert [(o["id"], o["name"]) for o in report["orphan_folders"]] == [
        (project["id"], "Garden 2")]
    result = run_cli(home, "doctor")
    assert result.returncode == 1 and "“Garden 2”" in result.stdout


def test_a_copy_is_kept_before_an_upgrade(tmp_path: Path) -> None:
    db_path = tmp_path / "finetuneflow.db"
    database_at(db_path, "0001").dispose()
    _seed_family(db_path, settings_bag=True)
    Database.open(db_path).close()
    [copy] = list(tmp_path.glob(f"finetuneflow.db{BACKUP_INFIX}0001-*"))
    with sqlite3.connect(copy) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]
        assert db.execute("SELECT name FROM projects").fetchall() == [("P",)]
    Database.open(db_path).close()  # already at the head: no second copy
    assert len(list(tmp_path.glob(f"finetuneflow.db{BACKUP_INFIX}*"))) == 1


def run_cli_json_allowing_failure(home: Path, *args: str) -> dict[str, object]:
    import json

    result = run_cli(home, *args, "--json")
    return json.loads(result.stdout)
