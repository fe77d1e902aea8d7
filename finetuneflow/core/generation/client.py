"""A thread-safe HTTP client for Ollama Cloud, local Ollama and OpenAI-compatible servers.

One `httpx.Client` (a connection pool sized to the concurrency) serves every worker thread.
Failures become typed errors (errors.py); the retryable ones are retried with jittered
exponential backoff that wakes at once when the run is cancelled. Redirects are never followed:
a redirected POST turns into a GET without its body, so a 3xx means the base URL is wrong.
The API key only ever travels in the Authorization header; every text that goes into an error
or a log line is scrubbed of it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import httpx

from finetuneflow.core.generation import wire
from finetuneflow.core.generation.errors import (
    FREE_MODEL_HINT,
    KEYS_URL,
    UPGRADE_URL,
    AuthError,
    BadResponseError,
    ConfigurationError,
    ContextTooSmallError,
    ForbiddenError,
    InvalidRequestError,
    LLMError,
    ModelNotFoundError,
    NetworkError,
    QuotaExhaustedError,
    RateLimitedError,
    RequestRejectedError,
    ServerError,
    UnreachableError,
)
from finetuneflow.core.generation.reading import BoundedReader, error_body
from finetuneflow.core.generation.settings import CONNECT_TIMEOUT_S, LLMSettings, ResponseLimits
from finetuneflow.core.progress import Cancelled
from finetuneflow.core.terminal import printable

log = logging.getLogger(__name__)

T = TypeVar("T")
Message = dict[str, str]
USER_AGENT = "FineTuneFlow/0.1"
QUOTA_WINDOWS = ("hourly", "session", "daily", "weekly", "monthly")
RESUME_HINTS = {
    "hourly": "Resume within the hour, when the hourly limit resets",
    "session": "Resume when the session window resets (within about 5 hours)",
    "daily": "Resume tomorrow, when the daily limit resets",
    "weekly": "Resume when the weekly limit resets (up to 7 days)",
    "monthly": "Resume next month, when the monthly limit resets",
}
MAX_LISTED_MODELS = 20
# Test connection sends a schema, as generation does: a server that rejects structured
# output must fail the test, not every generation request after it.
PROBE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
}


class CancelHook(Protocol):
    """What the client needs of finetuneflow.core.progress.CancelToken."""

    @property
    def cancelled(self) -> bool: ...

    def wait(self, seconds: float) -> bool: ...

    def raise_if_cancelled(self) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Full-jitter exponential backoff: try `attempts` times in all, sleeping
    uniform(0, min(cap_s, base_s * factor**n)) after the n-th failure, or the server's
    Retry-After when it sent one (up to max_retry_after_s). Tests shrink the timings."""

    attempts: int = 5
    base_s: float = 1.0
    factor: float = 2.0
    cap_s: float = 60.0
    max_retry_after_s: float = 300.0
    random: Callable[[], float] = field(default=random.random, repr=False)

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        ceiling = min(self.cap_s, self.base_s * self.factor ** (failures - 1))
        jittered = self.random() * ceiling
        if retry_after is None:
            return jittered
        return min(max(retry_after, jittered), self.max_retry_after_s)


