"""A hostile or broken LLM server: every answer is bounded in size, line length and time, a
parse failure is a rejected chunk with its reason, the job ends with a real status and the
exit code says so, and examples already stored are kept.

The client in this process against the fake server, then the real CLI in a child process."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from finetuneflow.core.generation import (
    AnswerUnreadableError,
    ChunkInput,
    ChunkResult,
    ConfigurationError,
    DeadlineError,
    LLMClient,
    LLMSettings,
    ResponseLimits,
    RetryPolicy,
    Task,
    TaskSettings,
    run_generation,
)
from tests.helpers.cli import REPO_ROOT, cli_env, cli_project, pump_notes, run_cli, run_cli_json
from tests.helpers.fake_llm import FakeLLMServer, Fault
from tests.integration.test_generation_failures import (
    FAST,
    assert_failed_in_one_line,
    job_statuses,
    llm,
)

MB = 2**20
PROMPT = [{"role": "user", "content": "Say something."}]
LOW_LIMITS = ("--llm-max-answer-mb", "1", "--llm-max-line-kb", "64", "--llm-deadline", "1")


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


@pytest.fixture
def project(home: Path, tiny_model_dir: Path, tmp_path: Path) -> str:
    project = cli_project(home, tiny_model_dir, pump_notes(tmp_path / "notes.txt"))
    run_cli_json(home, "settings", *LOW_LIMITS)
    return project


def client(server: FakeLLMServer, api: str = "native", **limits: float) -> LLMClient:
    settings = LLMSettings(provider="ollama", base_url=server.base_url, model="gpt-oss:20b",
                           api=api)  # type: ignore[arg-type]
    return LLMClient(settings, limits=ResponseLimits(**limits),  # type: ignore[arg-type]
                     retry=RetryPolicy(base_s=0.01))


def examples(home: Path) -> list[tuple[str, str | None]]:
    with sqlite3.connect(home / "finetuneflow.db") as db:
        return db.execute("SELECT status, reject_reason FROM dataset_examples ORDER BY id"
                          ).fetchall()


# -- the client -------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole body"])
@pytest.mark.parametrize("api", ["native", "openai"])
def test_a_giant_answer_stops_at_the_limit_with_little_memory(
        server: FakeLLMServer, api: str, stream: bool) -> None:
    server.set_hostile(size_bytes=48 * MB)
    server.fail_next(Fault.GIANT_BODY)
    with client(server, api, max_answer_bytes=1 * MB) as llm_client:
        tracemalloc.start()
        try:
            with pytest.raises(AnswerUnreadableError, match="answer passed 1 MB"):
                llm_client.chat(PROMPT, stream=stream)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 6 * MB, f"{peak / MB:.1f} MB held for a 48 MB answer"
    assert server.requests_served == 1  # an unreadable answer is not asked for again


@pytest.mark.parametrize("api", ["native", "openai"])
def test_a_stream_without_newlines_stops_at_the_line_limit(server: FakeLLMServer,
                                                           api: str) -> None:
    server.set_hostile(size_bytes=48 * MB)
    server.fail_next(Fault.NO_NEWLINE)
    too_long = "line of the server's answer passed 64 KB"
    with client(server, api, max_line_bytes=64 * 1024) as llm_client, pytest.raises(
            AnswerUnreadableError, match=too_long):
        llm_client.chat(PROMPT, stream=True)


@pytest.mark.parametrize("fault", [Fault.ENDLESS, Fault.DRIBBLE])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole body"])
def test_an_answer_that_never_ends_stops_at_the_deadline(server: FakeLLMServer, fault: Fault,
                                                         stream: bool) -> None:
    server.set_hostile(interval_s=0.02)  # far under the read timeout of 300 s
    server.fail_next(fault)
    with client(server, deadline_s=0.5) as llm_client, pytest.raises(DeadlineError) as caught:
        llm_client.chat(PROMPT, stream=stream)
    assert "request deadline" in str(caught.value)
    assert server.requests_served == 1  # not retried: it would take as long again


def test_a_deadline_shorter_than_the_read_timeout_bounds_a_silent_server(
        server: FakeLLMServer) -> None:
    server.set_timeout_fault_s(30)
    server.fail_next(Fault.TIMEOUT)
    with client(server, deadline_s=0.5) as llm_client, pytest.raises(DeadlineError):
        llm_client.chat(PROMPT)
    assert server.requests_served == 1


def test_json_nested_ten_thousand_deep_is_unreadable_not_a_crash(server: FakeLLMServer) -> None:
    for stream in (True, False):
        server.fail_next(Fault.DEEP_JSON)
        with client(server) as llm_client, pytest.raises(AnswerUnreadableError) as caught:
            llm_client.chat(PROMPT, stream=stream)
        assert caught.value.reason == "answer nested too deeply to parse"


def test_a_redirect_to_a_file_url_is_named_never_recommended(server: FakeLLMServer) -> None:
    server.fail_next(Fault.REDIRECT_FILE)
    with client(server) as llm_client, pytest.raises(ConfigurationError) as caught:
        llm_client.chat(PROMPT)
    message = str(caught.value)
    assert "to file:/etc/passwd (301)" in message
    assert "Set the base URL" not in message and "\n" not in message


def test_unreadable_answers_in_a_row_stop_the_run_like_failures(server: FakeLLMServer) -> None:
    server.set_hostile(size_bytes=2 * MB)
    server.set_fault_rate(1.0, [Fault.GIANT_BODY])
    chunks = [ChunkInput(i, f"Pump {i} is checked every {i} days.") for i in range(20)]
    results: list[ChunkResult] = []
    with client(server, max_answer_bytes=1 * MB) as llm_client:
        summary = run_generation(llm_client, Task(TaskSettings()), chunks,
                                 on_result=results.append, concurrency=1,
                                 max_consecutive_failures=3)
    assert isinstance(summary.error, AnswerUnreadableError)
    assert summary.chunks_done == summary.unreadable == len(results) == 3
    assert summary.nothing_succeeded and server.requests_served == 3
    assert [r.rejects[0].reason for r in results] == ["unreadable answer: answer over 1 MB"] * 3


# -- the CLI ------------------------------------------------------------------------------------


def test_giant_answers_fail_the_run_and_keep_what_was_stored(
        home: Path, project: str, server: FakeLLMServer) -> None:
    first = run_cli(home, "generate", project, "--full", "--max-chunks", "2",
                    *llm(server.base_url), **FAST)
    assert first.returncode == 0, first.stderr
    before = examples(home)
    assert before and all(status == "accepted" for status, _ in before)

    server.set_hostile(size_bytes=8 * MB)
    server.set_fault_rate(1.0, [Fault.GIANT_BODY])
    result = run_cli(home, "generate", project, "--full", "--max-chunks", "3",
                     *llm(server.base_url), **FAST)

    line = assert_failed_in_one_line(home, result, "answer passed 1 MB", "largest answer")
    assert "unexpected" not in result.stderr
    assert examples(home) == before + [("rejected", "unreadable answer: answer over 1 MB")] * 3
    # The rejected chunks are done: a rerun against a sane server asks for new chunks only.
    server.clear_faults()
    rerun = run_cli_json(home, "generate", project, "--full", "--max-chunks", "1",
                         *llm(server.base_url), **FAST)
    assert rerun["chunks_done"] == 1 and "passed" in line


def test_a_stream_without_newlines_fails_the_preview_with_the_line_limit(
        home: Path, project: str, server: FakeLLMServer) -> None:
    server.set_hostile(size_bytes=8 * MB)
    server.set_fault_rate(1.0, [Fault.NO_NEWLINE])
    result = run_cli(home, "generate", project, "--preview", *llm(server.base_url), **FAST)
    assert_failed_in_one_line(home, result, "passed 64 KB, the longest line allowed")
    assert examples(home) == [("rejected", "unreadable answer: a stream line over 64 KB")] * 4


@pytest.mark.parametrize("fault", [Fault.ENDLESS, Fault.DRIBBLE])
def test_answers_that_never_end_fail_the_run_at_the_deadline(
        home: Path, project: str, server: FakeLLMServer, fault: Fault) -> None:
    server.set_hostile(interval_s=0.02)
    server.set_fault_rate(1.0, [fault])
    result = run_cli(home, "generate", project, "--full", "--max-chunks", "2",
                     *llm(server.base_url), "--read-timeout", "300", **FAST)
    assert_failed_in_one_line(home, result, "still answering after 1 s", "deadline")
    assert examples(home) == []  # failed chunks stay undone, for the next run
    assert server.requests_by_endpoint["/api/chat"] == 2  # one request per chunk, no retries


def test_one_answer_nested_too_deep_is_a_rejected_chunk_and_the_run_goes_on(
        home: Path, project: str, server: FakeLLMServer) -> None:
    server.fail_next(Fault.DEEP_JSON)
    result = run_cli(home, "generate", project, "--preview", *llm(server.base_url),
                     "--concurrency", "1", "--json", **FAST)
    assert result.returncode == 0, result.stderr
    assert "1 answer(s) could not be read and were rejected: The server's answer is JSON " \
           "nested too deeply to parse" in result.stderr
    assert job_statuses(home)[-1] == ("preview", "succeeded")
    out = json.loads(result.stdout)
    assert out["unreadable"] == 1 and out["chunks_done"] == 4
    rows = examples(home)
    assert rows.count(("rejected", "unreadable answer: answer nested too deeply to parse")) == 1
    assert ("accepted", None) in rows


def test_every_answer_nested_too_deep_fails_the_run(home: Path, project: str,
                                                    server: FakeLLMServer) -> None:
    server.set_fault_rate(1.0, [Fault.DEEP_JSON])
    result = run_cli(home, "generate", project, "--preview", *llm(server.base_url), **FAST)
    assert_failed_in_one_line(home, result, "nested too deeply to parse")
    assert result.returncode == 1


def test_a_model_answer_nested_too_deep_is_rejected_with_its_reason(
        home: Path, project: str, server: FakeLLMServer) -> None:
    server.set_responder(lambda request, api: "[" * 10_000 + "]" * 10_000)
    result = run_cli(home, "generate", project, "--preview", *llm(server.base_url), **FAST)
    assert result.returncode == 0, result.stderr
    assert "unexpected" not in result.stderr
    reason = "unreadable answer: the answer's JSON is nested too deeply to parse; the repair " \
             "request did not help either"
    assert examples(home) == [("rejected", reason)] * 4


def test_a_redirect_to_a_file_fails_the_run_naming_it(home: Path, project: str,
                                                      server: FakeLLMServer) -> None:
    server.set_fault_rate(1.0, [Fault.REDIRECT_FILE])
    result = run_cli(home, "generate", project, "--preview", *llm(server.base_url), **FAST)
    line = assert_failed_in_one_line(home, result, "to file:/etc/passwd (301)")
    assert "Set the base URL" not in line


def test_escape_sequences_are_stored_but_printed_escaped(home: Path, project: str,
                                                         server: FakeLLMServer) -> None:
    server.set_fault_rate(1.0, [Fault.ESCAPES])
    run_cli_json(home, "generate", project, "--full", "--max-chunks", "1",
                 *llm(server.base_url), **FAST)
    with sqlite3.connect(home / "finetuneflow.db") as db:
        (messages, example_id), *_ = db.execute("SELECT messages, id FROM dataset_examples")
    assert "\x1b[2J" in json.loads(messages)[1]["content"]  # nothing lost in the database

    listing = run_cli(home, "dataset", "list", project)
    shown = run_cli(home, "dataset", "show", project, str(example_id))
    for output in (listing.stdout, shown.stdout):
        assert "\\x1b[2J\\x1b]0;owned\\x07\\x1b[31m\\u202e" in output
        assert "\x1b" not in output and "\x07" not in output and "\u202e" not in output


def test_a_key_over_plain_http_to_another_machine_is_warned_once(home: Path,
                                                                 project: str) -> None:
    result = run_cli(home, "generate", project, "--preview", "--provider", "openai",
                     "--base-url", "http://llm.example.invalid:8000/v1", "--llm", "m",
                     OLLAMA_API_KEY="sk-secret-123", **FAST)
    warnings = [line for line in result.stderr.splitlines() if "unencrypted" in line]
    assert warnings == ["finetuneflow: warning: The API key is sent unencrypted (plain http) "
                        "to llm.example.invalid: use an https base URL, or remove the key if "
                        "this server needs none."]
    assert "sk-secret-123" not in result.stderr


def test_a_key_to_this_machine_gets_no_warning(home: Path, project: str,
                                               server: FakeLLMServer) -> None:
    server.set_api_key("sk-secret-123")
    result = run_cli(home, "generate", project, "--preview", *llm(server.base_url),
                     OLLAMA_API_KEY="sk-secret-123", **FAST)
    assert result.returncode == 0, result.stderr
    assert "unencrypted" not in result.stderr


def test_the_limits_are_settings_shown_and_checked(home: Path) -> None:
    shown = run_cli_json(home, "settings")
    assert (shown["llm_max_answer_mb"], shown["llm_max_line_kb"], shown["llm_deadline_s"]) == (
        8, 1024, 600.0)
    changed = run_cli_json(home, "settings", "--llm-max-answer-mb", "2", "--llm-max-line-kb",
                           "128", "--llm-deadline", "30")
    assert (changed["llm_max_answer_mb"], changed["llm_max_line_kb"],
            changed["llm_deadline_s"]) == (2, 128, 30.0)
    refused = run_cli(home, "settings", "--llm-max-line-kb", "4096")
    assert refused.returncode == 1
    assert refused.stderr.strip() == ("finetuneflow: error: The longest LLM stream line must be "
                                      "between 1 KB and the largest answer.")
    assert run_cli_json(home, "settings")["llm_max_line_kb"] == 128  # unchanged


def peak_rss_kb(home: Path, *args: str) -> tuple[int, subprocess.CompletedProcess[str]]:
    """The CLI in a child that prints its own peak RSS (kB) as the last line of stderr."""
    code = ("import resource, sys\n"
            "from finetuneflow.__main__ import main\n"
            "try:\n    code = main(sys.argv[1:])\n"
            "finally:\n"
            "    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
            "sys.exit(code)\n")
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                            env=cli_env(home, **FAST), timeout=120, cwd=REPO_ROOT)
    return int(result.stderr.strip().splitlines()[-1]), result


def test_the_cli_peak_memory_barely_moves_for_a_giant_answer(
        home: Path, project: str, server: FakeLLMServer) -> None:
    normal, ok = peak_rss_kb(home, "generate", project, "--preview", *llm(server.base_url))
    assert ok.returncode == 0, ok.stderr
    server.set_hostile(size_bytes=96 * MB)
    server.set_fault_rate(1.0, [Fault.GIANT_BODY, Fault.NO_NEWLINE])
    giant, failed = peak_rss_kb(home, "generate", project, "--preview", *llm(server.base_url))
    assert failed.returncode == 1
    print(f"\npeak RSS of the CLI: {normal / 1024:.0f} MB for a normal preview, "
          f"{giant / 1024:.0f} MB when every answer is 96 MB (1 MB limit)")
    assert giant < normal + 32 * 1024
