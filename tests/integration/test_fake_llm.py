"""The fake LLM server over real HTTP: payload shapes, faults, latency, counters, lifecycle."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.fake_llm import (
    Api,
    FakeLLMServer,
    Fault,
    echo_responder,
    last_user_text,
    qa_responder,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL = "gpt-oss:20b"
PARAGRAPH = (
    "The reactor core operates at three hundred degrees during normal load. "
    "Coolant flows through twelve separate loops every hour. "
    "Operators inspect the pressure valves on Monday mornings. "
    "A backup generator starts within ten seconds of a grid failure."
)
PROMPT = f"Write question-answer pairs about this passage.\n\n{PARAGRAPH}\n\nReturn only JSON."
CHAT_PATH: dict[Api, str] = {"native": "/api/chat", "openai": "/v1/chat/completions"}
NATIVE_FINAL_KEYS = [
    "model",
    "created_at",
    "message",
    "done",
    "done_reason",
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
]
OPENAI_CHUNK_KEYS = ["id", "object", "created", "model", "system_fingerprint", "choices"]


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


@pytest.fixture
def client(server: FakeLLMServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=5) as http:
        yield http


def chat_body(text: str = PROMPT, model: str = MODEL, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def parse_ndjson(text: str) -> list[dict[str, Any]]:
    assert text.endswith("\n"), "every NDJSON line ends with a newline"
    return [json.loads(line) for line in text.splitlines()]


def parse_sse(text: str) -> list[str]:
    """The data payloads of an SSE body, in order."""
    events = [event for event in text.split("\n\n") if event]
    assert all(event.startswith("data: ") for event in events)
    return [event.removeprefix("data: ") for event in events]


def openai_error(message: str, error_type: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": None, "code": None}}


def assert_grounded_qa(content: str) -> None:
    items = json.loads(content)
    assert len(items) == 3
    assert all(list(item) == ["question", "answer", "quote"] for item in items)
    assert all(item["quote"] in PARAGRAPH for item in items)
    assert len({item["question"] for item in items}) == 3


# --- both APIs, with and without streaming ----------------------------------------------------


def test_native_non_streaming_has_ollama_shape(client: httpx.Client) -> None:
    response = client.post("/api/chat", json=chat_body(stream=False))

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    body = response.json()
    assert list(body) == NATIVE_FINAL_KEYS
    assert body["model"] == MODEL
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", body["created_at"])
    assert list(body["message"]) == ["role", "content"]
    assert (body["done"], body["done_reason"]) == (True, "stop")
    assert body["prompt_eval_count"] > 0 and body["eval_count"] > 0
    assert_grounded_qa(body["message"]["content"])


def test_native_streams_ndjson_when_stream_is_absent(client: httpx.Client) -> None:
    streamed = client.post("/api/chat", json=chat_body())
    whole = client.post("/api/chat", json=chat_body(stream=False)).json()

    assert streamed.headers["content-type"] == "application/x-ndjson"
    lines = parse_ndjson(streamed.text)
    assert len(lines) > 2
    assert all(list(line) == ["model", "created_at", "message", "done"] for line in lines[:-1])
    assert not any(line["done"] for line in lines[:-1])
    final = lines[-1]
    assert list(final) == NATIVE_FINAL_KEYS
    assert final["message"] == {"role": "assistant", "content": ""}
    assert final["done_reason"] == "stop"
    content = "".join(line["message"]["content"] for line in lines)
    assert content == whole["message"]["content"]


def test_openai_non_streaming_has_usage(client: httpx.Client) -> None:
    response = client.post("/v1/chat/completions", json=chat_body())

    assert response.headers["content-type"] == "application/json"
    assert response.text.endswith("}\n"), "json.Encoder appends a newline"
    body = response.json()
    assert list(body) == [*OPENAI_CHUNK_KEYS[:5], "choices", "usage"]
    assert body["object"] == "chat.completion"
    assert re.fullmatch(r"chatcmpl-\d{1,3}", body["id"])
    assert body["system_fingerprint"] == "fp_ollama"
    [choice] = body["choices"]
    assert choice["finish_reason"] == "stop"
    assert list(choice["message"]) == ["role", "content"]
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert_grounded_qa(choice["message"]["content"])


def test_openai_streams_sse_with_usage_chunk_when_asked(client: httpx.Client) -> None:
    body = chat_body(stream=True, stream_options={"include_usage": True})
    response = client.post("/v1/chat/completions", json=body)
    whole = client.post("/v1/chat/completions", json=chat_body()).json()

    assert response.headers["content-type"] == "text/event-stream"
    *events, done = parse_sse(response.text)
    assert done == "[DONE]"
    chunks = [json.loads(event) for event in events]
    assert all(list(chunk) == OPENAI_CHUNK_KEYS for chunk in chunks[:-1])
    assert len({chunk["id"] for chunk in chunks}) == 1
    first, *content_chunks, finish, usage = chunks
    assert first["choices"][0]["delta"]["role"] == "assistant"
    assert all("role" not in c["choices"][0]["delta"] for c in content_chunks)
    assert finish["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert usage["choices"] == [] and usage["usage"] == whole["usage"]
    text = "".join(c["choices"][0]["delta"]["content"] for c in [first, *content_chunks])
    assert text == whole["choices"][0]["message"]["content"]


def test_openai_stream_has_no_usage_chunk_unless_asked(client: httpx.Client) -> None:
    response = client.post("/v1/chat/completions", json=chat_body(stream=True))

    *events, done = parse_sse(response.text)
    assert done == "[DONE]"
    assert all("usage" not in json.loads(event) for event in events)
    assert json.loads(events[-1])["choices"][0]["finish_reason"] == "stop"


def test_scripted_thinking_goes_to_thinking_and_reasoning(
    server: FakeLLMServer, client: httpx.Client
) -> None:
    server.set_thinking("Let me look at the passage.")

    native = client.post("/api/chat", json=chat_body(stream=False)).json()
    assert list(native["message"]) == ["role", "content", "thinking"]
    assert native["message"]["thinking"] == "Let me look at the passage."
    native_lines = parse_ndjson(client.post("/api/chat", json=chat_body()).text)
    assert native_lines[0]["message"]["content"] == ""
    assert native_lines[0]["message"]["thinking"].startswith("Let")

    openai = client.post("/v1/chat/completions", json=chat_body()).json()
    assert openai["choices"][0]["message"]["reasoning"] == "Let me look at the passage."
    events = parse_sse(client.post("/v1/chat/completions", json=chat_body(stream=True)).text)
    first_delta = json.loads(events[0])["choices"][0]["delta"]
    assert list(first_delta) == ["role", "content", "reasoning"]
    assert first_delta["content"] == ""


def test_token_limit_cuts_the_answer_with_reason_length(client: httpx.Client) -> None:
    probe = chat_body("ping", stream=False, options={"num_predict": 1})
    native = client.post("/api/chat", json=probe).json()
    assert (native["done_reason"], native["eval_count"]) == ("length", 1)

    openai = client.post("/v1/chat/completions", json=chat_body("ping", max_tokens=1)).json()
    assert openai["choices"][0]["finish_reason"] == "length"
    assert openai["usage"]["completion_tokens"] == 1


# --- listing, models, keys ---------------------------------------------------------------------


def test_listing_endpoints_have_ollama_shapes(server: FakeLLMServer, client: httpx.Client) -> None:
    server.set_models(["gpt-oss:20b", "alice/tiny"])

    tags = client.get("/api/tags")
    assert tags.headers["content-type"] == "application/json; charset=utf-8"
    first = tags.json()["models"][0]
    assert list(first) == ["name", "model", "modified_at", "size", "digest", "details"]
    assert first["name"] == first["model"] == "gpt-oss:20b"
    assert re.fullmatch(r"[0-9a-f]{64}", first["digest"])
    assert first["details"]["parameter_size"] == "20B"

    models = client.get("/v1/models").json()
    assert models["object"] == "list"
    assert models["data"][0] == {
        "id": "gpt-oss:20b",
        "object": "model",
        "created": models["data"][0]["created"],
        "owned_by": "library",
    }
    assert models["data"][1]["owned_by"] == "alice"


def test_unknown_model_gives_404_in_each_api_shape(client: httpx.Client) -> None:
    native = client.post("/api/chat", json=chat_body(model="nope:1b", stream=False))
    assert native.status_code == 404
    assert native.json() == {"error": "model 'nope:1b' not found"}

    openai = client.post("/v1/chat/completions", json=chat_body(model="nope:1b"))
    assert openai.status_code == 404
    assert openai.json() == openai_error("model 'nope:1b' not found", "not_found_error")


def test_model_without_tag_resolves_to_latest(server: FakeLLMServer, client: httpx.Client) -> None:
    server.set_models(["tiny:latest"])

    assert client.post("/api/chat", json=chat_body(model="tiny", stream=False)).status_code == 200


def test_api_key_is_required_on_chat_but_not_on_listing(
    server: FakeLLMServer, client: httpx.Client
) -> None:
    server.set_api_key("k")

    assert client.get("/api/tags").status_code == 200
    assert client.get("/v1/models").status_code == 200
    native = client.post("/api/chat", json=chat_body(stream=False))
    assert (native.status_code, native.json()) == (401, {"error": "unauthorized"})
    openai = client.post("/v1/chat/completions", json=chat_body(), headers={"Authorization": "x"})
    assert (openai.status_code, openai.json()) == (401, {"error": "Unauthorized"})

    good = client.post(
        "/api/chat", json=chat_body(stream=False), headers={"Authorization": "Bearer k"}
    )
    assert good.status_code == 200
    assert server.last_request is not None
    assert server.last_request.authorization == "Bearer k"


def test_bad_requests_get_400(client: httpx.Client) -> None:
    native = client.post("/api/chat", json={"messages": []})
    assert (native.status_code, native.json()) == (400, {"error": "model is required"})
    openai = client.post("/v1/chat/completions", json={"model": MODEL, "messages": []})
    assert openai.status_code == 400
    assert openai.json()["error"]["type"] == "invalid_request_error"


def test_other_paths_answer_like_ollama(client: httpx.Client) -> None:
    assert client.get("/").text == "Ollama is running"
    missing = client.get("/api/nothing")
    assert (missing.status_code, missing.text) == (404, "404 page not found")


# --- faults ------------------------------------------------------------------------------------

FORBIDDEN = "this model requires a subscription, upgrade for access: https://ollama.com/upgrade"
USAGE = (
    "you (alice) have reached your session usage limit, "
    "upgrade for higher limits: https://ollama.com/upgrade"
)
RUNNER = "llama runner process has terminated: exit status 2"
BUSY = "server busy, please try again.  maximum pending requests exceeded"
HTTP_FAULTS = [
    (Fault.UNAUTHORIZED, 401, "unauthorized", {"error": "Unauthorized"}),
    (Fault.FORBIDDEN, 403, FORBIDDEN, openai_error(FORBIDDEN, "api_error")),
    (
        Fault.NOT_FOUND,
        404,
        f"model '{MODEL}' not found",
        openai_error(f"model '{MODEL}' not found", "not_found_error"),
    ),
    (Fault.USAGE_LIMIT, 429, USAGE, openai_error(USAGE, "api_error")),
    (Fault.RATE_LIMIT, 429, "too many requests", openai_error("too many requests", "api_error")),
    (
        Fault.RATE_LIMIT_RETRY_AFTER,
        429,
        "too many requests",
        openai_error("too many requests", "api_error"),
    ),
    (Fault.SERVER_ERROR, 500, RUNNER, openai_error(RUNNER, "api_error")),
    (Fault.SERVER_BUSY, 503, BUSY, openai_error(BUSY, "api_error")),
]


@pytest.mark.parametrize(("fault", "status", "native_message", "openai_body"), HTTP_FAULTS)
def test_http_error_faults_give_status_and_body(
    server: FakeLLMServer,
    client: httpx.Client,
    fault: Fault,
    status: int,
    native_message: str,
    openai_body: dict[str, Any],
) -> None:
    server.fail_next(fault, count=2)

    native = client.post("/api/chat", json=chat_body(stream=False))
    openai = client.post("/v1/chat/completions", json=chat_body())

    assert (native.status_code, native.json()) == (status, {"error": native_message})
    assert native.headers["content-type"] == "application/json; charset=utf-8"
    assert (openai.status_code, openai.json()) == (status, openai_body)
    assert openai.headers["content-type"] == "application/json"
    retry_after = "1" if fault is Fault.RATE_LIMIT_RETRY_AFTER else None
    assert native.headers.get("retry-after") == openai.headers.get("retry-after") == retry_after
    assert server.faults_injected == {fault: 2}


def test_queued_faults_are_consumed_in_order(server: FakeLLMServer, client: httpx.Client) -> None:
    server.fail_next("server_busy", count=2)
    server.fail_next(Fault.RATE_LIMIT)

    statuses = [client.post("/api/chat", json=chat_body(stream=False)).status_code for _ in "1234"]

    assert statuses == [503, 503, 429, 200]
    assert server.pending_faults == []
    assert [r.fault for r in server.requests] == [
        Fault.SERVER_BUSY,
        Fault.SERVER_BUSY,
        Fault.RATE_LIMIT,
        None,
    ]


def test_listing_does_not_consume_faults(server: FakeLLMServer, client: httpx.Client) -> None:
    server.fail_next(Fault.SERVER_ERROR)

    assert client.get("/api/tags").status_code == 200
    assert client.post("/api/chat", json=chat_body(stream=False)).status_code == 500


@pytest.mark.parametrize("api", ["native", "openai"])
def test_drop_closes_without_response(
    server: FakeLLMServer, client: httpx.Client, api: Api
) -> None:
    server.fail_next(Fault.DROP)

    with pytest.raises(httpx.RemoteProtocolError):
        client.post(CHAT_PATH[api], json=chat_body(stream=False))
    assert client.post(CHAT_PATH[api], json=chat_body(stream=False)).status_code == 200


def test_truncated_native_stream_lacks_done(server: FakeLLMServer, client: httpx.Client) -> None:
    server.fail_next(Fault.TRUNCATED)

    response = client.post("/api/chat", json=chat_body())

    assert response.status_code == 200
    lines = parse_ndjson(response.text)
    assert lines and not any(line["done"] for line in lines)


def test_truncated_openai_stream_lacks_finish_and_done(
    server: FakeLLMServer, client: httpx.Client
) -> None:
    server.fail_next(Fault.TRUNCATED)

    events = parse_sse(client.post("/v1/chat/completions", json=chat_body(stream=True)).text)

    assert events and "[DONE]" not in events
    assert all(json.loads(e)["choices"][0]["finish_reason"] is None for e in events)


def test_truncated_non_streaming_body_is_cut_json(
    server: FakeLLMServer, client: httpx.Client
) -> None:
    server.fail_next(Fault.TRUNCATED)

    response = client.post("/v1/chat/completions", json=chat_body())

    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)


@pytest.mark.parametrize("api", ["native", "openai"])
def test_disconnect_mid_body_raises_in_httpx(
    server: FakeLLMServer, client: httpx.Client, api: Api
) -> None:
    server.fail_next(Fault.DISCONNECT, count=2)

    with pytest.raises(httpx.RemoteProtocolError):
        client.post(CHAT_PATH[api], json=chat_body(stream=False))
    received: list[str] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        client.stream("POST", CHAT_PATH[api], json=chat_body(stream=True)) as response,
    ):
        received.extend(response.iter_lines())
    assert any(line for line in received), "some chunks arrive before the cut"


def test_native_stream_error_is_a_200_with_an_error_line(
    server: FakeLLMServer, client: httpx.Client
) -> None:
    server.fail_next(Fault.STREAM_ERROR, count=2)

    response = client.post("/api/chat", json=chat_body())
    not_streaming = client.post("/api/chat", json=chat_body(stream=False))

    assert response.status_code == 200
    *lines, last = parse_ndjson(response.text)
    assert lines and not any(line["done"] for line in lines)
    assert last == {"error": "an error was encountered while running the model: unexpected EOF"}
    assert not_streaming.status_code == 500
    assert "error" in not_streaming.json()


def test_openai_stream_error_event_ends_the_stream(
    server: FakeLLMServer, client: httpx.Client
) -> None:
    server.fail_next(Fault.STREAM_ERROR)

    *_, last = parse_sse(client.post("/v1/chat/completions", json=chat_body(stream=True)).text)

    assert json.loads(last)["error"]["type"] == "api_error"


def answer_content(client: httpx.Client, api: Api) -> tuple[str, str]:
    """Content and done/finish reason of a non-streaming answer."""
    body = client.post(CHAT_PATH[api], json=chat_body(stream=False)).json()
    if api == "native":
        return body["message"]["content"], body["done_reason"]
    return body["choices"][0]["message"]["content"], body["choices"][0]["finish_reason"]


@pytest.mark.parametrize("api", ["native", "openai"])
def test_content_faults_distort_the_answer(
    server: FakeLLMServer, client: httpx.Client, api: Api
) -> None:
    clean, _ = answer_content(client, api)
    for fault in (Fault.MALFORMED_JSON, Fault.CUT_JSON, Fault.THINK_TAGS, Fault.CODE_FENCE):
        server.fail_next(fault)

    malformed, malformed_reason = answer_content(client, api)
    cut, cut_reason = answer_content(client, api)
    think, _ = answer_content(client, api)
    fenced, _ = answer_content(client, api)

    assert malformed_reason == "stop" and re.search(r"\},\s*\]$", malformed)
    with pytest.raises(json.JSONDecodeError):
        json.loads(malformed)
    assert cut_reason == "length" and clean.startswith(cut) and len(cut) < len(clean)
    assert think.startswith("<think>") and think.endswith(clean) and "</think>" in think
    assert fenced == f"```json\n{clean}\n```"


def test_think_tags_are_escaped_like_go(server: FakeLLMServer, client: httpx.Client) -> None:
    server.fail_next(Fault.THINK_TAGS)

    raw = client.post("/api/chat", json=chat_body(stream=False)).text

    assert "\\u003cthink\\u003e" in raw and "<think>" not in raw


def test_thinking_fault_adds_a_trace_once(server: FakeLLMServer, client: httpx.Client) -> None:
    server.fail_next(Fault.THINKING)

    first = client.post("/v1/chat/completions", json=chat_body()).json()
    second = client.post("/v1/chat/completions", json=chat_body()).json()

    assert first["choices"][0]["message"]["reasoning"]
    assert "reasoning" not in second["choices"][0]["message"]


def test_timeout_fault_triggers_read_timeout(server: FakeLLMServer, client: httpx.Client) -> None:
    server.fail_next(Fault.TIMEOUT)

    with pytest.raises(httpx.ReadTimeout):
        client.post("/api/chat", json=chat_body(stream=False), timeout=0.3)
    assert client.post("/api/chat", json=chat_body(stream=False)).status_code == 200


def test_random_faults_follow_rate_mix_and_seed() -> None:
    def statuses(seed: int) -> tuple[list[int], dict[Fault, int]]:
        mix = {"server_error": 1, "rate_limit": 1}
        with (
            FakeLLMServer(fault_rate=0.5, fault_mix=mix, seed=seed) as fake,
            httpx.Client(base_url=fake.base_url) as http,
        ):
            codes = [
                http.post("/api/chat", json=chat_body("x y z w.", stream=False)).status_code
                for _ in range(40)
            ]
            return codes, fake.faults_injected

    codes, faults = statuses(seed=7)

    assert set(codes) == {200, 429, 500}
    assert codes.count(500) == faults[Fault.SERVER_ERROR]
    assert codes.count(429) == faults[Fault.RATE_LIMIT]
    assert statuses(seed=7)[0] == codes


# --- latency, concurrency, lifecycle ---------------------------------------------------------


def test_fixed_and_random_latency_are_applied(server: FakeLLMServer, client: httpx.Client) -> None:
    server.set_latency(150)
    started = time.monotonic()
    client.post("/api/chat", json=chat_body(stream=False))
    assert time.monotonic() - started >= 0.15

    server.set_latency((100, 130))
    started = time.monotonic()
    client.post("/v1/chat/completions", json=chat_body())
    assert time.monotonic() - started >= 0.1

    server.set_latency(300)
    started = time.monotonic()
    client.get("/api/tags")
    assert time.monotonic() - started < 0.3, "listing is not delayed"


def test_counters_are_exact_under_32_concurrent_requests(server: FakeLLMServer) -> None:
    server.set_responder(echo_responder)
    server.set_latency(100)
    server.fail_next(Fault.SERVER_ERROR, count=8)

    def ask(i: int) -> tuple[int, str]:
        api: Api = "native" if i % 2 else "openai"
        response = http.post(CHAT_PATH[api], json=chat_body(f"request {i}", stream=False))
        if response.status_code != 200:
            return response.status_code, ""
        body = response.json()
        message = body["message"] if api == "native" else body["choices"][0]["message"]
        return 200, message["content"]

    limits = httpx.Limits(max_connections=32)
    with (
        httpx.Client(base_url=server.base_url, limits=limits, timeout=10) as http,
        ThreadPoolExecutor(max_workers=32) as pool,
    ):
        results = list(pool.map(ask, range(32)))

    assert server.requests_served == 32
    assert server.requests_by_endpoint == {"/api/chat": 16, "/v1/chat/completions": 16}
    assert server.faults_injected == {Fault.SERVER_ERROR: 8}
    assert [status for status, _ in results].count(500) == 8
    for i, (status, content) in enumerate(results):
        assert status == 500 or content == f"request {i}", "each answer matches its request"
    texts = sorted(last_user_text(r.payload) for r in server.requests)
    assert texts == sorted(f"request {i}" for i in range(32))


def test_stop_is_prompt_with_a_sleeping_handler() -> None:
    fake = FakeLLMServer(timeout_fault_s=30).start()
    fake.fail_next(Fault.TIMEOUT)
    errors: list[BaseException] = []

    def wait_for_answer() -> None:
        try:
            httpx.post(f"{fake.base_url}/api/chat", json=chat_body(stream=False), timeout=10)
        except httpx.HTTPError as exc:
            errors.append(exc)

    waiter = threading.Thread(target=wait_for_answer)
    waiter.start()
    while fake.requests_served == 0:
        time.sleep(0.01)
    started = time.monotonic()
    fake.stop()
    stop_seconds = time.monotonic() - started
    waiter.join(timeout=5)

    assert stop_seconds < 2
    assert not waiter.is_alive()
    assert len(errors) == 1


def test_restart_keeps_the_port(server: FakeLLMServer) -> None:
    url = server.base_url
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/api/tags")

    server.start()

    assert server.base_url == url
    assert httpx.get(f"{url}/api/tags").status_code == 200


def test_request_bodies_are_recorded(server: FakeLLMServer, client: httpx.Client) -> None:
    schema = {"type": "array"}
    client.post("/api/chat", json=chat_body(stream=False, format=schema, options={"seed": 1}))
    client.post(
        "/v1/chat/completions",
        json=chat_body(temperature=0.2, response_format={"type": "json_object"}),
    )

    native, openai = server.requests
    assert (native.method, native.path, native.api) == ("POST", "/api/chat", "native")
    assert native.payload["format"] == schema
    assert openai.payload["temperature"] == 0.2
    assert openai.payload["response_format"] == {"type": "json_object"}
    assert openai.authorization is None
    server.reset_counters()
    assert (server.requests_served, server.requests) == (0, [])


def test_chunked_request_body_is_read(client: httpx.Client) -> None:
    payload = json.dumps(chat_body(stream=False)).encode()

    response = client.post("/api/chat", content=iter([payload[:10], payload[10:]]))

    assert response.status_code == 200


# --- responders -------------------------------------------------------------------------------


def test_qa_responder_is_grounded_distinct_and_deterministic() -> None:
    request = chat_body()

    answer = qa_responder(request, "native")

    assert_grounded_qa(answer)
    assert answer == qa_responder(request, "openai")
    other = qa_responder(
        chat_body("One short line.\n\nA different paragraph, longer here."), "native"
    )
    assert json.loads(other)[0]["quote"] == "A different paragraph, longer here."


def test_custom_responder_sees_request_and_api(server: FakeLLMServer, client: httpx.Client) -> None:
    seen: list[tuple[str, Api]] = []

    def responder(request: dict[str, Any], api: Api) -> str:
        seen.append((request["model"], api))
        return "custom"

    server.set_responder(responder)
    client.post("/api/chat", json=chat_body(stream=False))
    client.post("/v1/chat/completions", json=chat_body())

    assert seen == [(MODEL, "native"), (MODEL, "openai")]


def test_failing_responder_gives_500(server: FakeLLMServer, client: httpx.Client) -> None:
    def responder(request: dict[str, Any], api: Api) -> str:
        raise RuntimeError("boom")

    server.set_responder(responder)
    response = client.post("/v1/chat/completions", json=chat_body())

    assert response.status_code == 500
    assert "boom" in response.json()["error"]["message"]


def test_last_user_text_reads_openai_content_parts() -> None:
    request = {
        "messages": [
            {"role": "user", "content": "old"},
            {"role": "user", "content": [{"type": "text", "text": "new"}]},
            {"role": "assistant", "content": "reply"},
        ]
    }

    assert last_user_text(request) == "new"
    assert echo_responder(request, "openai") == "new"


# --- standalone ---------------------------------------------------------------------------------


def test_standalone_entry_serves_until_terminated() -> None:
    command = [
        sys.executable,
        "-m",
        "tests.helpers.fake_llm",
        "--port",
        "0",
        "--latency-ms",
        "5-10",
        "--api-key",
        "k",
        "--models",
        "tiny:1b,other",
    ]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        names = [m["name"] for m in httpx.get(f"{url}/api/tags").json()["models"]]
        assert names == ["tiny:1b", "other"]
        chat = httpx.post(
            f"{url}/api/chat",
            json=chat_body(model="tiny:1b", stream=False),
            headers={"Authorization": "Bearer k"},
        )
        assert chat.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    if sys.platform != "win32":
        assert process.returncode == 0
        assert "served 2 requests" in stderr