@dataclass
class TokenUsage:
    """Tokens used; answers that did not report usage are counted apart, never as 0 tokens."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    requests_without_usage: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def complete(self) -> bool:
        return self.requests_without_usage == 0

    def add(self, prompt_tokens: int | None, completion_tokens: int | None) -> None:
        self.requests += 1
        if prompt_tokens is None or completion_tokens is None:
            self.requests_without_usage += 1
        self.prompt_tokens += prompt_tokens or 0
        self.completion_tokens += completion_tokens or 0

    def merge(self, other: TokenUsage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.requests += other.requests
        self.requests_without_usage += other.requests_without_usage


@dataclass(frozen=True)
class ChatResult:
    content: str  # the answer, without any thinking trace
    done_reason: str | None  # "stop", "length" (cut at max_tokens) or None
    prompt_tokens: int | None  # None: the server did not say
    completion_tokens: int | None
    latency_s: float  # of the successful attempt
    attempts: int

    @property
    def was_cut(self) -> bool:
        return self.done_reason == "length"


class ConnectionStatus(StrEnum):
    OK = "ok"
    BAD_KEY = "bad_key"
    NO_ACCESS = "no_access"
    UNKNOWN_MODEL = "unknown_model"
    UNREACHABLE = "unreachable"
    QUOTA = "quota"
    MISCONFIGURED = "misconfigured"
    SERVER_ERROR = "server_error"


@dataclass(frozen=True)
class ConnectionCheck:
    status: ConnectionStatus
    message: str
    models: tuple[str, ...] = ()  # what the server lists (empty when listing failed)
    latency_s: float | None = None
    context_tokens: int | None = None  # the model's context, when the server says it

    @property
    def ok(self) -> bool:
        return self.status is ConnectionStatus.OK



@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every client. Building it loads the CA bundle: ~35 ms of
    C code holding the interpreter lock, which the window would feel at each run's start."""
    return httpx.create_ssl_context()

