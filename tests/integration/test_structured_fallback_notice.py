"""When the server refuses json_schema and auto falls back, the person is told once: a line of
the CLI's output, a key of --json, the job's message."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.helpers.cli import run_cli, run_cli_json
from tests.helpers.fake_llm import FakeLLMServer

FAST = {"FINETUNEFLOW_LLM_RETRY_BASE_S": "0.01"}
NOTICE = "The server does not accept json_schema; using json_object for this server."


@pytest.fixture
def project(home: Path, tiny_model_dir: Path, tmp_path: Path) -> str:
    document = tmp_path / "notes.txt"
    document.write_text("\n\n".join(
        f"The {n}th pump in hall {n} is checked every {n + 2} days by the night crew."
        for n in range(1, 30)), encoding="utf-8")
    project = run_cli_json(home, "project", "create", "Pumps")["id"]
    run_cli_json(home, "model", "set", project, str(tiny_model_dir))
    run_cli_json(home, "ingest", project, str(document), "--chunk-tokens", "60", "--overlap", "0")
    return project


def llm(server: FakeLLMServer, *more: str) -> list[str]:
    return ["--provider", "openai", "--base-url", f"{server.base_url}/v1", "--llm",
            "gpt-oss:20b", *more]


def last_job_message(home: Path) -> str:
    with sqlite3.connect(home / "finetuneflow.db") as db:
        row = db.execute("SELECT status, message FROM jobs ORDER BY id DESC LIMIT 1").fetchone()
    assert row[0] == "succeeded"
    return str(row[1])


def test_the_cli_says_the_fallback_once(home: Path, project: str,
                                        fake_llm: FakeLLMServer) -> None:
    fake_llm.set_reject_json_schema()
    result = run_cli(home, "generate", project, "--preview", *llm(fake_llm), **FAST)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines().count(NOTICE) == 1, result.stderr
    assert NOTICE in last_job_message(home)


def test_generate_json_names_the_mode_used(home: Path, project: str,
                                           fake_llm: FakeLLMServer) -> None:
    fake_llm.set_reject_json_schema()
    outcome = run_cli_json(home, "generate", project, "--preview", *llm(fake_llm), **FAST)
    assert outcome["structured_output"] == "json_object"
    assert outcome["structured_notice"] == NOTICE
    assert {"accepted", "rejected", "chunks_done", "job_id"} <= outcome.keys()  # kept


def test_a_server_that_takes_json_schema_gets_no_notice(home: Path, project: str,
                                                       fake_llm: FakeLLMServer) -> None:
    result = run_cli(home, "generate", project, "--preview", *llm(fake_llm), **FAST)
    assert result.returncode == 0, result.stderr
    assert "does not accept" not in result.stderr
    outcome = run_cli_json(home, "generate", project, "--preview", *llm(fake_llm), **FAST)
    assert outcome["structured_output"] == "json_schema"
    assert outcome["structured_notice"] is None


def test_a_mode_chosen_by_hand_is_reported_without_a_notice(
        home: Path, project: str, fake_llm: FakeLLMServer) -> None:
    outcome = run_cli_json(home, "generate", project, "--preview",
                           *llm(fake_llm, "--structured-output", "text"), **FAST)
    assert outcome["structured_output"] == "text" and outcome["structured_notice"] is None
