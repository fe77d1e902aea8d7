"""`dataset list` and `dataset show`: the examples and reject reasons, read from the CLI."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.helpers.cli import run_cli, run_cli_json
from tests.helpers.fake_llm import FakeLLMServer
from tests.integration.test_counts import project, rejecting_responder

__all__ = ["project"]  # the fixture


def rows(home: Path, sql: str, *params: object) -> list[tuple]:
    with sqlite3.connect(home / "finetuneflow.db") as db:
        return list(db.execute(sql, params))


def test_list_filters_and_show_reads_one_example(home: Path, project: str) -> None:
    with FakeLLMServer(responder=rejecting_responder) as server:
        run_cli_json(home, "generate", project, "--full", "--max-chunks", "3", "--provider",
                     "ollama", "--base-url", server.base_url, "--llm", "gpt-oss:20b")
    everything = run_cli_json(home, "dataset", "list", project, "--limit", "1000")
    stored = rows(home, "SELECT id, status, reject_reason FROM dataset_examples WHERE "
                        "project_id = ? AND split != 'preview' ORDER BY id", project)
    assert everything["total"] == len(stored)
    assert [(e["id"], e["status"], e["reject_reason"]) for e in everything["examples"]] == stored

    rejected = run_cli_json(home, "dataset", "list", project, "--status", "rejected")
    assert rejected["total"] == sum(status == "rejected" for _, status, _ in stored) > 0
    assert {e["status"] for e in rejected["examples"]} == {"rejected"}
    ungrounded = run_cli_json(home, "dataset", "list", project, "--reason", "ungrounded")
    assert ungrounded["total"] == sum(
        (reason or "").startswith("ungrounded") for _, _, reason in stored) > 0
    limited = run_cli_json(home, "dataset", "list", project, "--limit", "2")
    assert len(limited["examples"]) == 2 and limited["total"] == len(stored)

    human = run_cli(home, "dataset", "list", project, "--status", "rejected", "--limit", "3")
    assert human.returncode == 0 and len(human.stdout.splitlines()) == 3
    assert f"3 of {rejected['total']} examples shown" in human.stderr

    example_id = ungrounded["examples"][0]["id"]
    shown = run_cli_json(home, "dataset", "show", project, str(example_id))
    assert shown["status"] == "rejected" and shown["reject_reason"].startswith("ungrounded")
    assert [m["role"] for m in shown["messages"]][-2:] == ["user", "assistant"]
    text = run_cli(home, "dataset", "show", project, str(example_id)).stdout
    assert "rejected because: ungrounded" in text and "[assistant]" in text

    missing = run_cli(home, "dataset", "show", project, "999999")
    assert missing.returncode == 1 and "no example 999999" in missing.stderr