class LLMClient:
    """Chat with one model on one server; safe to share between worker threads."""

    def __init__(
        self,
        settings: LLMSettings,
        api_key: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        limits: ResponseLimits | None = None,
    ) -> None:
        settings.validate()
        self.settings = settings
        self.limits = limits or ResponseLimits()
        self.retry = retry or RetryPolicy()
        self._api_key = api_key.strip() if api_key and api_key.strip() else None
        self._usage = TokenUsage()
        self._lock = threading.Lock()
        self._models_cache: tuple[float, tuple[str, ...]] | None = None
        self.context_tokens: int | None = None  # learnt by the preflight, when reported
        self._never = threading.Event()  # sleeps without a cancel token wait on this
        self._http = self._make_http(transport)

    def _make_http(self, transport: httpx.BaseTransport | None) -> httpx.Client:
        pool = self.settings.resolved_concurrency + 1  # + a listing or a probe
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self._api_key:  # local servers need none; an empty Bearer would confuse proxies
            headers["Authorization"] = f"Bearer {self._api_key}"
        read = self.settings.read_timeout
        return httpx.Client(
            verify=tls_context(),
            headers=headers,
            timeout=httpx.Timeout(connect=CONNECT_TIMEOUT_S, read=read, write=read, pool=None),
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
            follow_redirects=False,
            transport=transport,
        )

    def __repr__(self) -> str:  # never the key
        s = self.settings
        return f"LLMClient(provider={s.provider!r}, model={s.resolved_model!r}, url={s.root_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def usage(self) -> TokenUsage:
        """A copy of the tokens used by every successful chat so far."""
        with self._lock:
            return TokenUsage(**vars(self._usage))

    # -- chat -----------------------------------------------------------------------------

    def chat(
        self,
        messages: list[Message],
        *,
        schema: Mapping[str, Any] | None = None,
        schema_name: str = "examples",
        cancel: CancelHook | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stream: bool | None = None,
        retry: RetryPolicy | None = None,
    ) -> ChatResult:
        """Send one chat; retry what is retryable; raise a typed LLMError or Cancelled."""
        use_stream = self.settings.stream if stream is None else stream
        attempt = 0

        def body_for(mode: str) -> dict[str, Any]:
            return wire.chat_body(
                self.settings,
                messages,
                schema=schema,
                schema_name=schema_name,
                stream=use_stream,
                max_tokens=max_tokens if max_tokens is not None else self.settings.max_tokens,
                temperature=self.settings.temperature if temperature is None else temperature,
                mode=mode,
            )

        def once() -> ChatResult:
            nonlocal attempt
            attempt += 1
            started = time.monotonic()
            completion = self._post_with_fallback(body_for, schema is not None, use_stream,
                                                  cancel)
            return ChatResult(
                content=wire.strip_leading_think(completion.content),
                done_reason=completion.done_reason,
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                latency_s=time.monotonic() - started,
                attempts=attempt,
            )

        result = self._with_retries(once, cancel, retry or self.retry, "chat")
        with self._lock:
            self._usage.add(result.prompt_tokens, result.completion_tokens)
        return result

    def _post_with_fallback(
        self,
        body_for: Callable[[str], dict[str, Any]],
        has_schema: bool,
        stream: bool,
        cancel: CancelHook | None,
    ) -> wire.Completion:
        """Post in the structured-output mode this server takes: in auto mode, a request the
        server calls invalid falls back json_schema → json_object → text, and the server's
        mode is remembered for the process."""
        wanted = self.settings.resolved_structured_mode
        if not has_schema or wanted != "auto":
            return self._post_chat(body_for(wanted if has_schema else "text"), stream, cancel)
        mode = structured_mode_of(self.settings.root_url)
        while True:
            try:
                return self._post_chat(body_for(mode), stream, cancel)
            except LLMError as error:
                following = _next_mode(mode)
                if following is None or not _rejects_the_format(error):
                    raise
                mode = _remember_mode(self.settings.root_url, mode, following, error)

    def _post_chat(
        self, body: dict[str, Any], stream: bool, cancel: CancelHook | None
    ) -> wire.Completion:
        """Every answer is read in counted pieces (reading.py): its size, its lines and its
        time are bounded whatever the server sends."""
        api = self.settings.resolved_api
        reader = BoundedReader(self.limits, cancel)
        with self._translate_transport_errors(reader), self._http.stream(
                "POST", self.settings.chat_url, json=body, timeout=self._timeout(reader)
        ) as response:
            self._raise_for_status(response)
            if not stream:
                return wire.parse_completion(api, wire.loads_answer(reader.body(response)))
            lines = reader.lines(response)
            read = wire.read_native_stream if api == "native" else wire.read_sse_stream
            completion = read(lines)
            _drain(lines)
            return completion

    def _timeout(self, reader: BoundedReader) -> httpx.Timeout:
        read = reader.read_timeout(self.settings.read_timeout)
        return httpx.Timeout(connect=CONNECT_TIMEOUT_S, read=read, write=read, pool=None)

    def _get_json(self, url: str, *, listing: bool = False) -> Any:
        return self._request_json("GET", url, listing=listing)

    def _request_json(self, method: str, url: str, *, listing: bool = False,
                      body: dict[str, Any] | None = None) -> Any:
        """A JSON answer read within the limits, as every answer is."""
        reader = BoundedReader(self.limits)
        with self._translate_transport_errors(reader), self._http.stream(
                method, url, json=body, timeout=self._timeout(reader)) as response:
            self._raise_for_status(response, listing=listing)
            return wire.loads_answer(reader.body(response))

    # -- listing and probing --------------------------------------------------------------

    def list_models(self, *, cancel: CancelHook | None = None) -> list[str]:
        """Model names from /api/tags or /v1/models (these endpoints do not check the key)."""

        def once() -> list[str]:
            return _model_names(self._get_json(self.settings.models_url, listing=True))

        names = self._with_retries(once, cancel, _quick(self.retry), "list models")
        with self._lock:
            self._models_cache = (time.monotonic(), tuple(names))
        return names

    def preflight(self, *, cancel: CancelHook | None = None) -> tuple[str, ...]:
        """Before a run, one cheap call: the server answers, a key is there when one is
        needed, and the model is in the server's list (when it gives one). Raises the cause."""
        if self.settings.needs_key and not self._api_key:
            host = urlsplit(self.settings.root_url).hostname or "the server"
            raise AuthError(f"{host} needs an API key and none is set: set OLLAMA_API_KEY or "
                            f"save a key in the LLM settings (create one at {KEYS_URL}).")
        try:
            models = tuple(self.list_models(cancel=cancel))
        except (ConfigurationError, BadResponseError, RequestRejectedError) as error:
            # Some servers list nothing at /models; the first request will tell.
            log.info("No model list from %s (%s); the model is not checked", self, error)
            models = ()
        self.require_listed_model(models)
        self.context_tokens = self.context_length()
        return models

    def require_listed_model(self, models: tuple[str, ...]) -> None:
        """ModelNotFoundError naming what the server offers, when its list lacks the model."""
        model = self.settings.resolved_model
        if not models or any(_same_model(model, name) for name in models):
            return
        listed = ", ".join(models[:MAX_LISTED_MODELS])
        more = " …" if len(models) > MAX_LISTED_MODELS else ""
        raise ModelNotFoundError(
            f"The server has no model {model!r}; it offers: {listed}{more}.",
            status=None, detail="not in the server's model list", available=models)

    def check_connection(self, *, cancel: CancelHook | None = None) -> ConnectionCheck:
        """A one-token chat shaped as the generation's (schema and streaming included) tells
        a bad key, no access, an unknown model and no server apart; the model must also be in
        the server's list, when it gives one."""
        models = self._models_or_empty(cancel)
        started = time.monotonic()
        try:
            self.chat(
                [{"role": "user", "content": "ping"}],
                schema=PROBE_SCHEMA,
                max_tokens=1,
                cancel=cancel,
                retry=_quick(self.retry),
            )
            self.require_listed_model(models)
        except LLMError as error:
            return ConnectionCheck(_status_of(error), str(error), models)
        latency = time.monotonic() - started
        context = self.context_length()
        found = (f" Context: {context:,} tokens." if context
                 else " The server does not say its context length.")
        notice = structured_fallback_notice(self.settings)
        message = (f"Connected: {self.settings.resolved_model} answered in {latency:.1f} s."
                   f"{found}{' ' + notice if notice else ''}")
        return ConnectionCheck(ConnectionStatus.OK, message, models, latency, context)

    # -- the context the server runs the model with -----------------------------------------

    def context_length(self) -> int | None:
        """The context in tokens as the server reports it: Ollama's /api/show (num_ctx when
        the model sets one, else the model's context_length), llama-server's /props. None when
        it does not say; never raises, as the first request will tell what is wrong."""
        try:
            if self.settings.provider == "openai":
                root = self.settings.root_url.removesuffix("/v1")
                return _context_from_props(self._get_json(f"{root}/props", listing=True))
            return _context_from_show(self._request_json(
                "POST", f"{self.settings.root_url}/api/show", listing=True,
                body={"model": self.settings.resolved_model}))
        except LLMError as error:
            log.info("%s did not say its context length (%s)", self, error)
            return None

    def require_prompt_fits(self, messages: list[Message], max_tokens: int | None) -> None:
        """ContextTooSmallError when the prompt, with room for the answer, surely exceeds
        the context the preflight learnt; nothing when the server did not say."""
        context = self.context_tokens
        if context is None:
            return
        prompt = estimated_prompt_tokens(messages)
        room = answer_room(context, max_tokens)
        if prompt + room <= context:
            return
        raise ContextTooSmallError(
            f"The longest prompt (about {prompt:,} tokens) and room for the answer "
            f"({room:,} tokens) do not fit the context of {self.settings.resolved_model} on "
            f"this server ({context:,} tokens): use smaller chunks, a model with a larger "
            "context, or a larger context on the server (Ollama num_ctx, llama-server -c).",
            prompt_tokens=prompt, context_tokens=context)

    def _models_or_empty(self, cancel: CancelHook | None) -> tuple[str, ...]:
        try:
            return tuple(self.list_models(cancel=cancel))
        except LLMError:
            return ()

    def _known_models(self) -> tuple[str, ...]:
        """For a 'model not found' message: the cached list, or one quick listing."""
        with self._lock:
            cached = self._models_cache
        if cached is not None and time.monotonic() - cached[0] < 60:
            return cached[1]
        return self._models_or_empty(None)

    # -- retries --------------------------------------------------------------------------

    def _with_retries(
        self, call: Callable[[], T], cancel: CancelHook | None, policy: RetryPolicy, what: str
    ) -> T:
        same_kind: Counter[type[LLMError]] = Counter()  # for errors with their own retry limit
        for attempt in range(1, max(1, policy.attempts) + 1):
            if cancel is not None:
                cancel.raise_if_cancelled()
            try:
                return call()
            except LLMError as error:
                same_kind[type(error)] += 1
                limit = policy.attempts
                over_own_limit = (error.max_retries is not None
                                  and same_kind[type(error)] > error.max_retries)
                if not error.retryable or attempt >= limit or over_own_limit:
                    raise
                delay = policy.delay(attempt, getattr(error, "retry_after", None))
                log.warning(
                    "LLM %s failed (%s); attempt %d of %d, next in %.1f s",
                    what, error, attempt, limit, delay,
                )
                if self._sleep(delay, cancel):
                    raise Cancelled() from error
        raise AssertionError("unreachable")  # the loop returns or raises

    def _sleep(self, seconds: float, cancel: CancelHook | None) -> bool:
        """True when cancelled during the sleep."""
        if cancel is not None:
            return cancel.wait(seconds)
        self._never.wait(seconds)
        return False

    # -- errors ---------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text

    @contextlib.contextmanager
    def _translate_transport_errors(
        self, reader: BoundedReader | None = None
    ) -> Iterator[None]:
        """httpx's exceptions become NetworkError / UnreachableError, scrubbed of the key; a
        read timeout cut short by the request's deadline is that deadline."""
        base = self.settings.root_url
        try:
            yield
        except httpx.ConnectTimeout as exc:
            raise UnreachableError(f"{base} did not accept a connection within "
                                   f"{CONNECT_TIMEOUT_S:g} s: is the server up?") from exc
        except httpx.ConnectError as exc:
            raise UnreachableError(
                self._scrub(f"Could not connect to {base} ({exc}): is the server running and "
                            "the base URL right?")
            ) from exc
        except httpx.TimeoutException as exc:
            if reader is not None and reader.expired():
                raise reader.late() from exc
            raise NetworkError(
                f"{base} sent nothing for {self.settings.read_timeout:g} s (read timeout).",
                cause="timed out",
            ) from exc
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise NetworkError(
                self._scrub(f"The connection to {base} was dropped mid-answer ({exc})."),
                cause="connection dropped",
            ) from exc
        except httpx.HTTPError as exc:
            raise NetworkError(self._scrub(f"HTTP error talking to {base}: {exc}")) from exc

    def _raise_for_status(self, response: httpx.Response, *, listing: bool = False) -> None:
        """Of an error answer only its start is read (error_body): enough for its message."""
        status = response.status_code
        if status < 300:
            return
        if status < 400:
            raise ConfigurationError(self._scrub(_redirect_message(response)), status=status)
        content = error_body(response)
        detail = self._scrub(wire.error_text_from_body(content))
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        signin_url = wire.signin_url_from_body(content) if status == 401 else None
        url = str(response.request.url)
        sizes = wire.context_sizes_from_body(content) if status == 400 else None
        if sizes is not None:
            raise RequestRejectedError(_context_message(*sizes), status=status, detail=detail,
                                       cause="prompt over the context size")
        if status >= 500 and status != 501 and wire.says_request_invalid(content):
            # Never retried as a transient 500: the same request would fail the same way.
            raise InvalidRequestError(
                f"The server rejected the request as invalid ({status}): {detail}",
                status=status, detail=detail, cause=f"HTTP {status} invalid request")
        raise self._error_for(status, detail, retry_after, url, listing, signin_url)

    def _error_for(
        self,
        status: int,
        detail: str,
        retry_after: float | None,
        url: str,
        listing: bool,
        signin_url: str | None = None,
    ) -> LLMError:
        model = self.settings.resolved_model
        if status == 401:
            return AuthError(self._auth_message(detail, signin_url), status=status, detail=detail)
        if status == 403:
            return ForbiddenError(_forbidden_message(model, detail), status=status, detail=detail)
        if status == 404:
            return self._not_found(detail, url, listing)
        if status == 429:
            return _too_many_requests(detail, retry_after)
        if status in (408, 425):
            text = f"The server timed out the request ({status}): {detail}"
            return NetworkError(text, status=status)
        if status == 501:
            return ConfigurationError(
                f"The server does not support this request (501): {detail}", status=status
            )
        if status >= 500:
            text = f"The server failed ({status}): {detail or 'no details'}"
            return ServerError(text, status=status, detail=detail, retry_after=retry_after)
        text = f"The server rejected the request ({status}): {detail or 'no details'}"
        return RequestRejectedError(text, status=status, detail=detail)

    def _auth_message(self, detail: str, signin_url: str | None) -> str:
        host = urlsplit(self.settings.root_url).hostname or "the server"
        if signin_url:  # a local Ollama asked to reach a cloud model without being signed in
            return (
                f"{host} is not signed in to Ollama Cloud (401 {detail}): run `ollama signin` "
                f"on that machine (or open {signin_url}), or use a local model."
            )
        where = f" (create one at {KEYS_URL})" if self.settings.provider == "ollama-cloud" else ""
        if not self._api_key:
            return (
                f"{host} needs an API key and none is set (401 {detail}): check your API key "
                f"setting or OLLAMA_API_KEY{where}."
            )
        return (
            f"{host} rejected the API key (401 {detail}): check your API key; it may be "
            f"mistyped or revoked{where}."
        )

    def _not_found(self, detail: str, url: str, listing: bool) -> LLMError:
        model = self.settings.resolved_model
        about_model = not listing and ("model" in detail.lower() or model in detail)
        if not about_model:
            return ConfigurationError(
                f"{url} does not exist on this server (404): check the base URL"
                + (" (OpenAI-compatible servers usually end in /v1)." if self.settings.provider
                   == "openai" else "."),
                status=404,
                detail=detail,
            )
        available = self._known_models()
        listed = ", ".join(available[:MAX_LISTED_MODELS]) or "the server lists none"
        more = " …" if len(available) > MAX_LISTED_MODELS else ""
        return ModelNotFoundError(
            f"Model {model!r} was not found ({detail}): check the model name; "
            f"available: {listed}{more}.",
            detail=detail,
            available=available,
        )


