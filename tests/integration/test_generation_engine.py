"""The generation engine over real HTTP against the fake Ollama server."""

from __future__ import annotations

import json
import random
import string
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from finetuneflow.core.generation.client import LLMClient, RetryPolicy
from finetuneflow.core.generation.engine import (
    ChunkInput,
    ChunkResult,
    QualityOptions,
    generate_for_chunk,
    run_generation,
)
from finetuneflow.core.generation.errors import (
    AuthError,
    ModelNotFoundError,
    QuotaExhaustedError,
    ServerError,
)
from finetuneflow.core.generation.parse import CUT_OFF_REASON
from finetuneflow.core.generation.quality import Deduplicator
from finetuneflow.core.generation.settings import LLMSettings
from finetuneflow.core.generation.tasks import Task, TaskSettings, TaskType
from finetuneflow.core.progress import Cancelled, CancelToken
from tests.helpers.fake_llm import Api, FakeLLMServer, Fault, last_user_text, qa_responder

KEY = "sk-engine-SECRET-abcdef0123456789"
MODEL = "gpt-oss:20b"
FAST = RetryPolicy(attempts=5, base_s=0.01, cap_s=0.05)
SUBJECTS = ["pump", "valve", "turbine", "boiler", "condenser", "filter", "sensor", "relay",
            "breaker", "gauge", "duct", "fan", "motor", "tank", "pipe", "coil"]


def passage(index: int) -> str:
    """One paragraph whose sentences (and so the fake's questions) differ per chunk.

    The fake quotes the longest paragraph of the prompt, so a chunk must be longer than the
    prompt's own paragraphs (real chunks, hundreds of tokens, always are). Each chunk gets its
    own made-up names, so questions from different chunks are not near duplicates."""
    rng = random.Random(index)

    def name() -> str:
        return " ".join("".join(rng.choices(string.ascii_lowercase, k=rng.randint(5, 9)))
                        for _ in range(3)).title()

    return " ".join(
        f"{name()} {fact}." for fact in (
            f"houses the {SUBJECTS[index % len(SUBJECTS)]} that runs at {100 + index} degrees",
            f"checks the seals every {index % 7 + 2} weeks during the spring season",
            f"replaced the main bearings in {1990 + index % 30} after a long outage",
            f"failed {index % 5} times over the last decade according to the records",
            "logs the pressure twice per shift by hand in the operations book",
            f"stores its spare parts in warehouse {index % 4 + 1} beside the loading dock",
            "covers the shutdown drill during the first week of every new hire",
            f"stays below {60 + index % 20} decibels when measured at the fence line",
            f"signs contractors in at gate {index % 3 + 1} before noon on weekdays",
            f"sets aside {index % 9 + 1} percent of its budget for unplanned repairs",
        )
    )


def chunks(count: int) -> list[ChunkInput]:
    return [ChunkInput(id=i, text=passage(i), file_id=i % 3, ordinal=i) for i in range(count)]


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(api_key=KEY) as fake:
        yield fake


@pytest.fixture
def make_client(server: FakeLLMServer) -> Iterator[Callable[..., LLMClient]]:
    clients: list[LLMClient] = []

    def make(
        api: str = "native", stream: bool = True, retry: RetryPolicy = FAST, **changes: Any
    ) -> LLMClient:
        # A short read timeout: once in a few hundred runs a request on a pooled connection
        # gets no answer from the test server, and the default 300 s wait outlasts the test.
        fields: dict[str, Any] = {"provider": "ollama", "base_url": server.base_url,
                                  "model": MODEL, "api": api, "stream": stream,
                                  "read_timeout": 20.0, **changes}
        client = LLMClient(LLMSettings(**fields), KEY, retry=retry)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def chat_count(server: FakeLLMServer) -> int:
    counts = server.requests_by_endpoint
    return counts.get("/api/chat", 0) + counts.get("/v1/chat/completions", 0)


def scripted(answers: Callable[[str], str]) -> Callable[[dict[str, Any], Api], str]:
    """A responder computed from the last user message."""
    return lambda request, api: answers(last_user_text(request))


def qa_item(question: str, answer: str, quote: str) -> dict[str, str]:
    return {"question": question, "answer": answer, "quote": quote}


# -- one chunk --------------------------------------------------------------------------------


@pytest.mark.parametrize(("api", "stream"), [("native", False), ("native", True),
                                             ("openai", False), ("openai", True)])
