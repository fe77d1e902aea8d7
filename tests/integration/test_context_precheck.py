"""The context the server reports (llama-server /props, Ollama /api/show) refuses a prompt that
cannot fit before any chunk is spent; Test connection says the size; no report, no check.

The real CLI in a child process against the fake LLM server."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from finetuneflow.core.generation import LLMClient, LLMSettings, test_connection
from finetuneflow.core.generation.client import answer_room, estimated_prompt_tokens
from finetuneflow.core.generation.errors import ContextTooSmallError
from tests.helpers.cli import cli_project, run_cli, run_cli_json
from tests.helpers.fake_llm import FakeLLMServer

FAST = {"FINETUNEFLOW_LLM_RETRY_BASE_S": "0.01"}
PARAGRAPH = ("The {n}th pump in hall {n} is checked every {m} days by the night crew; its "
             "filter is replaced after {k} hours of running, and the log is signed twice. ")


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


@pytest.fixture
def project(home: Path, tiny_model_dir: Path, tmp_path: Path) -> str:
    """Chunks of about 6,000 characters: about 1,500 tokens in a prompt."""
    document = tmp_path / "notes.txt"
    document.write_text("".join(PARAGRAPH.format(n=n, m=n + 2, k=n * 10) for n in range(200)),
                        encoding="utf-8")
    return cli_project(home, tiny_model_dir, document, chunk_tokens=1500)


def openai_llm(server: FakeLLMServer) -> list[str]:
    return ["--provider", "openai", "--base-url", f"{server.base_url}/v1", "--llm", "gpt-oss:20b"]


def chat_requests(server: FakeLLMServer) -> int:
    return sum(1 for r in server.requests if r.path.endswith(("/completions", "/api/chat")))


def jobs(home: Path) -> list[tuple[str, str, str | None]]:
    with sqlite3.connect(home / "finetuneflow.db") as db:
        return db.execute("SELECT kind, status, error FROM jobs WHERE kind IN "
                          "('preview', 'generate') ORDER BY id").fetchall()


@pytest.mark.parametrize("mode", ["--preview", "--full"])
def test_a_prompt_over_llama_servers_context_fails_the_run_before_any_chunk(
        home: Path, project: str, server: FakeLLMServer, mode: str) -> None:
    server.set_context_size(1024)
    result = run_cli(home, "generate", project, mode, *openai_llm(server), **FAST)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, result.stderr
    line = errors[0]
    assert "server (1,024 tokens)" in line and "room for the answer (256 tokens)" in line
    assert "--chunk-tokens N" in line and "--llm NAME" in line and "num_ctx" in line
    assert chat_requests(server) == 0  # nothing spent
    _kind, status, error = jobs(home)[-1]
    assert status == "failed" and error is not None and "1,024 tokens" in error
    assert "\n" not in error


def test_prompts_that_fit_the_reported_context_run_as_before(
        home: Path, project: str, server: FakeLLMServer) -> None:
    server.set_context_size(100_000)
    outcome = run_cli_json(home, "generate", project, "--preview", *openai_llm(server), **FAST)
    assert outcome["accepted"] > 0
    assert chat_requests(server) > 0
    assert jobs(home)[-1][1] == "succeeded"


def test_a_server_that_says_no_context_is_not_checked(
        home: Path, project: str, server: FakeLLMServer) -> None:
    """No /props (404) and no limit: the run goes on, as it did before the check."""
    outcome = run_cli_json(home, "generate", project, "--preview", *openai_llm(server), **FAST)
    assert outcome["accepted"] > 0
    assert any(r.path == "/props" for r in server.requests)
    assert jobs(home)[-1][1] == "succeeded"


def test_ollamas_num_ctx_wins_over_the_models_context_length(server: FakeLLMServer) -> None:
    server.set_num_ctx(600)  # model_info still says 131,072
    settings = LLMSettings(provider="ollama", base_url=server.base_url, model="gpt-oss:20b",
                           max_tokens=8192)
    long_prompt = [{"role": "user", "content": "word " * 400}]  # about 500 tokens
    with LLMClient(settings) as client:
        client.preflight()
        assert client.context_tokens == 600
        with pytest.raises(ContextTooSmallError) as caught:
            client.require_prompt_fits(long_prompt, settings.max_tokens)
    assert caught.value.context_tokens == 600 and caught.value.prompt_tokens == 504
    assert "(about 504 tokens)" in str(caught.value) and "(600 tokens)" in str(caught.value)


def test_ollamas_model_context_length_is_used_without_num_ctx(server: FakeLLMServer) -> None:
    server.set_context_size(2048)
    settings = LLMSettings(provider="ollama", base_url=server.base_url, model="gpt-oss:20b")
    with LLMClient(settings) as client:
        client.preflight()
        assert client.context_tokens == 2048
        client.require_prompt_fits([{"role": "user", "content": "short"}], 8192)


def test_an_unknown_model_to_show_leaves_the_context_unknown(server: FakeLLMServer) -> None:
    settings = LLMSettings(provider="ollama", base_url=server.base_url, model="gpt-oss:20b")
    server.set_models(["other:1b"])
    with LLMClient(settings) as client:
        assert client.context_length() is None


def test_the_answer_room_is_max_tokens_up_to_a_quarter_of_the_context() -> None:
    assert answer_room(1024, 100) == 100
    assert answer_room(4096, 8192) == 1024  # Ollama's default context, the app's max tokens
    assert answer_room(4096, None) == 1024
    assert estimated_prompt_tokens([{"role": "user", "content": "abcde"}]) == 2 + 4


@pytest.mark.parametrize(("provider", "path"), [("openai", "/v1"), ("ollama", "")])
def test_test_connection_says_the_context_it_found(server: FakeLLMServer, provider: str,
                                                   path: str) -> None:
    server.set_context_size(32_768)
    settings = LLMSettings(provider=provider, base_url=server.base_url + path,  # type: ignore[arg-type]
                           model="gpt-oss:20b")
    check = test_connection(settings)
    assert check.ok, check.message
    assert check.context_tokens == 32_768
    assert "Context: 32,768 tokens." in check.message


def test_test_connection_says_when_the_server_does_not_tell(server: FakeLLMServer) -> None:
    settings = LLMSettings(provider="openai", base_url=f"{server.base_url}/v1",
                           model="gpt-oss:20b")
    check = test_connection(settings)
    assert check.ok and check.context_tokens is None
    assert "does not say its context length" in check.message
