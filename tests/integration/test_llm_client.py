"""The LLM client over real HTTP against the fake Ollama server: both APIs, streaming, faults."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from finetuneflow.core.generation import client as llm
from finetuneflow.core.generation.client import (
    ConnectionStatus,
    LLMClient,
    RetryPolicy,
    parse_retry_after,
)
from finetuneflow.core.generation.errors import (
    AuthError,
    ConfigurationError,
    ForbiddenError,
    LLMError,
    ModelNotFoundError,
    QuotaExhaustedError,
    RequestRejectedError,
    ServerError,
)
from finetuneflow.core.generation.settings import LLMSettings
from finetuneflow.core.progress import Cancelled, CancelToken
from tests.helpers.fake_llm import DEFAULT_THINKING, FakeLLMServer, Fault

KEY = "sk-test-SECRET-0123456789abcdef"
MODEL = "gpt-oss:20b"
FAST = RetryPolicy(attempts=5, base_s=0.01, cap_s=0.05)
PASSAGE = (
    "The reactor core operates at three hundred degrees during normal load. Coolant flows "
    "through twelve separate loops every hour. Operators inspect the pressure valves on Monday "
    "mornings. A backup generator starts within ten seconds of a grid failure."
)
PROMPT = [{"role": "user", "content": f"Write pairs about this passage.\n\n{PASSAGE}"}]
SCHEMA = {"type": "object", "properties": {"examples": {"type": "array"}}}
API_STREAM = [("native", False), ("native", True), ("openai", False), ("openai", True)]


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(api_key=KEY) as fake:
        yield fake


@pytest.fixture
def make_client(server: FakeLLMServer) -> Iterator[Callable[..., LLMClient]]:
    clients: list[LLMClient] = []

    def make(
        api: str = "native",
        stream: bool = False,
        key: str | None = KEY,
        retry: RetryPolicy = FAST,
        base_url: str | None = None,
        **changes: Any,
    ) -> LLMClient:
        fields: dict[str, Any] = {"provider": "ollama", "base_url": base_url or server.base_url,
                                  "model": MODEL, "api": api, "stream": stream, **changes}
        client = LLMClient(LLMSettings(**fields), key, retry=retry)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def chat_requests(server: FakeLLMServer) -> list[Any]:
    return [r for r in server.requests if r.path in ("/api/chat", "/v1/chat/completions")]


# -- a scripted server for what the fake does not do (redirects, odd bodies) -------------------


Reply = tuple[int, dict[str, str], bytes | list[bytes]]


class _ScriptedHandler(BaseHTTPRequestHandler):
    """Answers with `server.reply(handler)`; a list body is sent chunked, one line per chunk."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1  # type: ignore[attr-defined]  # one handler per connection

    def do_POST(self) -> None:
        self._answer()

    def do_GET(self) -> None:
        self._answer()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        status, headers, body = self.server.reply(self)  # type: ignore[attr-defined]
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        if isinstance(body, list):
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in body:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def scripted_server(
    reply: Callable[[BaseHTTPRequestHandler], Reply], connections: list[int] | None = None
) -> Iterator[str]:
    """A tiny server for what the fake does not do; `connections` receives the count at exit."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _ScriptedHandler)
    httpd.reply = reply  # type: ignore[attr-defined]
    httpd.connections = 0  # type: ignore[attr-defined]
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        if connections is not None:
            connections.append(httpd.connections)  # type: ignore[attr-defined]


# -- both APIs, with and without streaming ---------------------------------------------------


@pytest.mark.parametrize(("api", "stream"), API_STREAM)
def test_chat_returns_the_answer_and_usage(
    server: FakeLLMServer, make_client: Callable[..., LLMClient], api: str, stream: bool
) -> None:
    client = make_client(api, stream)
    result = client.chat(PROMPT, schema=SCHEMA)
    items = json.loads(result.content)
    assert len(items) == 3 and items[0]["quote"] in PASSAGE
    assert result.prompt_tokens and result.completion_tokens
    assert result.done_reason == "stop" and result.attempts == 1
    assert client.usage.requests == 1 and client.usage.complete


@pytest.mark.parametrize(("api", "stream"), API_STREAM)
def test_request_bodies_follow_each_api(
    server: FakeLLMServer, make_client: Callable[..., LLMClient], api: str, stream: bool
) -> None:
    make_client(api, stream).chat(PROMPT, schema=SCHEMA, schema_name="qa_examples")
    request = chat_requests(server)[-1]
    body = request.payload
    assert request.authorization == f"Bearer {KEY}"
    assert body["model"] == MODEL and body["messages"] == PROMPT and body["stream"] is stream
    if api == "native":
        assert body["options"] == {"temperature": 0.2, "num_predict": 8192}
        assert body["format"] == SCHEMA
    else:
        assert body["temperature"] == 0.2 and body["max_tokens"] == 8192
        assert "max_completion_tokens" not in body
        assert body["response_format"] == {
            "type": "json_schema",
            "json_schema": {"name": "qa_examples", "schema": SCHEMA},
        }
        assert body.get("stream_options") == ({"include_usage": True} if stream else None)


def test_no_authorization_header_without_a_key(make_client: Callable[..., LLMClient]) -> None:
    with FakeLLMServer() as open_server:
        make_client(key=None, base_url=open_server.base_url).chat(PROMPT)
        assert open_server.last_request is not None
        assert open_server.last_request.authorization is None


@pytest.mark.parametrize(("api", "stream"), API_STREAM)
@pytest.mark.parametrize("fault", [Fault.THINKING, Fault.THINK_TAGS])
def test_thinking_never_reaches_the_content(
    server: FakeLLMServer,
    make_client: Callable[..., LLMClient],
    api: str,
    stream: bool,
    fault: Fault,
) -> None:
    server.fail_next(fault)
    result = make_client(api, stream).chat(PROMPT)
    assert DEFAULT_THINKING not in result.content and "<think>" not in result.content
    assert len(json.loads(result.content)) == 3


def test_missing_usage_is_unknown_not_zero(make_client: Callable[..., LLMClient]) -> None:
    body = {"model": MODEL, "message": {"role": "assistant", "content": "[]"}, "done": True}
    with scripted_server(lambda _: (200, {}, json.dumps(body).encode())) as url:
        client = make_client(base_url=url)
        result = client.chat(PROMPT)
    assert result.prompt_tokens is None and result.completion_tokens is None
    usage = client.usage
    assert usage.requests == 1 and usage.requests_without_usage == 1 and not usage.complete


def test_streamed_answers_reuse_the_connection(make_client: Callable[..., LLMClient]) -> None:
    done = {"model": MODEL, "message": {"role": "assistant", "content": ""}, "done": True,
            "prompt_eval_count": 3, "eval_count": 2}
    lines = [json.dumps({"message": {"role": "assistant", "content": "[]"}, "done": False}),
             json.dumps(done)]
    stream = [(line + "\n").encode() for line in lines]
    connections: list[int] = []
    with scripted_server(lambda _: (200, {"Content-Type": "application/x-ndjson"}, stream),
                         connections) as url:
        client = make_client(base_url=url, stream=True)
        for _ in range(5):
            assert client.chat(PROMPT).content == "[]"
    assert connections == [1]


def test_clients_are_thread_safe(server: FakeLLMServer,
                                 make_client: Callable[..., LLMClient]) -> None:
    server.set_latency((5, 40))
    client = make_client("openai", True, concurrency=4)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(3):
                assert len(json.loads(client.chat(PROMPT).content)) == 3
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert client.usage.requests == 24


# -- errors that stop ---------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["native", "openai"])
def test_a_wrong_key_is_an_auth_error_with_a_clear_message(
    server: FakeLLMServer, make_client: Callable[..., LLMClient], api: str
) -> None:
    with pytest.raises(AuthError, match="check your API key") as caught:
        make_client(api, key="sk-wrong-key-000000").chat(PROMPT)
    assert caught.value.status == 401
    assert len(chat_requests(server)) == 1  # never retried


def test_no_key_says_that_none_is_set(make_client: Callable[..., LLMClient]) -> None:
    with pytest.raises(AuthError, match="none is set"):
        make_client(key=None).chat(PROMPT)


def test_a_local_ollama_not_signed_in_says_how_to_sign_in(
    make_client: Callable[..., LLMClient],
) -> None:
    body = {"error": "unauthorized", "signin_url": "https://ollama.com/connect?name=box"}
    with (
        scripted_server(lambda _: (401, {}, json.dumps(body).encode())) as url,
        pytest.raises(AuthError, match="ollama signin") as caught,
    ):
        make_client(base_url=url, key=None, model="gpt-oss:120b-cloud").chat(PROMPT)
    assert "https://ollama.com/connect?name=box" in str(caught.value)


@pytest.mark.parametrize("api", ["native", "openai"])
def test_a_model_outside_the_plan_is_forbidden(
    server: FakeLLMServer, make_client: Callable[..., LLMClient], api: str
) -> None:
    server.fail_next(Fault.FORBIDDEN)
    with pytest.raises(ForbiddenError, match="needs a subscription") as caught:
        make_client(api).chat(PROMPT)
    assert "gpt-oss:20b" in str(caught.value) and "upgrade" in str(caught.value)


@pytest.mark.parametrize("api", ["native", "openai"])
def test_an_unknown_model_lists_the_available_ones(
    make_client: Callable[..., LLMClient], api: str
) -> None:
    with pytest.raises(ModelNotFoundError, match="check the model name") as caught:
        make_client(api, model="gpt-oss-120b").chat(PROMPT)
    assert "gemma4:31b" in str(caught.value)
    assert "gpt-oss:120b" in caught.value.available


@pytest.mark.parametrize(("api", "stream"), API_STREAM)
def test_a_usage_limit_stops_at_once_and_says_when_to_resume(
    server: FakeLLMServer, make_client: Callable[..., LLMClient], api: str, stream: bool
) -> None:
    server.fail_next(Fault.USAGE_LIMIT)
    with pytest.raises(QuotaExhaustedError, match="Resume when the session") as caught:
        make_client(api, stream).chat(PROMPT)
    assert caught.value.window == "session" and caught.value.stops_run
    assert len(chat_requests(server)) == 1


@pytest.mark.parametrize("window", ["hourly", "weekly"])
def test_other_usage_windows(make_client: Callable[..., LLMClient], window: str) -> None:
    body = json.dumps({"error": f"you've reached your {window} usage limit, please wait"})
    with (
        scripted_server(lambda _: (429, {}, body.encode())) as url,
        pytest.raises(QuotaExhaustedError) as caught,
    ):
        make_client(base_url=url).chat(PROMPT)
    assert caught.value.window == window and window.removesuffix("ly") in str(caught.value)


def test_a_rejected_request_is_not_retried(make_client: Callable[..., LLMClient]) -> None:
    calls: list[int] = []

    def reject(_: BaseHTTPRequestHandler) -> Reply:
        calls.append(1)
        return 400, {}, b'{"error":"prompt is too long"}'

    with scripted_server(reject) as url, pytest.raises(RequestRejectedError, match="too long"):
        make_client(base_url=url).chat(PROMPT)
    assert len(calls) == 1


def test_a_redirect_is_a_configuration_error_that_names_the_target(
    make_client: Callable[..., LLMClient],
) -> None:
    calls: list[str] = []

    def redirect(handler: BaseHTTPRequestHandler) -> Reply:
        calls.append(handler.command)
        return 301, {"Location": "https://ollama.com/api/chat"}, b""

    with scripted_server(redirect) as url, pytest.raises(ConfigurationError) as caught:
        make_client(base_url=url).chat(PROMPT)
    assert "to https://ollama.com/api/chat (301)" in str(caught.value)
    assert "Set the base URL" not in str(caught.value)  # named, never recommended
    assert calls == ["POST"]  # not followed


def test_api_ollama_com_is_refused_before_any_request() -> None:
    with pytest.raises(ConfigurationError, match=r"use https://ollama\.com"):
        LLMClient(LLMSettings(base_url="https://api.ollama.com"), KEY)


def test_an_openai_base_url_without_v1_is_a_configuration_error(server: FakeLLMServer) -> None:
    settings = LLMSettings(provider="openai", base_url=server.base_url, model=MODEL)
    with LLMClient(settings, KEY, retry=FAST) as client, pytest.raises(
        ConfigurationError, match="usually end in /v1"
    ):
        client.chat(PROMPT)


# -- errors that are retried ----------------------------------------------------------------------

TRANSIENT = [Fault.RATE_LIMIT, Fault.SERVER_ERROR, Fault.SERVER_BUSY, Fault.DROP,
             Fault.TRUNCATED, Fault.DISCONNECT, Fault.STREAM_ERROR]


@pytest.mark.parametrize(("api", "stream"), API_STREAM)
@pytest.mark.parametrize("fault", TRANSIENT)
def test_transient_faults_are_retried_then_succeed(
    server: FakeLLMServer,
    make_client: Callable[..., LLMClient],
    api: str,
    stream: bool,
    fault: Fault,
) -> None:
    server.fail_next(fault)
    result = make_client(api, stream).chat(PROMPT)
    assert len(json.loads(result.content)) == 3
    assert result.attempts == 2
    assert len(chat_requests(server)) == 2


@pytest.mark.parametrize("stream", [False, True])
def test_a_read_timeout_is_retried(
    server: FakeLLMServer, make_client: Callable[..., LLMClient], stream: bool
) -> None:
    server.set_timeout_fault_s(5)
    server.fail_next(Fault.TIMEOUT)
    result = make_client(stream=stream, read_timeout=0.3).chat(PROMPT)
    assert result.attempts == 2


def test_retries_give_up_with_the_last_error(
    server: FakeLLMServer, make_client: Callable[..., LLMClient]
) -> None:
    server.fail_next(Fault.SERVER_BUSY, count=10)
    with pytest.raises(ServerError, match="503") as caught:
        make_client(retry=RetryPolicy(attempts=3, base_s=0.01)).chat(PROMPT)
    assert caught.value.retryable
    assert len(chat_requests(server)) == 3


def test_retry_after_is_honoured(
    server: FakeLLMServer, make_client: Callable[..., LLMClient], caplog: pytest.LogCaptureFixture
) -> None:
    server.fail_next(Fault.RATE_LIMIT_RETRY_AFTER)
    caplog.set_level(logging.WARNING, logger="finetuneflow")
    started = time.monotonic()
    assert make_client().chat(PROMPT).attempts == 2
    assert time.monotonic() - started >= 0.95  # the header said 1 s; the policy alone ≤ 0.01 s
    assert "next in 1.0 s" in caplog.text


def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    future = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (parse_retry_after(future) or 0) <= 30
    past = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    assert parse_retry_after(past) == 0.0


def test_full_jitter_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(base_s=1, factor=2, cap_s=60, random=lambda: 1.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 8)] == [1, 2, 4, 8, 60]
    assert RetryPolicy(random=lambda: 0.0).delay(3) == 0.0  # full jitter reaches zero
    assert policy.delay(1, retry_after=500) == 300  # a huge Retry-After is bounded


# -- cancel ---------------------------------------------------------------------------------------


def test_cancel_wakes_a_backoff_sleep_at_once(
    server: FakeLLMServer, make_client: Callable[..., LLMClient]
) -> None:
    client = make_client(retry=RetryPolicy(base_s=30, random=lambda: 1.0))
    server.fail_next(Fault.SERVER_BUSY)
    cancel = CancelToken()
    outcome: list[BaseException | None] = []

    def work() -> None:
        try:
            client.chat(PROMPT, cancel=cancel)
            outcome.append(None)
        except BaseException as exc:  # checked below
            outcome.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    deadline = time.monotonic() + 5
    while not chat_requests(server) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # the 503 has arrived; the client now sleeps 30 s
    cancel.cancel()
    thread.join(timeout=2)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], Cancelled)


def test_a_cancelled_token_stops_before_sending(
    server: FakeLLMServer, make_client: Callable[..., LLMClient]
) -> None:
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        make_client().chat(PROMPT, cancel=cancel)
    assert chat_requests(server) == []


# -- listing and the connection check ----------------------------------------------------------


@pytest.mark.parametrize("api", ["native", "openai"])
def test_list_models_needs_no_key(server: FakeLLMServer, api: str) -> None:
    settings = LLMSettings(provider="ollama", base_url=server.base_url, model=MODEL, api=api)
    assert llm.list_models(settings, None) == ["gpt-oss:20b", "gpt-oss:120b", "gemma4:31b"]


@pytest.mark.parametrize(
    ("fault", "key", "model", "status"),
    [
        (None, KEY, MODEL, ConnectionStatus.OK),
        (None, "sk-wrong-000000", MODEL, ConnectionStatus.BAD_KEY),
        (None, None, MODEL, ConnectionStatus.BAD_KEY),
        (Fault.FORBIDDEN, KEY, MODEL, ConnectionStatus.NO_ACCESS),
        (None, KEY, "llama9:1b", ConnectionStatus.UNKNOWN_MODEL),
        (Fault.USAGE_LIMIT, KEY, MODEL, ConnectionStatus.QUOTA),
    ],
)
@pytest.mark.parametrize("api", ["native", "openai"])
def test_connection_check_tells_the_cases_apart(
    server: FakeLLMServer,
    api: str,
    fault: Fault | None,
    key: str | None,
    model: str,
    status: ConnectionStatus,
) -> None:
    if fault is not None:
        server.fail_next(fault)
    settings = LLMSettings(provider="ollama", base_url=server.base_url, model=model, api=api)
    check = llm.test_connection(settings, key)
    assert check.status is status, check.message
    assert check.ok is (status is ConnectionStatus.OK)
    assert check.models == ("gpt-oss:20b", "gpt-oss:120b", "gemma4:31b")
    probe = chat_requests(server)[-1].payload
    if api == "native":
        # The same kind of request as the generation's: streamed, with a schema.
        assert probe["options"]["num_predict"] == 1 and probe["stream"] is True
        assert "format" in probe
    else:
        assert probe["max_tokens"] == 1


def test_connection_check_when_nothing_listens() -> None:
    with FakeLLMServer() as gone:
        url = gone.base_url
    check = llm.test_connection(LLMSettings(provider="ollama", base_url=url, model=MODEL))
    assert check.status is ConnectionStatus.UNREACHABLE
    assert "Could not connect" in check.message


def test_connection_check_reports_bad_settings_without_a_request() -> None:
    check = llm.test_connection(LLMSettings(base_url="https://api.ollama.com"))
    assert check.status is ConnectionStatus.MISCONFIGURED


# -- the key stays secret --------------------------------------------------------------------------


def _echo_the_key(status: int) -> Callable[[BaseHTTPRequestHandler], Reply]:
    def reply(handler: BaseHTTPRequestHandler) -> Reply:
        header = handler.headers.get("Authorization", "")
        return status, {}, json.dumps({"error": f"bad header {header!r}"}).encode()

    return reply


def test_the_key_never_reaches_errors_or_logs(
    server: FakeLLMServer, make_client: Callable[..., LLMClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # httpx and httpcore included
    errors: list[LLMError] = []
    client = make_client(retry=RetryPolicy(attempts=2, base_s=0.01))
    for fault in (Fault.FORBIDDEN, Fault.USAGE_LIMIT, Fault.SERVER_BUSY, Fault.DROP):
        server.fail_next(fault, count=2)
        with contextlib.suppress(LLMError):
            client.chat(PROMPT)
    for status in (400, 401, 500):
        with scripted_server(_echo_the_key(status)) as url:
            try:
                make_client(base_url=url, retry=RetryPolicy(attempts=2, base_s=0.01)).chat(PROMPT)
            except LLMError as exc:
                errors.append(exc)
    with pytest.raises(ModelNotFoundError) as caught:
        make_client(model="nope:1b").chat(PROMPT)
    errors.append(caught.value)
    assert len(errors) == 4 and caplog.text
    for error in errors:
        for text in (str(error), repr(error), error.detail, error.message):
            assert KEY not in text
    assert "***" in str(errors[0])  # the echoed key was scrubbed, not the message dropped
    assert KEY not in caplog.text
    assert KEY not in repr(client) and KEY not in json.dumps(client.settings.to_dict())