# -- module-level helpers ---------------------------------------------------------------------


def test_connection(settings: LLMSettings, api_key: str | None = None) -> ConnectionCheck:
    """Check settings + key with a one-token chat; never raises for a server problem."""
    problems = settings.problems()
    if problems:
        return ConnectionCheck(ConnectionStatus.MISCONFIGURED, " ".join(problems))
    with LLMClient(settings, api_key) as client:
        return client.check_connection()


test_connection.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def list_models(settings: LLMSettings, api_key: str | None = None) -> list[str]:
    with LLMClient(settings, api_key) as client:
        return client.list_models()


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def quota_window(message: str) -> str | None:
    lowered = message.lower()
    return next((w for w in QUOTA_WINDOWS if f"{w} usage limit" in lowered), None)


def _too_many_requests(detail: str, retry_after: float | None) -> LLMError:
    if "usage limit" not in detail.lower():
        text = f"Too many requests (429): {detail or 'rate limited'}"
        return RateLimitedError(text, detail=detail, retry_after=retry_after)
    window = quota_window(detail)
    hint = RESUME_HINTS.get(window or "", "Resume when your plan's usage limit resets")
    if retry_after is not None:
        hint = f"Resume in about {max(1, round(retry_after / 60))} min"
    text = (
        f"Ollama Cloud usage limit reached ({window or 'plan'} limit): generation stopped and "
        f"everything made so far is kept. {hint}, or upgrade at {UPGRADE_URL}. "
        f"The server said: {detail}"
    )
    return QuotaExhaustedError(text, detail=detail, window=window, retry_after=retry_after)