def test_a_chunk_gives_grounded_examples_as_chat_messages(
    server: FakeLLMServer, make_client: Callable[..., LLMClient], api: str, stream: bool
) -> None:
    task = Task(TaskSettings(system_prompt="You answer questions about the plant."))
    result = generate_for_chunk(make_client(api, stream), task, passage(1), chunk_id=1)
    assert len(result.examples) == 3 and result.rejects == []
    assert all(e.accepted for e in result.examples)
    first = result.examples[0]
    assert [m["role"] for m in first.messages] == ["system", "user", "assistant"]
    assert first.messages[0]["content"] == "You answer questions about the plant."
    assert first.item["quote"] in passage(1) and first.notes["grounding"] == 1.0
    assert result.usage.requests == 1 and result.usage.prompt_tokens > 0
    assert result.chunk_id == 1 and result.latency_s > 0
    assert server.last_request is not None
    prompt = server.last_request.payload["messages"][1]["content"]
    assert "Return only JSON" in prompt and passage(1) in prompt


@pytest.mark.parametrize(
    "fault", [Fault.THINK_TAGS, Fault.CODE_FENCE, Fault.THINKING, Fault.MALFORMED_JSON]
)
def test_wrapped_or_malformed_answers_are_repaired_in_code(
    server: FakeLLMServer, make_client: Callable[..., LLMClient], fault: Fault
) -> None:
    server.fail_next(fault)
    result = generate_for_chunk(make_client(), Task(), passage(2), chunk_id=2)
    assert len(result.accepted) == 3 and result.rejects == []
    assert chat_count(server) == 1 and not result.repaired_by_llm


def test_a_cut_answer_keeps_its_complete_examples_and_rejects_the_cut_one(
    server: FakeLLMServer, make_client: Callable[..., LLMClient]
) -> None:
    server.fail_next(Fault.CUT_JSON)
    result = generate_for_chunk(make_client(stream=False), Task(), passage(3), chunk_id=3)
    assert 1 <= len(result.examples) < 3
    assert CUT_OFF_REASON in [r.reason for r in result.rejects]
    assert chat_count(server) == 1


def test_an_unreadable_answer_gets_one_llm_repair(
    server: FakeLLMServer, make_client: Callable[..., LLMClient]
) -> None:
    good = [qa_item("How hot does unit 4 run?", "104 degrees.", "runs at 104 degrees")]

    def answer(prompt: str) -> str:
        if "could not be used" in prompt:  # the repair request
            return json.dumps({"examples": good})
        return "Sure! Question: how hot does unit 4 run? Answer: 104 degrees."

    server.set_responder(scripted(answer))
    result = generate_for_chunk(make_client(), Task(), passage(4), chunk_id=4)
    assert result.repaired_by_llm and result.requests == 2
    assert [e.item for e in result.examples] == good and result.rejects == []


def test_what_the_repair_cannot_fix_is_rejected_not_lost(
    server: FakeLLMServer, make_client: Callable[..., LLMClient]
) -> None:
    server.set_responder(scripted(lambda prompt: "I would rather not."))
    result = generate_for_chunk(make_client(), Task(), passage(5), chunk_id=5)
    assert result.examples == [] and result.requests == 2
    assert len(result.rejects) == 1
    assert result.rejects[0].reason.startswith("unreadable answer: no JSON")
    assert result.rejects[0].raw == "I would rather not."


def test_llm_repair_can_be_switched_off(
    server: FakeLLMServer, make_client: Callable[..., LLMClient]
) -> None:
    server.set_responder(scripted(lambda prompt: "no json"))
    quality = QualityOptions(llm_repair=False)
    result = generate_for_chunk(make_client(), Task(), passage(5), 5, quality=quality)
    assert result.requests == 1 and len(result.rejects) == 1


def test_ungrounded_examples_are_flagged(
    server: FakeLLMServer, make_client: Callable[..., LLMClient]
) -> None:
    items = [
        qa_item("How hot does it run?", "106 degrees.", passage(6).split(". ")[0]),
        qa_item("What cools unit 6?", "Liquid sodium.", "liquid sodium cools the whole plant"),
    ]
    server.set_responder(scripted(lambda prompt: json.dumps(items)))
    result = generate_for_chunk(make_client(), Task(), passage(6), chunk_id=6)
    assert [e.flags for e in result.examples] == [[], ["ungrounded"]]
    reason = result.examples[1].reject_reason
    assert reason is not None and reason.startswith("ungrounded")


