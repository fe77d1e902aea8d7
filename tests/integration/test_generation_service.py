from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.cli import run_cli, run_cli_json
from tests.helpers.fake_llm import FakeLLMServer

SENTENCES = [
    "The archive keeps every signed contract for seven years in the basement vault.",
    "Requests to read a contract go to the records office by email.",
    "The records office answers within three working days.",
    "Contracts older than seven years are shredded under supervision.",
    "A copy of each shredding report is sent to the legal department.",
]


def document(tmp_path: Path) -> Path:
    paragraphs = [" ".join(SENTENCES[(i + j) % 5] for j in range(5)) for i in range(40)]
    path = tmp_path / "records.txt"
    path.write_text("\n\n".join(paragraphs), encoding="utf-8")
    return path


@pytest.fixture
def project(home: Path, tiny_model_dir: Path, tmp_path: Path) -> str:
    project_id = run_cli_json(home, "project", "create", "Generate")["id"]
    run_cli_json(home, "model", "set", project_id, str(tiny_model_dir))
    run_cli_json(home, "ingest", project_id, str(document(tmp_path)), "--chunk-tokens", "400",
                 "--overlap", "40")
    task = run_cli_json(home, "task", "set", project_id, "qa", "--per-chunk", "3")
    assert task["type"] == "qa" and task["examples_per_chunk"] == 3
    return project_id


def llm_args(server: FakeLLMServer) -> list[str]:
    return ["--provider", "ollama", "--base-url", server.base_url, "--llm", "gpt-oss:20b",
            "--concurrency", "4"]


def test_preview_then_full_then_nothing_left(home: Path, project: str,
                                             fake_llm: FakeLLMServer) -> None:
    preview = run_cli_json(home, "generate", project, "--preview", *llm_args(fake_llm))
    assert preview["chunks_done"] >= 3 and preview["accepted"] > 0
    full = run_cli_json(home, "generate", project, "--full")  # LLM settings were saved
    assert full["chunks_done"] > preview["chunks_done"] and full["chunks_skipped"] == 0
    again = run_cli_json(home, "generate", project, "--full")
    assert again["chunks_done"] == 0 and again["chunks_skipped"] == full["chunks_done"]
    exported = run_cli_json(home, "dataset", "export", project)
    assert exported["train"] + exported["eval"] == full["accepted"]  # preview rows stay out


def test_a_bad_key_stops_with_a_clear_message(home: Path, project: str) -> None:
    with FakeLLMServer(api_key="the-right-key") as server:
        result = run_cli(home, "generate", project, "--preview", *llm_args(server),
                         OLLAMA_API_KEY="a-wrong-key")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "key" in result.stderr.splitlines()[-1].lower()
    listed = run_cli_json(home, "project", "list")[0]
    assert listed["latest_job"] == {"kind": "preview", "status": "failed"}


def test_the_api_key_is_never_written_to_disk(home: Path, project: str) -> None:
    secret = "sk-planted-4f1c9e7d2b"
    with FakeLLMServer(api_key=secret) as server:
        result = run_cli(home, "generate", project, "--preview", *llm_args(server),
                         OLLAMA_API_KEY=secret)
        assert result.returncode == 0, result.stderr
        assert server.requests[-1].authorization == f"Bearer {secret}"
    for path in home.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
