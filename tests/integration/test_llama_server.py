"""The generation preview against llama.cpp's own OpenAI-compatible server (llama-cpp-python's
`python -m llama_cpp.server`), serving a tiny random model's GGUF on 127.0.0.1.

Protocol mismatches show up here first: this server lists its models under an alias, reports
its context at /v1/models only as the model's, and refuses `json_schema` (it takes `text` and
`json_object` only) with a 500 whose message names the field. The tiny model writes nonsense, so
the examples are rejected with a reason: never a protocol error, a crash or a hang. The model
writes ASCII only: on long runs of broken UTF-8 this server slows to a crawl (its streaming
re-decodes every held-back token against the whole prompt), which a random model's bytes
trigger and a real model's text does not."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

import httpx
import pytest

from finetuneflow.core.export.gguf import F16, write_gguf
from tests.helpers.cli import cli_project, pump_notes, run_cli, run_cli_json
from tests.helpers.families import FAMILIES, build_family_model
from tests.integration.test_generation_failures import free_port

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    any(find_spec(name) is None for name in ("llama_cpp", "fastapi", "uvicorn", "sse_starlette",
                                             "starlette_context", "pydantic_settings")),
    reason="llama-cpp-python's server is not installed (pip install 'finetuneflow[test]' "
           "'finetuneflow[gguf-q4]')")]
FAST = {"FINETUNEFLOW_LLM_RETRY_BASE_S": "0.01"}
ALIAS = "tiny-llama"
NOTICE = "The server does not accept json_schema; using json_object for this server."
START_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The server's base URL (…/v1), the model loaded and answering."""
    folder = tmp_path_factory.mktemp("llama-server")
    source = build_family_model(FAMILIES["llama"], folder / "model", ascii_only=True)
    model = write_gguf(source, folder / "tiny.gguf", F16, name="tiny llama").path
    port = free_port()
    log = (folder / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias",
         ALIAS, "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
         "--n_threads", "1"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_until_up(url, process, folder / "server.log")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # uvicorn can sit in a request and ignore SIGTERM
            process.kill()
            process.wait()
        log.close()


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.5)
    pytest.fail(f"llama_cpp.server did not answer within {START_TIMEOUT_S} s")


@pytest.fixture
def project(home: Path, tiny_model_dir: Path, tmp_path: Path) -> str:
    return cli_project(home, tiny_model_dir, pump_notes(tmp_path / "notes.txt"))


def _llm(url: str) -> list[str]:
    """One request at a time: this server drops the running answer when another arrives."""
    return ["--provider", "openai", "--base-url", url, "--llm", ALIAS, "--concurrency", "1",
            "--max-chunks", "2"]


def _last_job(home: Path) -> tuple[str, str]:
    with sqlite3.connect(home / "finetuneflow.db") as db:
        row = db.execute("SELECT status, message FROM jobs WHERE kind = 'preview' "
                         "ORDER BY id DESC LIMIT 1").fetchone()
    return str(row[0]), str(row[1] or "")


def test_the_preview_runs_against_llama_cpps_server(home: Path, project: str,
                                                    server: str) -> None:
    result = run_cli(home, "generate", project, "--preview", *_llm(server), timeout=300,
                     **FAST)
    print(result.stderr[-3000:])
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines().count(NOTICE) == 1, result.stderr
    assert "0 examples accepted" in result.stdout
    status, message = _last_job(home)
    assert status == "succeeded" and NOTICE in message
    with sqlite3.connect(home / "finetuneflow.db") as db:  # the tiny model's nonsense
        rows = db.execute("SELECT status, reject_reason FROM dataset_examples").fetchall()
    print(rows)
    assert rows and all(state == "rejected" and reason for state, reason in rows)


def test_preview_json_reports_the_fallback_and_the_rejections(home: Path, project: str,
                                                              server: str) -> None:
    outcome = run_cli_json(home, "generate", project, "--preview", *_llm(server), **FAST)
    print(outcome)
    assert outcome["structured_output"] == "json_object"
    assert outcome["structured_notice"] == NOTICE
    assert outcome["chunks_done"] > 0
    assert outcome["accepted"] == 0 and outcome["rejected"] > 0


def test_answers_dropped_by_concurrent_requests_are_said_with_what_to_do(
        home: Path, project: str, server: str) -> None:
    """At 4 at once this server drops all but the newest answer: the run ends (exit 0), says
    the chunks failed and can be retried, and the log says to set the concurrency to 1."""
    result = run_cli(home, "generate", project, "--preview", "--provider", "openai",
                     "--base-url", server, "--llm", ALIAS, "--concurrency", "4", timeout=300,
                     **FAST)
    print(result.stderr[-3000:])
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "stream cut short; run the same command again" in result.stderr
    log = (home / "logs" / "finetuneflow.log").read_text(encoding="utf-8")
    assert "set the concurrency to 1" in log


def test_a_model_the_server_does_not_serve_fails_in_one_line(home: Path, project: str,
                                                             server: str) -> None:
    result = run_cli(home, "generate", project, "--preview", "--provider", "openai",
                     "--base-url", server, "--llm", "no-such-model", **FAST)
    print(result.stderr)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert _last_job(home)[0] == "failed"
