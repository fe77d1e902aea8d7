"""A fake Ollama server for tests and benchmarks.

It speaks the native API (`/api/chat`, `/api/tags`) and the OpenAI-compatible API
(`/v1/chat/completions`, `/v1/models`) over real HTTP on 127.0.0.1, with payloads shaped byte for
byte like Ollama's (Go struct field order, Go's JSON escaping, the real content types and error
bodies), scriptable answers, latency and injectable faults. Standard library only.

    with FakeLLMServer(latency_ms=(50, 200)) as server:
        server.fail_next(Fault.RATE_LIMIT, count=2)
        ...  # point the client at server.base_url

Standalone: `python -m tests.helpers.fake_llm --port 8080 --latency-ms 50-800 --fault-rate 0.05`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import random
import re
import signal
import socket
import socketserver
import sys
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Literal, Self

__all__ = [
    "DEFAULT_FAULT_MIX",
    "DEFAULT_MODELS",
    "Api",
    "FakeLLMServer",
    "Fault",
    "RecordedRequest",
    "Responder",
    "echo_responder",
    "last_user_text",
    "main",
    "qa_responder",
]

Api = Literal["native", "openai"]
Responder = Callable[[dict[str, Any], Api], str]

DEFAULT_MODELS: tuple[str, ...] = ("gpt-oss:20b", "gpt-oss:120b", "gemma4:31b")

NATIVE_JSON = "application/json; charset=utf-8"  # gin's c.JSON
OPENAI_JSON = "application/json"  # Ollama's OpenAI middleware
NDJSON = "application/x-ndjson"
SSE = "text/event-stream"

CHAT_PATHS: dict[str, Api] = {"/api/chat": "native", "/v1/chat/completions": "openai"}
MAX_STREAM_PIECES = 48  # enough to look like token streaming, few enough to stay cheap
MAX_RECORDED_REQUESTS = 10_000  # bounds memory in long standalone benchmark runs


class Fault(StrEnum):
    """What can go wrong with one chat request (listing endpoints never fail)."""

    UNAUTHORIZED = "unauthorized"  # 401
    FORBIDDEN = "forbidden"  # 403: the model needs a subscription
    NOT_FOUND = "not_found"  # 404 for the requested model
    USAGE_LIMIT = "usage_limit"  # 429 "... session usage limit ...": quota exhausted
    RATE_LIMIT = "rate_limit"  # 429 "too many requests", no Retry-After (as Ollama Cloud)
    RATE_LIMIT_RETRY_AFTER = "rate_limit_retry_after"  # the same with `Retry-After: 1`
    SERVER_ERROR = "server_error"  # 500
    SERVER_BUSY = "server_busy"  # 503: local Ollama's queue is full
    TIMEOUT = "timeout"  # nothing for `timeout_fault_s` seconds, then the normal answer
    DROP = "drop"  # the connection is closed without a response
    TRUNCATED = "truncated"  # the body ends cleanly but early: no done / [DONE], cut JSON
    DISCONNECT = "disconnect"  # the connection is closed in the middle of the body
    STREAM_ERROR = "stream_error"  # an error line inside a 200 stream (500 when not streaming)
    MALFORMED_JSON = "malformed_json"  # the answer has a trailing comma
    CUT_JSON = "cut_json"  # the answer stops halfway, done_reason "length"
    THINK_TAGS = "think_tags"  # "<think>…</think>" inline before the answer
    CODE_FENCE = "code_fence"  # ```json … ``` around the answer
    THINKING = "thinking"  # a trace in message.thinking (native) / message.reasoning (openai)
    BAD_GATEWAY = "bad_gateway"  # 502 with a proxy's HTML page
    CUT_SHORT = "cut_short"  # llama.cpp under load: the role delta, then [DONE] (no finish)
    # Hostile servers (issue 15): sizes and pace set with set_hostile().
    GIANT_BODY = "giant_body"  # a 200 answer of `hostile_bytes` (stream: many valid lines)
    NO_NEWLINE = "no_newline"  # a 200 stream of `hostile_bytes` that never sends a newline
    ENDLESS = "endless"  # valid content lines every `hostile_interval_s`, never finished
    DRIBBLE = "dribble"  # one space every `hostile_interval_s`, forever
    DEEP_JSON = "deep_json"  # the answer's JSON itself nested DEEP_LEVELS deep
    REDIRECT_FILE = "redirect_file"  # 301 to file:/etc/passwd
    ESCAPES = "escapes"  # terminal escape sequences and a bidi override in every question


FaultMix = Mapping[Fault | str, float] | Iterable[Fault | str]  # kinds, or kinds with weights

# Status and message of the faults that answer with an HTTP error (bodies as seen from Ollama).
HTTP_ERROR_FAULTS: dict[Fault, tuple[int, str]] = {
    Fault.UNAUTHORIZED: (401, "unauthorized"),
    Fault.FORBIDDEN: (
        403,
        "this model requires a subscription, upgrade for access: https://ollama.com/upgrade",
    ),
    Fault.NOT_FOUND: (404, "model '{model}' not found"),
    Fault.USAGE_LIMIT: (
        429,
        "you (alice) have reached your session usage limit, "
        "upgrade for higher limits: https://ollama.com/upgrade",
    ),
    Fault.RATE_LIMIT: (429, "too many requests"),
    Fault.RATE_LIMIT_RETRY_AFTER: (429, "too many requests"),
    Fault.SERVER_ERROR: (500, "llama runner process has terminated: exit status 2"),
    Fault.SERVER_BUSY: (503, "server busy, please try again.  maximum pending requests exceeded"),
}
BAD_GATEWAY_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
# llama-cpp-python's server: pydantic rejects response_format json_schema, answered as a 500.
JSON_SCHEMA_REJECTED = (
    "1 validation error for CreateChatCompletionRequest\nresponse_format.type\n  Input should "
    "be 'text' or 'json_object' [type=literal_error, input_value='json_schema', "
    "input_type=str]"
)
STREAM_ERROR_MESSAGE = "an error was encountered while running the model: unexpected EOF"
DEFAULT_THINKING = (
    "Okay, the user wants question-answer pairs grounded in the passage. "
    "I should pick distinct sentences and quote them exactly."
)
THINK_TAGS_PREFIX = "<think>\nLet me find three distinct facts in the passage.\n</think>\n\n"
HOSTILE_FAULTS = frozenset({Fault.GIANT_BODY, Fault.NO_NEWLINE, Fault.ENDLESS, Fault.DRIBBLE,
                            Fault.DEEP_JSON, Fault.REDIRECT_FILE})
DEEP_LEVELS = 10_000
# Clear the screen, retitle the window, turn the text red, then reverse it (right-to-left).
ESCAPE_SEQUENCES = "\x1b[2J\x1b]0;owned\x07\x1b[31m\u202e"
HOSTILE_PIECE = 64 * 1024  # bytes written at a time by the giant and no-newline faults

# Transient faults only: a benchmark with a random fault rate should still finish.
DEFAULT_FAULT_MIX: dict[Fault, float] = {
    Fault.RATE_LIMIT: 3,
    Fault.SERVER_ERROR: 2,
    Fault.SERVER_BUSY: 2,
    Fault.DROP: 1,
    Fault.TRUNCATED: 1,
    Fault.MALFORMED_JSON: 1,
    Fault.THINK_TAGS: 1,
    Fault.CODE_FENCE: 1,
}


# --------------------------------------------------------------------------------------------
# Answers computed from the request


def last_user_text(request_json: Mapping[str, Any]) -> str:
    """The text of the last user message (string content or OpenAI text parts)."""
    messages = request_json.get("messages")
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _message_text(message.get("content"))
    return ""


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "\n".join(t for t in texts if isinstance(t, str))
    return ""


def echo_responder(request_json: dict[str, Any], api: Api) -> str:
    """Answers with the last user message, unchanged."""
    return last_user_text(request_json)


def qa_responder(request_json: dict[str, Any], api: Api) -> str:
    """Default answer: a JSON array of up to 3 {"question", "answer", "quote"} objects.

    Each quote is a sentence copied verbatim from the longest paragraph of the last user message
    (only its passage, when the prompt marks one with "--- PASSAGE ---" as the app's templates
    do, so the rules around it are never quoted); so a grounding check passes. Each question is
    built from its own sentence (so a duplicate check passes). The same input always gives the
    same output.
    """
    paragraph = _longest_paragraph(_passage(last_user_text(request_json)))
    items = [
        {"question": question, "answer": sentence, "quote": sentence}
        for question, sentence in _questions_for(_sentences(paragraph))[:3]
    ]
    return json.dumps(items, ensure_ascii=False, indent=2)


PASSAGE_START, PASSAGE_END = "--- PASSAGE ---", "--- END OF PASSAGE ---"


def _passage(text: str) -> str:
    if PASSAGE_START not in text:
        return text
    return text.split(PASSAGE_START, 1)[1].split(PASSAGE_END, 1)[0]


def _longest_paragraph(text: str) -> str:
    paragraphs = [p.strip() for p in re.split(r"\n[ \t]*\n", text)]
    return max(paragraphs, key=len, default="")


def _sentences(paragraph: str) -> list[str]:
    pieces = [s.strip() for s in re.split(r"(?<=[.!?])\s+", paragraph) if s.strip()]
    substantial = [s for s in pieces if len(s.split()) >= 4]
    return substantial or pieces


def _questions_for(sentences: Iterable[str]) -> list[tuple[str, str]]:
    pairs: dict[str, str] = {}
    for sentence in sentences:
        words = re.findall(r"[\w'’-]+", sentence)
        question = f'What does the text say about "{" ".join(words[:10]) or sentence}"?'
        pairs.setdefault(question, sentence)  # a repeated opening would make a duplicate question
    return list(pairs.items())


# --------------------------------------------------------------------------------------------
# Payloads

_GO_HTML_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def go_json(obj: Any) -> str:
    """Encode like Go's encoding/json: compact, UTF-8, and <, >, & escaped as Go does."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).translate(_GO_HTML_ESCAPES)


