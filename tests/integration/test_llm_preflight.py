"""The preflight before a run and Test connection: server, key and model, checked up front."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from finetuneflow.core.generation import (
    AuthError,
    LLMClient,
    LLMSettings,
    ModelNotFoundError,
    UnreachableError,
)
from finetuneflow.core.generation import client as llm
from finetuneflow.core.generation.client import ConnectionStatus
from tests.helpers.cli import run_cli, run_cli_json
from tests.helpers.fake_llm import FakeLLMServer


def chats(server: FakeLLMServer) -> list[str]:
    return [r.path for r in server.requests if r.path.endswith(("/chat", "/completions"))]


def test_the_preflight_names_the_models_the_server_offers(fake_llm: FakeLLMServer) -> None:
    settings = LLMSettings(provider="ollama", base_url=fake_llm.base_url, model="no-such:1b")
    with LLMClient(settings) as client, pytest.raises(ModelNotFoundError) as caught:
        client.preflight()
    assert "gpt-oss:20b" in str(caught.value) and caught.value.available
    assert chats(fake_llm) == []  # one listing, no chat


def test_the_preflight_accepts_a_listed_model_with_or_without_its_tag(
        fake_llm: FakeLLMServer) -> None:
    fake_llm.set_models(["llama3.2:latest", "gpt-oss:20b"])
    for model, api in (("llama3.2", "native"), ("gpt-oss:20b", "openai")):
        settings = LLMSettings(provider="ollama", base_url=fake_llm.base_url, model=model,
                               api=api)  # type: ignore[arg-type]
        with LLMClient(settings) as client:
            assert "gpt-oss:20b" in client.preflight()


def test_the_preflight_wants_a_key_for_ollama_cloud(fake_llm: FakeLLMServer) -> None:
    settings = LLMSettings(provider="ollama-cloud", base_url=fake_llm.base_url,
                           model="gpt-oss:20b")
    with LLMClient(settings, None) as client, pytest.raises(AuthError, match="OLLAMA_API_KEY"):
        client.preflight()
    assert fake_llm.requests == []


def test_the_preflight_fails_at_once_when_nothing_listens() -> None:
    with FakeLLMServer() as gone:
        url = gone.base_url
    settings = LLMSettings(provider="openai", base_url=f"{url}/v1", model="m")
    with LLMClient(settings) as client, pytest.raises(UnreachableError):
        client.preflight()


def test_test_connection_checks_the_model_against_the_list(fake_llm: FakeLLMServer) -> None:
    fake_llm.set_answer_any_model()  # as llama-server: any name answers
    fake_llm.set_models(["tiny.gguf"])
    settings = LLMSettings(provider="openai", base_url=f"{fake_llm.base_url}/v1",
                           model="no-such-model")
    check = llm.test_connection(settings)
    assert check.status is ConnectionStatus.UNKNOWN_MODEL and "tiny.gguf" in check.message
    assert "Connected" not in check.message


@pytest.mark.parametrize("api", ["native", "openai"])
def test_test_connection_sends_the_generation_s_kind_of_request(
        fake_llm: FakeLLMServer, api: str) -> None:
    settings = LLMSettings(provider="ollama", base_url=fake_llm.base_url, model="gpt-oss:20b",
                           api=api)  # type: ignore[arg-type]
    assert llm.test_connection(settings).ok
    probe = [r for r in fake_llm.requests if r.payload and "messages" in r.payload][-1].payload
    assert probe["stream"] is True  # generation streams by default
    if api == "native":
        assert probe["format"]["type"] == "object"
    else:
        assert probe["response_format"]["type"] == "json_schema"


def test_generate_with_an_unknown_model_fails_naming_the_flag_and_the_choices(
        home: Path, tiny_model_dir: Path, tmp_path: Path, fake_llm: FakeLLMServer) -> None:
    document = tmp_path / "a.txt"
    document.write_text("\n\n".join(f"Gate {n} opens at {n} o'clock." * 5 for n in range(20)),
                        encoding="utf-8")
    project = run_cli_json(home, "project", "create", "Gates")["id"]
    run_cli_json(home, "model", "set", project, str(tiny_model_dir))
    run_cli_json(home, "ingest", project, str(document))
    result = run_cli(home, "generate", project, "--preview", "--provider", "ollama",
                     "--base-url", fake_llm.base_url, "--llm", "no-such:1b")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "--llm NAME" in lines[0] and "gpt-oss:20b" in lines[0] and "no-such:1b" in lines[0]
    assert chats(fake_llm) == []
    with sqlite3.connect(home / "finetuneflow.db") as db:
        assert db.execute("SELECT status FROM jobs WHERE kind = 'preview'").fetchall() == [
            ("failed",)]