def test_duplicates_are_flagged_within_and_across_chunks(
    server: FakeLLMServer, make_client: Callable[..., LLMClient]
) -> None:
    dedup = Deduplicator()
    client = make_client()
    first = generate_for_chunk(client, Task(), passage(7), chunk_id=7, dedup=dedup)
    assert all(e.accepted for e in first.examples)
    again = generate_for_chunk(client, Task(), passage(7), chunk_id=70, dedup=dedup)
    assert [e.flags for e in again.examples] == [["duplicate"]] * 3
    assert again.examples[0].notes["duplicate_of"] == (7, 0)

    near = qa_item("How hot does unit 8 run under load?", "108.", "runs at 108 degrees")
    variant = {**near, "question": "How hot does unit 8 run under a load?"}
    server.set_responder(scripted(lambda prompt: json.dumps([near, variant])))
    result = generate_for_chunk(client, Task(), passage(8), chunk_id=8, dedup=dedup)
    assert [e.flags for e in result.examples] == [[], ["near_duplicate"]]


def test_examples_over_the_length_limit_are_flagged(
    make_client: Callable[..., LLMClient],
) -> None:
    def count(messages: list[dict[str, str]]) -> int:
        return sum(len(m["content"].split()) for m in messages)

    quality = QualityOptions(count_tokens=count, max_seq_length=20)
    result = generate_for_chunk(make_client(), Task(), passage(9), 9, quality=quality)
    assert all(e.token_count and e.token_count > 20 for e in result.examples)
    assert all(e.flags == ["too_long"] for e in result.examples)


def test_other_task_types_end_to_end(
    server: FakeLLMServer, make_client: Callable[..., LLMClient]
) -> None:
    summary = {"instruction": "Summarise in one sentence.", "summary": "Unit 10 runs hot."}
    server.set_responder(scripted(lambda prompt: json.dumps({"examples": [summary]})))
    task = Task(TaskSettings(type=TaskType.SUMMARY, examples_per_chunk=1))
    result = generate_for_chunk(make_client(), task, passage(10), chunk_id=10)
    assert result.examples[0].messages[1]["content"].endswith(passage(10))
    assert result.examples[0].messages[2]["content"] == "Unit 10 runs hot."


def test_errors_and_cancel_reach_the_caller(
    server: FakeLLMServer, make_client: Callable[..., LLMClient]
) -> None:
    server.fail_next(Fault.USAGE_LIMIT)
    with pytest.raises(QuotaExhaustedError):
        generate_for_chunk(make_client(), Task(), passage(1), chunk_id=1)
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        generate_for_chunk(make_client(), Task(), passage(1), 1, cancel=cancel)


# -- whole runs -------------------------------------------------------------------------------


class Collector:
    """on_result that records calls, checks they never overlap, and notices late calls."""

    def __init__(self) -> None:
        self.results: list[ChunkResult] = []
        self.closed = False
        self.late_calls = 0
        self._busy = threading.Lock()

    def __call__(self, result: ChunkResult) -> None:
        assert self._busy.acquire(blocking=False), "on_result calls overlapped"
        try:
            if self.closed:
                self.late_calls += 1
            self.results.append(result)
        finally:
            self._busy.release()

    @property
    def ids(self) -> list[Any]:
        return [r.chunk_id for r in self.results]


@pytest.mark.parametrize("api", ["native", "openai"])
def test_a_run_delivers_every_chunk_once(
    server: FakeLLMServer, make_client: Callable[..., LLMClient], api: str
) -> None:
    collect = Collector()
    summary = run_generation(make_client(api), Task(), chunks(30), on_result=collect,
                             concurrency=6, skip_done={0, 1, 2})
    assert sorted(collect.ids) == list(range(3, 30))
    assert summary.chunks_done == 27 and summary.chunks_skipped == 3
    assert summary.examples == summary.accepted == 81
    assert summary.usage.requests == 27 and not summary.stopped
    summary.raise_if_stopped()  # nothing to raise


def test_a_free_worker_takes_the_next_chunk_at_once(
    server: FakeLLMServer, make_client: Callable[..., LLMClient]
) -> None:
    in_flight = Counter[str]()
    lock = threading.Lock()

    def slow_for_chunk_zero(request: dict[str, Any], api: Api) -> str:
        with lock:
            in_flight["now"] += 1
            in_flight["max"] = max(in_flight["max"], in_flight["now"])
        time.sleep(1.0 if passage(0) in last_user_text(request) else 0.02)
        with lock:
            in_flight["now"] -= 1
        return qa_responder(request, api)

    server.set_responder(slow_for_chunk_zero)
    collect = Collector()
    run_generation(make_client(), Task(), chunks(12), on_result=collect, concurrency=3)
    assert in_flight["max"] == 3
    assert collect.ids[-1] == 0  # the other 11 went past it, no batch waited for it
    assert sorted(collect.ids) == list(range(12))