def native_json_body(obj: Any) -> bytes:
    # Native bodies come from gin's c.JSON (json.Marshal): no trailing newline.
    return go_json(obj).encode()


def openai_json_body(obj: Any) -> bytes:
    # The OpenAI middleware writes with json.Encoder, which appends "\n".
    return (go_json(obj) + "\n").encode()


def rfc3339_nano(ns: int) -> str:
    """Go's time.Time JSON format in UTC: trailing zeros of the nanoseconds are dropped."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{stamp}.{fraction}Z" if fraction else f"{stamp}Z"


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def _prompt_tokens(request_json: Mapping[str, Any]) -> int:
    messages = request_json.get("messages")
    if not isinstance(messages, list):
        return 1
    texts = [_message_text(m.get("content")) for m in messages if isinstance(m, dict)]
    return sum(estimate_tokens(t) + 4 for t in texts) + 3  # + role markers, as a template adds


@dataclass(frozen=True)
class Answer:
    content: str
    thinking: str
    done_reason: str  # "stop" or "length"
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Reply:
    """One answer plus what both APIs need to render it."""

    model: str
    answer: Answer
    received_ns: int
    completion_id: str
    include_usage: bool

    @property
    def created_unix(self) -> int:
        return self.received_ns // 1_000_000_000


def split_for_streaming(text: str) -> list[str]:
    """Word-like pieces whose concatenation is exactly `text`."""
    words = re.findall(r"\s*\S+|\s+$", text)
    size = max(1, math.ceil(len(words) / MAX_STREAM_PIECES))
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]


def _native_metrics(reply: Reply) -> dict[str, int]:
    total = max(time.time_ns() - reply.received_ns, 1_000_000)
    return {
        "total_duration": total,
        "load_duration": total // 20,
        "prompt_eval_count": reply.answer.prompt_tokens,
        "prompt_eval_duration": total // 10,
        "eval_count": reply.answer.completion_tokens,
        "eval_duration": total * 3 // 4,
    }


def _native_message(content: str, thinking: str = "") -> dict[str, str]:
    message = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    return message


def native_completion(reply: Reply) -> dict[str, Any]:
    return {
        "model": reply.model,
        "created_at": rfc3339_nano(time.time_ns()),
        "message": _native_message(reply.answer.content, reply.answer.thinking),
        "done": True,
        "done_reason": reply.answer.done_reason,
        **_native_metrics(reply),
    }


def native_stream_lines(reply: Reply) -> list[bytes]:
    """Every NDJSON line before the final `done:true` one."""
    messages = [_native_message("", piece) for piece in split_for_streaming(reply.answer.thinking)]
    messages += [_native_message(piece) for piece in split_for_streaming(reply.answer.content)]
    return [
        _ndjson_line(
            {
                "model": reply.model,
                "created_at": rfc3339_nano(time.time_ns()),
                "message": message,
                "done": False,
            }
        )
        for message in messages
    ]


def native_stream_tail(reply: Reply) -> list[bytes]:
    final = {
        "model": reply.model,
        "created_at": rfc3339_nano(time.time_ns()),
        "message": _native_message(""),
        "done": True,
        "done_reason": reply.answer.done_reason,
        **_native_metrics(reply),
    }
    return [_ndjson_line(final)]


def _ndjson_line(obj: Any) -> bytes:
    return (go_json(obj) + "\n").encode()


def _openai_usage(answer: Answer) -> dict[str, int]:
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
    }


def openai_completion(reply: Reply) -> dict[str, Any]:
    message = {"role": "assistant", "content": reply.answer.content}
    if reply.answer.thinking:
        message["reasoning"] = reply.answer.thinking
    return {
        "id": reply.completion_id,
        "object": "chat.completion",
        "created": reply.created_unix,
        "model": reply.model,
        "system_fingerprint": "fp_ollama",
        "choices": [{"index": 0, "message": message, "finish_reason": reply.answer.done_reason}],
        "usage": _openai_usage(reply.answer),
    }


def _openai_chunk(reply: Reply, choices: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": reply.completion_id,
        "object": "chat.completion.chunk",
        "created": reply.created_unix,
        "model": reply.model,
        "system_fingerprint": "fp_ollama",
        "choices": choices,
    }


def _sse_event(data: str) -> bytes:
    return f"data: {data}\n\n".encode()


def openai_stream_events(reply: Reply) -> list[bytes]:
    """Every SSE event before the finish chunk; only the first delta carries the role."""
    deltas: list[dict[str, str]] = [
        {"content": "", "reasoning": piece} for piece in split_for_streaming(reply.answer.thinking)
    ]
    deltas += [{"content": piece} for piece in split_for_streaming(reply.answer.content)]
    deltas = deltas or [{"content": ""}]
    deltas[0] = {"role": "assistant", **deltas[0]}
    return [
        _sse_event(go_json(_openai_chunk(reply, [{"index": 0, "delta": d, "finish_reason": None}])))
        for d in deltas
    ]


def openai_stream_tail(reply: Reply) -> list[bytes]:
    finish = {"index": 0, "delta": {}, "finish_reason": reply.answer.done_reason}
    events = [_sse_event(go_json(_openai_chunk(reply, [finish])))]
    if reply.include_usage:
        usage_chunk = {**_openai_chunk(reply, []), "usage": _openai_usage(reply.answer)}
        events.append(_sse_event(go_json(usage_chunk)))
    events.append(_sse_event("[DONE]"))
    return events


def _openai_error_type(status: int) -> str:
    return {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")


def error_body(api: Api, status: int, message: str) -> tuple[str, bytes]:
    """Content type and body of an error, as each API writes it."""
    if api == "native":
        return NATIVE_JSON, native_json_body({"error": message})
    if status == 401:  # Ollama Cloud answers /v1 401s with a plain string, not the object
        return OPENAI_JSON, openai_json_body({"error": "Unauthorized"})
    error = {"message": message, "type": _openai_error_type(status), "param": None, "code": None}
    return OPENAI_JSON, openai_json_body({"error": error})


def stream_error_line(api: Api) -> bytes:
    if api == "native":
        return _ndjson_line({"error": STREAM_ERROR_MESSAGE})
    error = {"message": STREAM_ERROR_MESSAGE, "type": "api_error", "param": None, "code": None}
    return _sse_event(go_json({"error": error}))


def _billions_of_parameters(name: str) -> float | None:
    match = re.search(r"(\d+(?:\.\d+)?)b\b", name.rsplit(":", 1)[-1].lower())
    return float(match.group(1)) if match else None


def _model_details(name: str) -> dict[str, Any]:
    family = re.sub(r"[^a-z0-9]", "", name.split(":")[0].split("/")[-1].lower())
    billions = _billions_of_parameters(name)
    return {
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family],
        "parameter_size": f"{billions:g}B" if billions else "",
        "quantization_level": "Q4_K_M",
    }


def _model_size_bytes(name: str) -> int:
    # About 0.6 bytes per parameter (Q4_K_M), plus a name-derived tail so sizes differ.
    tail = int(hashlib.sha256(name.encode()).hexdigest()[:6], 16)
    return int((_billions_of_parameters(name) or 8.0) * 6e8) + tail


def _model_modified_ns(name: str) -> int:
    # A fixed, name-derived date in 2025, so listings are stable between runs.
    offset = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % (300 * 86_400)
    return (1_735_689_600 + offset) * 1_000_000_000 + 123_456_789


def tags_payload(models: Sequence[str]) -> dict[str, Any]:
    return {
        "models": [
            {
                "name": name,
                "model": name,
                "modified_at": rfc3339_nano(_model_modified_ns(name)),
                "size": _model_size_bytes(name),
                "digest": hashlib.sha256(name.encode()).hexdigest(),
                "details": _model_details(name),
            }
            for name in models
        ]
    }


def _namespace(name: str) -> str:
    parts = name.split(":")[0].split("/")
    return parts[-2] if len(parts) >= 2 else "library"


def openai_models_payload(models: Sequence[str]) -> dict[str, Any]:
    data = [
        {
            "id": name,
            "object": "model",
            "created": _model_modified_ns(name) // 1_000_000_000,
            "owned_by": _namespace(name),
        }
        for name in models
    ]
    return {"object": "list", "data": data}


def normalize_model_name(name: str) -> str:
    """Ollama resolves a name without a tag to `:latest`."""
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


# --------------------------------------------------------------------------------------------
# Content faults and limits


def add_trailing_comma(text: str) -> str:
    """Break JSON the way models do: a comma before the last closing bracket."""
    end = max(text.rfind("]"), text.rfind("}"))
    if end < 0:
        return text + ","
    head = text[:end].rstrip()
    return head + "," + text[len(head) :]


def apply_content_fault(content: str, fault: Fault | None) -> tuple[str, str]:
    """The answer as the fault distorts it, and its done_reason."""
    if fault is Fault.MALFORMED_JSON:
        return add_trailing_comma(content), "stop"
    if fault is Fault.CUT_JSON:
        return content[: max(1, len(content) // 2)], "length"
    if fault is Fault.THINK_TAGS:
        return THINK_TAGS_PREFIX + content, "stop"
    if fault is Fault.CODE_FENCE:
        return f"```json\n{content}\n```", "stop"
    if fault is Fault.ESCAPES:
        return with_escape_sequences(content), "stop"
    return content, "stop"


def with_escape_sequences(content: str) -> str:
    """Every question of a JSON list of items starts with ESCAPE_SEQUENCES."""
    items = json.loads(content)
    for item in items:
        item["question"] = ESCAPE_SEQUENCES + item["question"]
    return json.dumps(items, ensure_ascii=False, indent=2)


def deep_json_answer(api: Api) -> bytes:
    """A well-formed answer with one field nested DEEP_LEVELS arrays deep."""
    deep = b"[" * DEEP_LEVELS + b"]" * DEEP_LEVELS
    if api == "native":
        return (b'{"model":"m","message":{"role":"assistant","content":"","deep":' + deep
                + b'},"done":true,"done_reason":"stop"}')
    return (b'{"choices":[{"index":0,"delta":{"content":""},"message":{"role":"assistant",'
            b'"content":""},"finish_reason":"stop","deep":' + deep + b"}]}")


def content_line(api: Api, content: str) -> bytes:
    """One stream line carrying `content`, never the final one."""
    if api == "native":
        return _ndjson_line({"model": "m", "message": {"role": "assistant", "content": content},
                             "done": False})
    return _sse_event(go_json({"choices": [{"index": 0, "delta": {"content": content},
                                             "finish_reason": None}]}))


def token_limit(request_json: Mapping[str, Any], api: Api) -> int | None:
    """`options.num_predict` (native) or `max_tokens` (openai) when positive."""
    if api == "native":
        options = request_json.get("options")
        value = options.get("num_predict") if isinstance(options, dict) else None
    else:
        value = request_json.get("max_tokens")
    is_count = isinstance(value, int) and not isinstance(value, bool)
    return value if is_count and value > 0 else None


def fit_to_limit(thinking: str, content: str, limit: int | None) -> tuple[str, str, bool]:
    """Cut thinking then content to about `limit` tokens; True when something was cut."""
    if limit is None or estimate_tokens(thinking) + estimate_tokens(content) <= limit:
        return thinking, content, False
    budget = limit * 4
    return thinking[:budget], content[: max(0, budget - len(thinking))], True


def validate_chat_request(request_json: Any, api: Api) -> str | None:
    """The 400 message Ollama would give, or None when the request is acceptable."""
    if not isinstance(request_json, dict):
        return "invalid request body: expected a JSON object"
    if not isinstance(request_json.get("model"), str) or not request_json["model"]:
        return "model is required"
    messages = request_json.get("messages")
    if api == "openai" and (not isinstance(messages, list) or not messages):
        return "[] is too short - 'messages'"
    return None


def wants_stream(request_json: Mapping[str, Any], api: Api) -> bool:
    # The native API streams unless told `"stream": false`; the OpenAI API only when asked.
    if api == "native":
        return request_json.get("stream") is not False
    return request_json.get("stream") is True


def wants_usage_chunk(request_json: Mapping[str, Any]) -> bool:
    options = request_json.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


# --------------------------------------------------------------------------------------------
# Server state


@dataclass
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    payload: Any  # the parsed JSON body; None when absent or not JSON
    received_ns: int
    fault: Fault | None = None

    @property
    def api(self) -> Api | None:
        return CHAT_PATHS.get(self.path) or _LISTING_APIS.get(self.path)

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


_LISTING_APIS: dict[str, Api] = {"/api/tags": "native", "/v1/models": "openai"}


def _normalize_latency(latency_ms: float | tuple[float, float]) -> tuple[float, float]:
    low, high = latency_ms if isinstance(latency_ms, tuple) else (latency_ms, latency_ms)
    if low < 0 or high < low:
        raise ValueError(f"latency must be >= 0 and lo <= hi, got {latency_ms!r}")
    return float(low), float(high)


def _normalize_fault_mix(mix: FaultMix | None) -> tuple[tuple[Fault, ...], tuple[float, ...]]:
    mix = DEFAULT_FAULT_MIX if mix is None else mix
    pairs = list(mix.items()) if isinstance(mix, Mapping) else [(kind, 1.0) for kind in mix]
    kinds = tuple(Fault(kind) for kind, _ in pairs)
    weights = tuple(float(weight) for _, weight in pairs)
    if not kinds or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"a fault mix needs at least one positive weight, got {mix!r}")
    return kinds, weights


@dataclass
class _Settings:
    """What a test scripts; guarded by FakeLLMServer._lock."""

    models: tuple[str, ...]
    api_key: str | None
    responder: Responder
    latency_ms: tuple[float, float]
    fault_rate: float
    fault_kinds: tuple[Fault, ...]
    fault_weights: tuple[float, ...]
    timeout_fault_s: float
    thinking: str | None
    pending_faults: deque[Fault] = field(default_factory=deque)
    reject_json_schema: bool = False  # answer json_schema with llama-cpp-python's 500
    ping_comments: bool = False  # `: ping` SSE comment lines between events
    stream_usage: bool = True  # False: ignore stream_options.include_usage
    context_size: int | None = None  # 400 exceed_context_size_error above it; /props, /api/show
    answer_any_model: bool = False  # llama-server: one model loaded, any name answered
    hostile_bytes: int = 64 * 2**20  # size of the giant-body and no-newline answers
    hostile_interval_s: float = 0.05  # pace of the endless and dribbling answers
    num_ctx: int | None = None  # a Modelfile's `PARAMETER num_ctx`, in /api/show's parameters


@dataclass
class _Counters:
    """What a test observes; guarded by FakeLLMServer._lock."""

    served: int = 0
    by_endpoint: Counter[str] = field(default_factory=Counter)
    by_fault: Counter[Fault] = field(default_factory=Counter)
    requests: deque[RecordedRequest] = field(
        default_factory=lambda: deque(maxlen=MAX_RECORDED_REQUESTS)
    )


class FakeLLMServer:
    """A fake Ollama (native + OpenAI-compatible) HTTP server; every setter is thread-safe."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        models: Iterable[str] = DEFAULT_MODELS,
        api_key: str | None = None,
        responder: Responder = qa_responder,
        latency_ms: float | tuple[float, float] = 0.0,
        fault_rate: float = 0.0,
        fault_mix: FaultMix | None = None,
        seed: int = 0,
        timeout_fault_s: float = 30.0,
        thinking: str | None = None,
        verbose: bool = False,
    ) -> None:
        kinds, weights = _normalize_fault_mix(fault_mix)
        self._settings = _Settings(
            models=tuple(models),
            api_key=api_key,
            responder=responder,
            latency_ms=_normalize_latency(latency_ms),
            fault_rate=_checked_rate(fault_rate),
            fault_kinds=kinds,
            fault_weights=weights,
            timeout_fault_s=timeout_fault_s,
            thinking=thinking,
        )
        self._counters = _Counters()
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._host = host
        self._port = port
        self._verbose = verbose
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Listen and serve in a background thread; after stop() it restarts on the same port."""
        if self._httpd is not None:
            raise RuntimeError("the fake LLM server is already running")
        self._stopping = threading.Event()
        self._httpd = _HTTPServer((self._host, self._port), self)
        self._port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.01},  # stop() waits for one poll at most
            name=f"fake-llm-{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop promptly: wakes sleeping handlers and closes open connections."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.close_open_connections()
        httpd.server_close()
        thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    # -- scripting -------------------------------------------------------------------------

    def set_responder(self, responder: Responder) -> None:
        with self._lock:
            self._settings.responder = responder

    def set_latency(self, latency_ms: float | tuple[float, float]) -> None:
        """A fixed delay, or a (lo, hi) range drawn uniformly per request, in milliseconds."""
        latency = _normalize_latency(latency_ms)
        with self._lock:
            self._settings.latency_ms = latency

    def set_fault_rate(self, rate: float, mix: FaultMix | None = None) -> None:
        """Fail this share of chat requests, drawing the fault from `mix` (kinds or weights)."""
        kinds, weights = _normalize_fault_mix(mix)
        with self._lock:
            self._settings.fault_rate = _checked_rate(rate)
            self._settings.fault_kinds, self._settings.fault_weights = kinds, weights

    def fail_next(self, kind: Fault | str, count: int = 1) -> None:
        """Queue `count` faults for the next chat requests (before any random fault)."""
        fault = Fault(kind)
        with self._lock:
            self._settings.pending_faults.extend([fault] * count)

    def clear_faults(self) -> None:
        """Drop queued faults and switch random faults off."""
        with self._lock:
            self._settings.pending_faults.clear()
            self._settings.fault_rate = 0.0

    def set_models(self, models: Iterable[str]) -> None:
        with self._lock:
            self._settings.models = tuple(models)

    def set_api_key(self, api_key: str | None) -> None:
        with self._lock:
            self._settings.api_key = api_key

    def set_thinking(self, thinking: str | None) -> None:
        """A reasoning trace added to every answer (None: no trace unless the fault asks)."""
        with self._lock:
            self._settings.thinking = thinking

    def set_reject_json_schema(self, reject: bool = True) -> None:
        """Behave as llama-cpp-python: response_format json_schema gets a 500 validation body."""
        with self._lock:
            self._settings.reject_json_schema = reject

    def set_ping_comments(self, ping: bool = True) -> None:
        """Send `: ping` SSE comments between events, as llama-server does while busy."""
        with self._lock:
            self._settings.ping_comments = ping

    def set_stream_usage(self, report: bool) -> None:
        """False: never send a usage chunk in streams, whatever stream_options asks."""
        with self._lock:
            self._settings.stream_usage = report

    def set_answer_any_model(self, any_model: bool = True) -> None:
        """Answer whatever model name a chat asks for (llama.cpp's servers do)."""
        with self._lock:
            self._settings.answer_any_model = any_model

    def set_context_size(self, tokens: int | None) -> None:
        """Refuse prompts over `tokens` with llama-server's 400, and report the size."""
        with self._lock:
            self._settings.context_size = tokens

    def set_hostile(self, *, size_bytes: int | None = None,
                    interval_s: float | None = None) -> None:
        """Size of the giant and no-newline answers; pace of the endless and dribbling ones."""
        with self._lock:
            if size_bytes is not None:
                self._settings.hostile_bytes = size_bytes
            if interval_s is not None:
                self._settings.hostile_interval_s = interval_s
    def set_num_ctx(self, tokens: int | None) -> None:
        """/api/show lists `num_ctx tokens` in the model's parameters, as a Modelfile's
        PARAMETER line does (what Ollama runs the model with)."""
        with self._lock:
            self._settings.num_ctx = tokens

    def set_timeout_fault_s(self, seconds: float) -> None:
        with self._lock:
            self._settings.timeout_fault_s = seconds

    # -- observations ----------------------------------------------------------------------

    @property
    def requests_served(self) -> int:
        with self._lock:
            return self._counters.served

    @property
    def requests_by_endpoint(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counters.by_endpoint)

    @property
    def faults_injected(self) -> dict[Fault, int]:
        with self._lock:
            return dict(self._counters.by_fault)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._counters.requests)

    @property
    def last_request(self) -> RecordedRequest | None:
        with self._lock:
            return self._counters.requests[-1] if self._counters.requests else None

    @property
    def pending_faults(self) -> list[Fault]:
        with self._lock:
            return list(self._settings.pending_faults)

    @property
    def models(self) -> tuple[str, ...]:
        with self._lock:
            return self._settings.models

    def reset_counters(self) -> None:
        with self._lock:
            self._counters = _Counters()

    # -- used by the request handler ---------------------------------------------------------

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._counters.served += 1
            self._counters.by_endpoint[request.path] += 1
            self._counters.requests.append(request)

    def _is_authorized(self, authorization: str | None) -> bool:
        with self._lock:
            key = self._settings.api_key
        return key is None or authorization == f"Bearer {key}"

    def _draw_fault(self, request: RecordedRequest) -> Fault | None:
        with self._lock:
            settings = self._settings
            fault: Fault | None = None
            if settings.pending_faults:
                fault = settings.pending_faults.popleft()
            elif settings.fault_rate > 0 and self._rng.random() < settings.fault_rate:
                fault = self._rng.choices(settings.fault_kinds, settings.fault_weights)[0]
            if fault is not None:
                self._counters.by_fault[fault] += 1
            request.fault = fault
            return fault

    def _draw_latency_s(self) -> float:
        with self._lock:
            low, high = self._settings.latency_ms
            return (low if low == high else self._rng.uniform(low, high)) / 1000

    def _draw_completion_id(self) -> str:
        with self._lock:
            return f"chatcmpl-{self._rng.randrange(999)}"  # Ollama: rand.Intn(999)

    def _timeout_fault_s(self) -> float:
        with self._lock:
            return self._settings.timeout_fault_s

    def _sleep(self, seconds: float) -> bool:
        """Wait, but wake at once on stop(); False when the server is stopping."""
        return not self._stopping.wait(seconds) if seconds > 0 else not self._stopping.is_set()

    def _reports_stream_usage(self) -> bool:
        with self._lock:
            return self._settings.stream_usage

    def _pings(self) -> bool:
        with self._lock:
            return self._settings.ping_comments

    def _knows_model(self, name: str) -> bool:
        with self._lock:
            if self._settings.answer_any_model:
                return True
            known = {normalize_model_name(m) for m in self._settings.models}
        return normalize_model_name(name) in known

    def _compose_answer(
        self, request_json: dict[str, Any], api: Api, fault: Fault | None
    ) -> Answer:
        with self._lock:
            responder, thinking = self._settings.responder, self._settings.thinking or ""
        content, done_reason = apply_content_fault(responder(request_json, api), fault)
        if fault is Fault.THINKING and not thinking:
            thinking = DEFAULT_THINKING
        limit = token_limit(request_json, api)
        thinking, content, was_cut = fit_to_limit(thinking, content, limit)
        completion_tokens = max(1, estimate_tokens(thinking) + estimate_tokens(content))
        return Answer(
            content=content,
            thinking=thinking,
            done_reason="length" if was_cut else done_reason,
            prompt_tokens=_prompt_tokens(request_json),
            completion_tokens=min(completion_tokens, limit or completion_tokens),
        )


