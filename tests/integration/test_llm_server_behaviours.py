"""What real servers do (llama.cpp's, llama-cpp-python's), taught to the fake, and how the
client copes: structured output by what the server takes, streams cut short, `: ping`
comments, no usage in streams, context-size 400s."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from finetuneflow.core.generation import (
    InvalidRequestError,
    LLMClient,
    LLMSettings,
    RequestRejectedError,
    RetryPolicy,
    StreamCutShortError,
    Task,
    run_generation,
)
from finetuneflow.core.generation.client import forget_structured_modes
from finetuneflow.core.generation.engine import ChunkInput, ChunkResult
from tests.helpers.cli import run_cli, run_cli_json
from tests.helpers.fake_llm import FakeLLMServer, Fault

FAST = RetryPolicy(attempts=5, base_s=0.01, cap_s=0.05)
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}}
PROMPT = [{"role": "user", "content": "Say something."}]


@pytest.fixture(autouse=True)
def fresh_modes() -> Iterator[None]:
    """A later test's server may get this one's port: it must not inherit its mode."""
    forget_structured_modes()
    yield
    forget_structured_modes()


def client(server: FakeLLMServer, **changes: Any) -> LLMClient:
    settings = LLMSettings(provider="openai", base_url=f"{server.base_url}/v1",
                           model="gpt-oss:20b", **changes)
    return LLMClient(settings, retry=FAST)


def chat_payloads(server: FakeLLMServer) -> list[dict[str, Any]]:
    return [r.payload for r in server.requests if r.path.endswith("/completions")]


def formats(server: FakeLLMServer) -> list[str | None]:
    return [(p.get("response_format") or {}).get("type") for p in chat_payloads(server)]


def test_json_schema_rejected_with_a_500_falls_back_once_and_is_remembered(
        fake_llm: FakeLLMServer, caplog: pytest.LogCaptureFixture) -> None:
    fake_llm.set_reject_json_schema()
    with client(fake_llm) as llm:
        assert llm.chat(PROMPT, schema=SCHEMA).content
        assert llm.chat(PROMPT, schema=SCHEMA).content
    # One json_schema request (never retried as a transient 500), then json_object only.
    assert formats(fake_llm) == ["json_schema", "json_object", "json_object"]
    said = [r.message for r in caplog.records if "json_object from now on" in r.message]
    assert len(said) == 1 and fake_llm.base_url in said[0]


def test_a_chosen_json_schema_mode_fails_without_retrying(fake_llm: FakeLLMServer) -> None:
    fake_llm.set_reject_json_schema()
    with client(fake_llm, structured_mode="json_schema") as llm, \
            pytest.raises(InvalidRequestError, match="validation error"):
        llm.chat(PROMPT, schema=SCHEMA)
    assert formats(fake_llm) == ["json_schema"]


def test_text_mode_puts_the_schema_in_the_prompt(fake_llm: FakeLLMServer) -> None:
    with client(fake_llm, structured_mode="text") as llm:
        llm.chat(PROMPT, schema=SCHEMA)
    payload = chat_payloads(fake_llm)[-1]
    assert "response_format" not in payload
    assert json.dumps(SCHEMA) in payload["messages"][-1]["content"]


def test_json_object_mode_on_the_native_api(fake_llm: FakeLLMServer) -> None:
    settings = LLMSettings(provider="ollama", base_url=fake_llm.base_url, model="gpt-oss:20b",
                           structured_mode="json_object")
    with LLMClient(settings, retry=FAST) as llm:
        llm.chat(PROMPT, schema=SCHEMA)
    assert [r.payload["format"] for r in fake_llm.requests] == ["json"]


@pytest.mark.parametrize("api", ["openai", "native"])
def test_a_stream_cut_short_is_retried_once(fake_llm: FakeLLMServer, api: str) -> None:
    fake_llm.fail_next(Fault.CUT_SHORT)
    settings = LLMSettings(provider="ollama", base_url=fake_llm.base_url, model="gpt-oss:20b",
                           api=api)  # type: ignore[arg-type]
    with LLMClient(settings, retry=FAST) as llm:
        result = llm.chat(PROMPT)
    assert result.content and result.attempts == 2


def test_a_stream_without_finish_reason_twice_rejects_the_chunk(
        fake_llm: FakeLLMServer) -> None:
    fake_llm.fail_next(Fault.CUT_SHORT, count=2)
    with client(fake_llm) as llm, pytest.raises(StreamCutShortError):
        llm.chat(PROMPT)
    assert len(chat_payloads(fake_llm)) == 2  # retried once, not five times

    fake_llm.reset_counters()
    fake_llm.fail_next(Fault.CUT_SHORT, count=2)
    done: list[ChunkResult] = []
    with client(fake_llm) as llm:
        summary = run_generation(llm, Task(), [ChunkInput(1, "Pumps run all night.")],
                                 on_result=done.append, concurrency=1)
    assert done == [] and summary.describe_failures() == "1 request failed: 1 stream cut short"


def test_ping_comments_are_ignored(fake_llm: FakeLLMServer) -> None:
    fake_llm.set_ping_comments()
    body = {"model": "gpt-oss:20b", "messages": PROMPT, "stream": True}
    raw = httpx.post(f"{fake_llm.base_url}/v1/chat/completions", json=body).text
    assert ": ping" in raw
    with client(fake_llm) as llm:
        result = llm.chat(PROMPT)
    assert result.content and result.done_reason == "stop" and result.attempts == 1


def test_usage_missing_from_streams_is_unknown(fake_llm: FakeLLMServer) -> None:
    fake_llm.set_stream_usage(False)
    with client(fake_llm) as llm:
        result = llm.chat(PROMPT)
        assert result.prompt_tokens is None and result.completion_tokens is None
        assert not llm.usage.complete


def test_a_prompt_over_the_context_size_is_refused_once(fake_llm: FakeLLMServer) -> None:
    fake_llm.set_context_size(20)
    long_prompt = [{"role": "user", "content": "word " * 200}]
    with client(fake_llm) as llm, pytest.raises(RequestRejectedError) as caught:
        llm.chat(long_prompt)
    assert len(chat_payloads(fake_llm)) == 1  # not retried
    message = str(caught.value)
    assert "does not fit the server's context (20 tokens)" in message
    assert "smaller chunks" in message and caught.value.cause == "prompt over the context size"
    error = httpx.post(f"{fake_llm.base_url}/v1/chat/completions",
                       json={"model": "m", "messages": long_prompt}).json()["error"]
    assert error["type"] == "exceed_context_size_error" and error["n_ctx"] == 20
    props = httpx.get(f"{fake_llm.base_url}/props").json()
    assert props["default_generation_settings"]["n_ctx"] == 20


def test_cli_structured_output_flag_and_unknown_usage(
        home: Path, tiny_model_dir: Path, tmp_path: Path, fake_llm: FakeLLMServer) -> None:
    fake_llm.set_stream_usage(False)
    document = tmp_path / "a.txt"
    document.write_text("\n\n".join(f"Gate {n} opens at {n} o'clock every day." * 4
                                    for n in range(20)), encoding="utf-8")
    project = run_cli_json(home, "project", "create", "Gates")["id"]
    run_cli_json(home, "model", "set", project, str(tiny_model_dir))
    run_cli_json(home, "ingest", project, str(document))
    result = run_cli(home, "generate", project, "--preview", "--provider", "openai",
                     "--base-url", f"{fake_llm.base_url}/v1", "--llm", "gpt-oss:20b",
                     "--structured-output", "json_object", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["prompt_tokens"] is None and out["completion_tokens"] is None
    assert out["chunks_done"] >= 1
    assert set(formats(fake_llm)) == {"json_object"}
    human = run_cli(home, "generate", project, "--full", "--max-chunks", "1")
    assert human.returncode == 0, human.stderr
    assert "Tokens: unknown" in human.stderr and "0 prompt" not in human.stderr
    bad = run_cli(home, "generate", project, "--preview", "--structured-output", "xml")
    assert bad.returncode == 2
