"""`project status`: every number is the database's, and the next command follows the state."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.helpers.cli import run_cli, run_cli_json
from tests.helpers.fake_llm import FakeLLMServer
from tests.integration.test_counts import rejecting_responder
from tests.integration.test_generation_service import document


def query(home: Path, sql: str, *params: object) -> list[tuple]:
    with sqlite3.connect(home / "finetuneflow.db") as db:
        return list(db.execute(sql, params))


def test_status_follows_the_project_and_counts_from_the_database(
        home: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    project = run_cli_json(home, "project", "create", "Status")["id"]
    empty = run_cli_json(home, "project", "status", project)
    assert empty["model"] is None and empty["next_step"] == "model"
    assert empty["next_command"] == f"finetuneflow model set {project} MODEL"
    assert "Next: finetuneflow model set" in run_cli(home, "project", "status", "Status").stdout

    run_cli_json(home, "model", "set", project, str(tiny_model_dir))
    assert run_cli_json(home, "project", "status", project)["next_step"] == "ingest"
    run_cli_json(home, "ingest", project, str(document(tmp_path)), "--chunk-tokens", "400")
    assert run_cli_json(home, "project", "status", project)["next_step"] == "preview"
    with FakeLLMServer(responder=rejecting_responder) as server:
        run_cli_json(home, "generate", project, "--preview", "--provider", "ollama",
                     "--base-url", server.base_url, "--llm", "gpt-oss:20b")
        assert run_cli_json(home, "project", "status", project)["next_step"] == "generate"
        run_cli_json(home, "generate", project, "--full", "--max-chunks", "3")

    status = run_cli_json(home, "project", "status", project)
    assert status["model"] == str(tiny_model_dir) and status["next_step"] == "train"
    assert [(f["name"], f["chunks"]) for f in status["files"]] == query(
        home, "SELECT f.original_name, count(c.id) FROM files f LEFT JOIN chunks c "
              "ON c.file_id = f.id WHERE f.project_id = ? GROUP BY f.id", project)
    assert [(status["chunks"],)] == query(
        home, "SELECT count(*) FROM chunks WHERE project_id = ?", project)
    assert [(status["chunks_without_examples"],)] == query(
        home, "SELECT count(*) FROM chunks WHERE project_id = ? AND id NOT IN (SELECT chunk_id "
              "FROM dataset_examples WHERE split != 'preview' AND chunk_id IS NOT NULL)", project)
    by_status = dict(query(home, "SELECT status, count(*) FROM dataset_examples WHERE "
                                 "project_id = ? AND split != 'preview' GROUP BY status", project))
    assert {k: v for k, v in status["examples"].items() if v} == by_status
    assert by_status["rejected"] > 0
    assert sum(status["rejected_by_reason"].values()) == by_status["rejected"]
    assert [(status["preview_examples"],)] == query(
        home, "SELECT count(*) FROM dataset_examples WHERE project_id = ? AND split = 'preview'",
        project)
    assert status["runs"] == {} and status["exports"] == 0

    human = run_cli(home, "project", "status", project)
    assert human.returncode == 0, human.stderr
    assert (f"{by_status['accepted']} accepted, 0 edited, {by_status['rejected']} rejected"
            in human.stdout)
    assert human.stdout.rstrip().endswith(f"Next: finetuneflow train {project}")