def test_random_faults_lose_and_duplicate_nothing(
    server: FakeLLMServer, make_client: Callable[..., LLMClient]
) -> None:
    server.set_fault_rate(0.25)  # the transient mix: 429, 5xx, drops, truncation, bad JSON…
    collect = Collector()
    summary = run_generation(make_client(stream=True), Task(), chunks(40), on_result=collect,
                             concurrency=8)
    assert sorted(collect.ids) == list(range(40))
    assert summary.examples == 120 and summary.chunks_failed == {}
    hashes = [e.content_hash for r in collect.results for e in r.examples]
    assert len(set(hashes)) == 120
    assert sum(server.faults_injected.values()) > 0


@pytest.mark.parametrize(
    ("fault", "error"),
    [(Fault.USAGE_LIMIT, QuotaExhaustedError), (Fault.UNAUTHORIZED, AuthError),
     (Fault.NOT_FOUND, ModelNotFoundError)],
)
def test_a_run_stops_on_errors_that_would_fail_every_chunk(
    server: FakeLLMServer, make_client: Callable[..., LLMClient], fault: Fault, error: type
) -> None:
    server.set_latency(20)
    server.fail_next(fault)  # only the first request fails: the run must not go on anyway
    collect = Collector()
    summary = run_generation(make_client(), Task(), chunks(50), on_result=collect, concurrency=2)
    collect.closed = True
    assert isinstance(summary.error, error) and summary.stopped
    assert len(collect.results) < 5 and chat_count(server) < 8
    with pytest.raises(error):
        summary.raise_if_stopped()
    time.sleep(0.1)
    assert collect.late_calls == 0


def test_a_run_gives_up_after_consecutive_failures(
    server: FakeLLMServer, make_client: Callable[..., LLMClient]
) -> None:
    server.set_fault_rate(1.0, mix=[Fault.SERVER_BUSY])
    collect = Collector()
    client = make_client(retry=RetryPolicy(attempts=2, base_s=0.01))
    summary = run_generation(client, Task(), chunks(40), on_result=collect, concurrency=2,
                             max_consecutive_failures=3)
    assert isinstance(summary.error, ServerError)
    assert collect.results == [] and 3 <= len(summary.chunks_failed) <= 4
    assert all("503" in why for why in summary.chunks_failed.values())


@pytest.mark.parametrize("hang", [False, True])
def test_cancel_stops_a_run_within_two_seconds(
    server: FakeLLMServer, make_client: Callable[..., LLMClient], hang: bool
) -> None:
    server.set_latency(300)
    if hang:  # a request the server never answers in time: the run must not wait for it
        server.set_timeout_fault_s(30)
        server.set_fault_rate(0.3, mix=[Fault.TIMEOUT])
    collect = Collector()
    cancel = CancelToken()
    threading.Timer(0.5, cancel.cancel).start()
    started = time.monotonic()
    summary = run_generation(make_client(read_timeout=60), Task(), chunks(200),
                             on_result=collect, concurrency=4, cancel=cancel)
    returned_after = time.monotonic() - started
    collect.closed = True
    assert returned_after < 0.5 + 2.0
    assert summary.cancelled and summary.error is None
    assert len(collect.results) < 200
    with pytest.raises(Cancelled):
        summary.raise_if_stopped()
    time.sleep(0.5)
    assert collect.late_calls == 0


def test_resume_after_cancel_skips_what_was_done(
    server: FakeLLMServer, make_client: Callable[..., LLMClient]
) -> None:
    server.set_latency(50)
    client = make_client()
    first, cancel = Collector(), CancelToken()
    threading.Timer(0.3, cancel.cancel).start()
    run_generation(client, Task(), chunks(60), on_result=first, concurrency=4, cancel=cancel)
    done = set(first.ids)
    assert 0 < len(done) < 60
    server.set_latency(0)
    second = Collector()
    run_generation(client, Task(), chunks(60), on_result=second, concurrency=4,
                   skip_done=done.__contains__)
    assert sorted(first.ids + second.ids) == list(range(60))


def test_a_bug_in_on_result_stops_the_run_and_surfaces(
    make_client: Callable[..., LLMClient],
) -> None:
    def broken(result: ChunkResult) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        run_generation(make_client(), Task(), chunks(10), on_result=broken, concurrency=2)
