"""A generation that did not work says so: non-zero exit, a `failed` job, the cause in one line.

The real CLI in a child process against the fake LLM server (or no server at all)."""

from __future__ import annotations

import json
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cli import cli_project, pump_notes, run_cli
from tests.helpers.fake_llm import FakeLLMServer, Fault

FAST = {"FINETUNEFLOW_LLM_RETRY_BASE_S": "0.01"}


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


@pytest.fixture
def project(home: Path, tiny_model_dir: Path, tmp_path: Path) -> str:
    return cli_project(home, tiny_model_dir, pump_notes(tmp_path / "notes.txt"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def job_statuses(home: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(home / "finetuneflow.db") as db:
        return db.execute("SELECT kind, status FROM jobs WHERE kind IN ('preview', 'generate')"
                          " ORDER BY id").fetchall()


def assert_failed_in_one_line(home: Path, result: object, *words: str) -> str:
    assert result.returncode != 0, result.stdout  # type: ignore[attr-defined]
    stderr: str = result.stderr  # type: ignore[attr-defined]
    errors = [line for line in stderr.splitlines() if "error" in line]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr
    for word in words:
        assert word in errors[0], errors[0]
    assert job_statuses(home)[-1][1] == "failed"
    return errors[0]


def llm(server_url: str, provider: str = "ollama") -> list[str]:
    return ["--provider", provider, "--base-url", server_url, "--llm", "gpt-oss:20b"]


@pytest.mark.parametrize("mode", ["--preview", "--full"])
def test_a_dead_server_fails_the_run(home: Path, project: str, mode: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli(home, "generate", project, mode, *llm(url), **FAST)
    assert_failed_in_one_line(home, result, "Could not connect")


def test_ollama_cloud_without_a_key_fails_the_run(home: Path, project: str,
                                                  server: FakeLLMServer) -> None:
    server.set_api_key("the-real-key")
    result = run_cli(home, "generate", project, "--preview", *llm(server.base_url,
                                                                   "ollama-cloud"), **FAST)
    assert_failed_in_one_line(home, result, "API key")


def test_every_request_a_502_fails_the_run(home: Path, project: str,
                                           server: FakeLLMServer) -> None:
    server.set_fault_rate(1.0, [Fault.BAD_GATEWAY])
    result = run_cli(home, "generate", project, "--preview", *llm(server.base_url), **FAST)
    line = assert_failed_in_one_line(home, result, "502 Bad Gateway", "HTTP 502")
    assert "<html>" not in line


def test_a_server_that_never_answers_fails_the_run(home: Path, project: str,
                                                   server: FakeLLMServer) -> None:
    server.set_timeout_fault_s(30)
    server.set_fault_rate(1.0, [Fault.TIMEOUT])
    result = run_cli(home, "generate", project, "--preview", *llm(server.base_url),
                     "--read-timeout", "0.3", **FAST)
    assert_failed_in_one_line(home, result, "timed out", "read timeout")


def test_some_failed_requests_are_summed_up_by_cause(home: Path, project: str,
                                                      server: FakeLLMServer) -> None:
    server.fail_next(Fault.BAD_GATEWAY, count=5)  # one chunk's five attempts, one at a time
    result = run_cli(home, "generate", project, "--preview", *llm(server.base_url),
                     "--concurrency", "1", "--json", **FAST)
    assert result.returncode == 0, result.stderr
    assert "1 request failed: 1 HTTP 502" in result.stderr
    assert job_statuses(home)[-1] == ("preview", "succeeded")

    out = json.loads(result.stdout)
    assert out["failed_requests"] == 1 and out["failures"] == "1 request failed: 1 HTTP 502"
    assert out["chunks_done"] >= 1