def _forbidden_message(model: str, detail: str) -> str:
    if "disabled" in detail.lower():
        return (
            f"Cloud models are disabled on this Ollama server (403 {detail}): enable them or "
            "choose a local model."
        )
    return (
        f"Your account cannot use {model!r} (403 {detail}): this model needs a subscription. "
        f"Choose a free model such as {FREE_MODEL_HINT} or upgrade at {UPGRADE_URL}."
    )


def _redirect_message(response: httpx.Response) -> str:
    """Names the target but never recommends it: a hostile server picks the Location."""
    url = str(response.request.url)
    location = response.headers.get("Location", "")
    with contextlib.suppress(httpx.InvalidURL):  # a relative target, named in full
        location = str(response.request.url.join(location)) if location else ""
    target = printable(location)[:200] or "another address"
    return (
        f"The server redirected {url} to {target} "
        f"({response.status_code}); redirects are not followed (they would drop the request "
        "body): check the base URL against the server's documentation."
    )


def _drain(lines: Iterator[str]) -> None:
    """Read a stream to its end so the connection can be reused; a server that keeps sending
    after its final message only loses the connection (the answer is already complete)."""
    with contextlib.suppress(LLMError):
        for _ in lines:
            pass


def _model_names(data: Any) -> list[str]:
    if not isinstance(data, dict):
        raise BadResponseError("The model list is not a JSON object.")
    if isinstance(data.get("models"), list):  # native /api/tags
        entries, key = data["models"], "name"
    elif isinstance(data.get("data"), list):  # OpenAI /v1/models
        entries, key = data["data"], "id"
    else:
        raise BadResponseError("The model list has neither `models` nor `data`.")
    return [e[key] for e in entries if isinstance(e, dict) and isinstance(e.get(key), str)]


