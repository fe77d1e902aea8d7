"""Every count shown after a generation is the database's (issue 14: rejects were doubled)."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import run_cli, run_cli_json
from tests.helpers.fake_llm import Api, FakeLLMServer, qa_responder
from tests.integration.test_generation_service import document


def rejecting_responder(request_json: dict[str, Any], api: Api) -> str:
    """Per chunk: one good item, one with a quote not in the passage (flagged, stored
    rejected) and one without an answer (unreadable, stored raw and rejected)."""
    items = json.loads(qa_responder(request_json, api))
    good = items[0]
    ungrounded = dict(good, question=f"Unrelated? {good['question']}",
                      quote="Penguins juggle oranges on the moon every Tuesday.")
    broken = {"question": f"Broken? {good['question']}"}
    return json.dumps([good, ungrounded, broken])


@pytest.fixture
def project(home: Path, tiny_model_dir: Path, tmp_path: Path) -> str:
    project_id: str = run_cli_json(home, "project", "create", "Counts")["id"]
    run_cli_json(home, "model", "set", project_id, str(tiny_model_dir))
    run_cli_json(home, "ingest", project_id, str(document(tmp_path)), "--chunk-tokens", "400",
                 "--overlap", "40")
    run_cli_json(home, "task", "set", project_id, "qa", "--per-chunk", "3")
    return project_id


def stored(home: Path, project_id: str, *, preview: bool) -> tuple[int, int]:
    """(kept, rejected) as a plain SQL query on the database file."""
    where = "split = 'preview'" if preview else "split != 'preview'"
    with sqlite3.connect(home / "finetuneflow.db") as db:
        rows = dict(db.execute(
            f"SELECT status = 'rejected', count(*) FROM dataset_examples "
            f"WHERE project_id = ? AND {where} GROUP BY status = 'rejected'", (project_id,)))
    return rows.get(0, 0), rows.get(1, 0)


def summary_numbers(stdout: str) -> tuple[int, int]:
    found = re.search(r"(\d+) examples accepted, (\d+) rejected", stdout)
    assert found, stdout
    return int(found[1]), int(found[2])


def test_preview_and_full_run_report_the_stored_counts(home: Path, project: str) -> None:
    with FakeLLMServer(responder=rejecting_responder) as server:
        llm = ["--provider", "ollama", "--base-url", server.base_url, "--llm", "gpt-oss:20b"]
        preview = run_cli_json(home, "generate", project, "--preview", *llm)
        kept, rejected = stored(home, project, preview=True)
        assert rejected >= 2 * preview["chunks_done"] > 0  # the responder did reject
        assert (preview["accepted"], preview["rejected"]) == (kept, rejected)
        assert preview["examples"] == kept + rejected

        human = run_cli(home, "generate", project, "--preview")
        assert human.returncode == 0, human.stderr
        assert summary_numbers(human.stdout) == stored(home, project, preview=True)

        full = run_cli(home, "generate", project, "--full")
        assert full.returncode == 0, full.stderr
    kept, rejected = stored(home, project, preview=False)
    assert summary_numbers(full.stdout) == (kept, rejected)
    last_progress = [line for line in full.stderr.splitlines() if "chunks ·" in line][-1]
    assert f"{kept} kept, {rejected} rejected" in last_progress

    job = run_cli_json(home, "project", "list")[0]["latest_job"]
    assert job == {"kind": "generate", "status": "succeeded"}
    exported = run_cli_json(home, "dataset", "export", project)
    assert exported["train"] + exported["eval"] == kept
    assert exported["rejected"] == rejected
    assert sum(exported["rejected_by_reason"].values()) == rejected