def _checked_rate(rate: float) -> float:
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"fault_rate must be within [0, 1], got {rate!r}")
    return float(rate)


# --------------------------------------------------------------------------------------------
# HTTP


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default backlog of 5 stalls bursts of concurrent clients
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fake: FakeLLMServer) -> None:
        self.fake = fake
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up (getfqdn), which can stall without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        """Wake handlers blocked on idle keep-alive connections so their threads end."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up (timeouts, drops, stop()) are expected; other errors are bugs.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so pooled clients reuse connections
    disable_nagle_algorithm = True  # small header/body/chunk writes must not wait for ACKs
    server: _HTTPServer

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.fake._verbose:
            super().log_message(format, *args)

    def send_response(self, code: int, message: str | None = None) -> None:
        # Like Go's net/http: a Date header but no Server header.
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    # -- routing -----------------------------------------------------------------------------

    def _dispatch(self) -> None:
        request = self._read_request()
        self.server.fake._record(request)
        route = (self.command, request.path)
        if request.path in CHAT_PATHS and self.command == "POST":
            self._handle_chat(request, CHAT_PATHS[request.path])
        elif route == ("GET", "/api/tags"):
            self._send(200, NATIVE_JSON, native_json_body(tags_payload(self.server.fake.models)))
        elif route == ("GET", "/v1/models"):
            payload = openai_models_payload(self.server.fake.models)
            self._send(200, OPENAI_JSON, openai_json_body(payload))
        elif route == ("GET", "/props") or route == ("GET", "/v1/props"):
            self._send_props()
        elif route == ("POST", "/api/show"):
            self._send_show(request)
        elif route == ("GET", "/api/version"):
            self._send(200, NATIVE_JSON, native_json_body({"version": "0.13.5"}))
        elif route == ("GET", "/"):
            self._send(200, "text/plain; charset=utf-8", b"Ollama is running")
        else:
            self._send(404, "text/plain", b"404 page not found")  # gin's default

    def _read_request(self) -> RecordedRequest:
        body = self._read_body()
        try:
            payload = json.loads(body) if body else None
        except (ValueError, UnicodeDecodeError):
            payload = None
        return RecordedRequest(
            method=self.command,
            path=self.path.split("?", 1)[0],
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
            payload=payload,
            received_ns=time.time_ns(),
        )

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked_body()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked_body(self) -> bytes:
        parts: list[bytes] = []
        while size := int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16):
            parts.append(self.rfile.read(size))
            self.rfile.readline()  # the CRLF after each chunk
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # trailers
        return b"".join(parts)

    # -- chat --------------------------------------------------------------------------------

    def _handle_chat(self, request: RecordedRequest, api: Api) -> None:
        fake = self.server.fake
        if not fake._is_authorized(request.authorization):
            self._send_error(api, 401, "unauthorized")
            return
        problem = validate_chat_request(request.payload, api)
        if problem is not None:
            self._send_error(api, 400, problem)
            return
        if self._refused_by_behaviour(request, api):
            return
        fault = fake._draw_fault(request)
        if fault is Fault.TIMEOUT and not fake._sleep(fake._timeout_fault_s()):
            self._abort_connection()
            return
        if not fake._sleep(fake._draw_latency_s()):
            self._abort_connection()
            return
        self._answer_chat(request, api, fault)

    def _refused_by_behaviour(self, request: RecordedRequest, api: Api) -> bool:
        """The scripted server behaviours that refuse a request before any fault is drawn."""
        fake = self.server.fake
        with fake._lock:
            reject_schema = fake._settings.reject_json_schema
            context = fake._settings.context_size
        payload: dict[str, Any] = request.payload
        response_format = payload.get("response_format")
        if (reject_schema and api == "openai" and isinstance(response_format, dict)
                and response_format.get("type") == "json_schema"):
            self._send_error(api, 500, JSON_SCHEMA_REJECTED)
            return True
        prompt = _prompt_tokens(payload)
        if context is not None and prompt > context:
            self._send_context_error(api, prompt, context)
            return True
        return False

    def _send_context_error(self, api: Api, prompt: int, context: int) -> None:
        message = "the request exceeds the available context size, try increasing it"
        if api == "native":
            self._send_error(api, 400, message)
            return
        error = {"code": 400, "message": message, "type": "exceed_context_size_error",
                 "n_prompt_tokens": prompt, "n_ctx": context}
        self._send(400, OPENAI_JSON, openai_json_body({"error": error}))

    def _send_props(self) -> None:
        with self.server.fake._lock:
            context = self.server.fake._settings.context_size
        if context is None:
            self._send(404, "text/plain", b"404 page not found")
            return
        props = {"default_generation_settings": {"n_ctx": context}, "total_slots": 1}
        self._send(200, OPENAI_JSON, openai_json_body(props))

    def _send_show(self, request: RecordedRequest) -> None:
        with self.server.fake._lock:
            context = self.server.fake._settings.context_size
            num_ctx = self.server.fake._settings.num_ctx
        payload = request.payload if isinstance(request.payload, dict) else {}
        name = str(payload.get("model") or payload.get("name") or "")
        if not self.server.fake._knows_model(name):
            self._send_error("native", 404, f"model '{name}' not found")
            return
        info = {"general.architecture": "llama", "llama.context_length": context or 131072}
        parameters = f"num_ctx                        {num_ctx}" if num_ctx else ""
        body = {"modelfile": "", "parameters": parameters, "template": "",
                "details": _model_details(name), "model_info": info}
        self._send(200, NATIVE_JSON, native_json_body(body))

    def _answer_chat(self, request: RecordedRequest, api: Api, fault: Fault | None) -> None:
        payload: dict[str, Any] = request.payload
        model: str = payload["model"]
        if fault is not None and fault in HTTP_ERROR_FAULTS:
            self._send_fault_error(api, fault, model)
        elif fault is Fault.BAD_GATEWAY:
            self._send(502, "text/html", BAD_GATEWAY_HTML)
        elif fault is Fault.DROP:
            self._abort_connection()
        elif fault in HOSTILE_FAULTS:
            self._send_hostile(api, fault, wants_stream(payload, api))
        elif not self.server.fake._knows_model(model):
            self._send_error(api, 404, f"model '{model}' not found")
        elif fault is Fault.STREAM_ERROR and not wants_stream(payload, api):
            self._send_error(api, 500, STREAM_ERROR_MESSAGE)  # Ollama's non-streaming failure
        elif (reply := self._reply_or_error(request, api, fault)) is None:
            return
        elif wants_stream(payload, api):
            self._stream_chat(api, reply, fault)
        else:
            self._send_chat_completion(api, reply, fault)

    def _reply_or_error(
        self, request: RecordedRequest, api: Api, fault: Fault | None
    ) -> Reply | None:
        """The reply, or None after answering 500 because the scripted responder raised."""
        fake = self.server.fake
        try:
            answer = fake._compose_answer(request.payload, api, fault)
        except Exception as exc:
            traceback.print_exc()  # a broken responder is a bug in the test: show it
            self._send_error(api, 500, f"fake responder failed: {exc!r}")
            return None
        return Reply(
            model=request.payload["model"],
            answer=answer,
            received_ns=request.received_ns,
            completion_id=fake._draw_completion_id(),
            include_usage=wants_usage_chunk(request.payload) and fake._reports_stream_usage(),
        )

    def _send_chat_completion(self, api: Api, reply: Reply, fault: Fault | None) -> None:
        if api == "native":
            body, content_type = native_json_body(native_completion(reply)), NATIVE_JSON
        else:
            body, content_type = openai_json_body(openai_completion(reply)), OPENAI_JSON
        if fault is Fault.TRUNCATED:
            self._send(200, content_type, body[: len(body) // 2])
        elif fault is Fault.DISCONNECT:
            self._send_then_disconnect(content_type, body)
        else:
            self._send(200, content_type, body)

    def _stream_chat(self, api: Api, reply: Reply, fault: Fault | None) -> None:
        if api == "native":
            content_type = NDJSON
            events, tail = native_stream_lines(reply), native_stream_tail(reply)
        else:
            content_type = SSE
            events, tail = openai_stream_events(reply), openai_stream_tail(reply)
        first_half = events[: max(1, len(events) // 2)]
        if api == "openai" and self.server.fake._pings():
            events = [piece for event in events for piece in (b": ping\n\n", event)]
        self._start_chunked(content_type)
        if fault is Fault.CUT_SHORT:
            # What llama.cpp's server sends for a request it dropped: the role, then the end.
            self._write_chunks(events[:1] if api == "native" else [
                _sse_event(go_json(_openai_chunk(reply, [
                    {"index": 0, "delta": {"role": "assistant", "content": ""},
                     "finish_reason": None}]))),
                _sse_event("[DONE]")])
        elif fault is Fault.TRUNCATED:
            self._write_chunks(first_half)
        elif fault is Fault.DISCONNECT:
            self._write_chunks(first_half)
            self._abort_connection()
            return
        elif fault is Fault.STREAM_ERROR:
            self._write_chunks([*first_half, stream_error_line(api)])
        else:
            self._write_chunks(events + tail)
        self._end_chunked()

    # -- hostile answers ---------------------------------------------------------------------

    def _send_hostile(self, api: Api, fault: Fault, stream: bool) -> None:
        """Answers a broken or malicious server could send; each ends when the client hangs
        up (a write then fails, which handle_error ignores) or the server stops."""
        fake = self.server.fake
        with fake._lock:
            size, interval = fake._settings.hostile_bytes, fake._settings.hostile_interval_s
        if fault is Fault.REDIRECT_FILE:
            self._send(301, "text/plain", b"", {"Location": "file:/etc/passwd"})
            return
        if fault is Fault.DEEP_JSON:
            body = deep_json_answer(api)
            if not stream:
                self._send(200, NATIVE_JSON if api == "native" else OPENAI_JSON, body)
                return
            self._start_chunked(NDJSON if api == "native" else SSE)
            self._write_chunks([body + b"\n" if api == "native" else _sse_event(body.decode())])
            self._end_chunked()
            return
        self._start_chunked(NDJSON if stream and api == "native" else
                            SSE if stream else NATIVE_JSON)
        self._write_chunks(self._hostile_pieces(api, fault, stream, size, interval))
        self._end_chunked()

    def _hostile_pieces(self, api: Api, fault: Fault, stream: bool, size: int,
                        interval: float) -> Iterator[bytes]:
        fake = self.server.fake
        if fault is Fault.GIANT_BODY and stream:
            line = content_line(api, "a" * (HOSTILE_PIECE // 4))
            for _ in range(size // len(line) + 1):
                yield line
        elif fault in (Fault.GIANT_BODY, Fault.NO_NEWLINE):
            yield b'{"model":"m","message":{"role":"assistant","content":"'
            for _ in range(size // HOSTILE_PIECE + 1):
                yield b"a" * HOSTILE_PIECE
            if fault is Fault.GIANT_BODY:
                yield b'"},"done":true}'
        elif fault is Fault.ENDLESS:
            while fake._sleep(interval):
                yield content_line(api, "and on ")
        else:  # DRIBBLE
            while fake._sleep(interval):
                yield b" "

    # -- errors ------------------------------------------------------------------------------

    def _send_fault_error(self, api: Api, fault: Fault, model: str) -> None:
        status, message = HTTP_ERROR_FAULTS[fault]
        headers = {"Retry-After": "1"} if fault is Fault.RATE_LIMIT_RETRY_AFTER else {}
        self._send_error(api, status, message.format(model=model), headers)

    def _send_error(
        self, api: Api, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        content_type, body = error_body(api, status, message)
        self._send(status, content_type, body, headers)

    # -- writing -----------------------------------------------------------------------------

    def _send(
        self,
        status: int,
        content_type: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_then_disconnect(self, content_type: str, body: bytes) -> None:
        # Announce the full length, send half of it: the client sees an incomplete body.
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self._abort_connection()

    def _start_chunked(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _write_chunks(self, chunks: Iterable[bytes]) -> None:
        for chunk in chunks:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    def _end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def _abort_connection(self) -> None:
        """Close the socket now, without (the rest of) a response."""
        self.close_connection = True
        with contextlib.suppress(OSError):  # the client is already gone
            self.connection.shutdown(socket.SHUT_RDWR)


# --------------------------------------------------------------------------------------------
# Standalone


def _parse_latency(text: str) -> float | tuple[float, float]:
    low, sep, high = text.partition("-")
    return (float(low), float(high)) if sep else float(low)


def _parse_fault_mix(text: str) -> dict[Fault, float]:
    """`rate_limit,server_error` or `rate_limit=3,server_error=1`."""
    mix: dict[Fault, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, weight = item.partition("=")
        mix[Fault(name.strip())] = float(weight) if sep else 1.0
    return mix


def _build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.helpers.fake_llm",
        description="Fake Ollama server (native /api and OpenAI-compatible /v1) for benchmarks.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument(
        "--latency-ms", type=_parse_latency, default=0.0, help="fixed (200) or a range (50-800)"
    )
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of failing chats")
    parser.add_argument(
        "--fault-mix",
        type=_parse_fault_mix,
        default=None,
        help=f"faults to draw, e.g. rate_limit=3,drop=1 (one of: {', '.join(Fault)})",
    )
    parser.add_argument("--api-key", default=None, help="require `Authorization: Bearer KEY`")
    parser.add_argument(
        "--models",
        type=lambda s: [m.strip() for m in s.split(",") if m.strip()],
        default=list(DEFAULT_MODELS),
    )
    parser.add_argument("--responder", choices=("qa", "echo"), default="qa")
    parser.add_argument("--thinking", default=None, help="reasoning trace added to every answer")
    parser.add_argument("--timeout-fault-s", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser


def _wait_for_stop_signal() -> None:
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Handle SIGINT too: shells start background jobs with SIGINT ignored.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, request_stop)
    while not stop.wait(0.5):  # a timed wait lets the handlers run on every platform
        pass


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_arg_parser().parse_args(argv)
    server = FakeLLMServer(
        host=args.host,
        port=args.port,
        models=args.models,
        api_key=args.api_key,
        responder=echo_responder if args.responder == "echo" else qa_responder,
        latency_ms=args.latency_ms,
        fault_rate=args.fault_rate,
        fault_mix=args.fault_mix,
        seed=args.seed,
        timeout_fault_s=args.timeout_fault_s,
        thinking=args.thinking,
        verbose=args.verbose,
    )
    server.start()
    print(server.base_url, flush=True)  # alone on the first line, so scripts can read it
    print(
        f"fake LLM server: models {', '.join(server.models)}; latency {args.latency_ms} ms; "
        f"fault rate {args.fault_rate}; Ctrl-C to stop",
        file=sys.stderr,
        flush=True,
    )
    try:
        _wait_for_stop_signal()
    finally:
        server.stop()
        faults = {str(kind): count for kind, count in server.faults_injected.items()}
        print(f"served {server.requests_served} requests; faults {faults}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