# A generous 4 characters per token (English runs about 4, code and most other languages
# fewer): the estimate stays under the real count, so a refused prompt surely does not fit.
CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4  # the role markers a chat template adds


def estimated_prompt_tokens(messages: list[Message]) -> int:
    return sum(-(-len(m.get("content", "")) // CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE
               for m in messages)


def answer_room(context: int, max_tokens: int | None) -> int:
    """Tokens kept for the answer: the max tokens asked for, but at most a quarter of the
    context. Servers cut an answer at the context's end rather than refuse it, so a max_tokens
    larger than the context (8192 against Ollama's default 4096) must not refuse every prompt."""
    quarter = context // 4
    return quarter if max_tokens is None else min(max_tokens, quarter)


def _context_from_show(data: Any) -> int | None:
    """num_ctx from the model's parameters ("num_ctx 8192" lines), else model_info's
    `<architecture>.context_length`."""
    if not isinstance(data, dict):
        return None
    parameters = data.get("parameters")
    for line in parameters.splitlines() if isinstance(parameters, str) else ():
        name, _, value = line.strip().partition(" ")
        if name == "num_ctx" and value.strip().isdigit():
            return int(value.strip())
    info = data.get("model_info")
    lengths = [v for k, v in info.items() if k.endswith(".context_length")
               and isinstance(v, int) and v > 0] if isinstance(info, dict) else []
    return lengths[0] if lengths else None


def _context_from_props(data: Any) -> int | None:
    settings = data.get("default_generation_settings") if isinstance(data, dict) else None
    n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
    return n_ctx if isinstance(n_ctx, int) and n_ctx > 0 else None


FALLBACK_MODES = ("json_schema", "json_object", "text")
_server_modes: dict[str, str] = {}  # base URL -> the structured-output mode it takes
_server_modes_lock = threading.Lock()


def structured_mode_of(base_url: str) -> str:
    """The mode auto uses for this server: json_schema until the server refused it."""
    with _server_modes_lock:
        return _server_modes.get(base_url, FALLBACK_MODES[0])


def structured_mode_used(settings: LLMSettings) -> str:
    """The mode requests to this server go out in: the chosen one, or what auto settled on."""
    wanted = settings.resolved_structured_mode
    return structured_mode_of(settings.root_url) if wanted == "auto" else wanted


def structured_fallback_notice(settings: LLMSettings) -> str | None:
    """One line for the person when auto fell back from json_schema for this server."""
    if settings.resolved_structured_mode != "auto":
        return None
    mode = structured_mode_of(settings.root_url)
    refused = FALLBACK_MODES[: FALLBACK_MODES.index(mode)]
    if not refused:
        return None
    used = "the schema in the prompt (text)" if mode == "text" else mode
    return f"The server does not accept {' or '.join(refused)}; using {used} for this server."


def forget_structured_modes() -> None:
    """Forget what each server took (a server restarted with other options, tests)."""
    with _server_modes_lock:
        _server_modes.clear()


def _next_mode(mode: str) -> str | None:
    index = FALLBACK_MODES.index(mode) if mode in FALLBACK_MODES else len(FALLBACK_MODES)
    return FALLBACK_MODES[index + 1] if index + 1 < len(FALLBACK_MODES) else None


def _rejects_the_format(error: LLMError) -> bool:
    """The server called the request invalid (any status), or a 4xx names the format."""
    if isinstance(error, InvalidRequestError):
        return True
    text = f"{error.detail} {error}".lower()
    return isinstance(error, RequestRejectedError) and any(
        word in text for word in ("response_format", "json_schema", "json_object", "format"))


def _remember_mode(base_url: str, failed: str, following: str, error: LLMError) -> str:
    """Switch this server to `following`, saying so once (other threads may get there too)."""
    with _server_modes_lock:
        current = _server_modes.get(base_url, FALLBACK_MODES[0])
        if FALLBACK_MODES.index(current) >= FALLBACK_MODES.index(following):
            return current
        _server_modes[base_url] = following
    log.warning("%s does not take structured output as %s (%s); using %s from now on",
                base_url, failed, error.detail or error, following)
    return following


def _context_message(prompt: int | None, context: int | None) -> str:
    sizes = (f"the prompt ({prompt:,} tokens) does not fit the server's context "
             f"({context:,} tokens)" if prompt and context
             else "the prompt does not fit the server's context")
    return (f"The server refused the request (400): {sizes}. Use smaller chunks (ingest again "
            "with fewer tokens per chunk) or give the server a larger context (llama-server "
            "-c N, Ollama num_ctx).")


def _same_model(wanted: str, listed: str) -> bool:
    """Ollama names without a tag mean `:latest`."""
    def full(name: str) -> str:
        name = name.strip()
        return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"

    return wanted.strip() == listed.strip() or full(wanted) == full(listed)


def _quick(policy: RetryPolicy) -> RetryPolicy:
    """Probes and listings retry once: the person is waiting for an answer."""
    return replace(policy, attempts=min(policy.attempts, 2))


STATUS_BY_ERROR: tuple[tuple[type[LLMError], ConnectionStatus], ...] = (
    (AuthError, ConnectionStatus.BAD_KEY),
    (ForbiddenError, ConnectionStatus.NO_ACCESS),
    (ModelNotFoundError, ConnectionStatus.UNKNOWN_MODEL),
    (QuotaExhaustedError, ConnectionStatus.QUOTA),
    (UnreachableError, ConnectionStatus.UNREACHABLE),
    (ConfigurationError, ConnectionStatus.MISCONFIGURED),
)


def _status_of(error: LLMError) -> ConnectionStatus:
    return next(
        (status for kind, status in STATUS_BY_ERROR if isinstance(error, kind)),
        ConnectionStatus.SERVER_ERROR,
    )
