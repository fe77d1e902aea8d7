"""Request bodies and response parsing for Ollama's native API and the OpenAI-compatible API.

Pure functions over JSON: the HTTP side lives in client.py. Every shape here follows what
Ollama sends (see the fake server in tests/helpers/fake_llm.py for byte-exact examples).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from finetuneflow.core.generation.errors import (
    AnswerUnreadableError,
    BadResponseError,
    NetworkError,
    StreamCutShortError,
)
from finetuneflow.core.generation.settings import LLMSettings
from finetuneflow.core.terminal import printable

Message = dict[str, str]

# A thinking model served without a reasoning parser puts its trace inline at the start.
_LEADING_THINK = re.compile(r"^\s*<think>.*?</think>\s*", re.DOTALL)
_UNCLOSED_THINK = re.compile(r"^\s*<think>(?!.*</think>)", re.DOTALL)


@dataclass(frozen=True)
class Completion:
    """One answer as the server gave it; token counts are None when the server did not say."""

    content: str
    done_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None


def strip_leading_think(text: str) -> str:
    """Drop a leading <think>…</think> block; a trace that never closed leaves no answer."""
    if _UNCLOSED_THINK.match(text):
        return ""
    return _LEADING_THINK.sub("", text, count=1)


# -- requests -------------------------------------------------------------------------------


def chat_body(
    settings: LLMSettings,
    messages: list[Message],
    *,
    schema: Mapping[str, Any] | None,
    schema_name: str,
    stream: bool,
    max_tokens: int | None,
    temperature: float,
    mode: str = "json_schema",
) -> dict[str, Any]:
    """`mode`: json_schema (the schema enforced), json_object (any JSON) or text (the schema
    written into the last message, for servers that take neither)."""
    if schema is not None and mode != "json_schema":
        messages = _with_schema_in_prompt(messages, schema) if mode == "text" else messages
    if settings.resolved_api == "native":
        body = _native_body(settings, messages, schema if mode == "json_schema" else None,
                            stream, max_tokens, temperature)
        if schema is not None and mode == "json_object":
            body["format"] = "json"
        return body
    body = _openai_body(settings, messages, schema if mode == "json_schema" else None,
                        schema_name, stream, max_tokens, temperature)
    if schema is not None and mode == "json_object":
        body["response_format"] = {"type": "json_object"}
    return body


def _with_schema_in_prompt(messages: list[Message], schema: Mapping[str, Any]) -> list[Message]:
    note = ("\n\nAnswer with one JSON object and nothing else. It must match this JSON "
            f"schema:\n{json.dumps(schema, ensure_ascii=False)}")
    if not messages:
        return [{"role": "user", "content": note.strip()}]
    last = dict(messages[-1])
    last["content"] = last.get("content", "") + note
    return [*messages[:-1], last]


def _native_body(
    settings: LLMSettings,
    messages: list[Message],
    schema: Mapping[str, Any] | None,
    stream: bool,
    max_tokens: int | None,
    temperature: float,
) -> dict[str, Any]:
    options: dict[str, Any] = {"temperature": temperature}
    if max_tokens is not None:
        options["num_predict"] = max_tokens
    body: dict[str, Any] = {
        "model": settings.resolved_model,
        "messages": messages,
        "stream": stream,  # the native API streams unless told otherwise
        "options": options,
    }
    if schema is not None:
        body["format"] = dict(schema)
    if settings.think is not None:
        body["think"] = settings.think
    return body


def _openai_body(
    settings: LLMSettings,
    messages: list[Message],
    schema: Mapping[str, Any] | None,
    schema_name: str,
    stream: bool,
    max_tokens: int | None,
    temperature: float,
) -> dict[str, Any]:
    # Ollama forces temperature 1.0 when it is omitted, and ignores max_completion_tokens.
    body: dict[str, Any] = {
        "model": settings.resolved_model,
        "messages": messages,
        "temperature": temperature,
        "stream": stream,
    }
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if stream:
        body["stream_options"] = {"include_usage": True}
    if schema is not None:
        json_schema = {"name": schema_name, "schema": dict(schema)}
        body["response_format"] = {"type": "json_schema", "json_schema": json_schema}
    if isinstance(settings.think, str):
        body["reasoning_effort"] = settings.think
    elif settings.think is False:
        body["reasoning_effort"] = "none"
    return body


# -- whole responses ------------------------------------------------------------------------


def loads_answer(body: bytes | str) -> Any:
    """JSON of an answer. A body that is not JSON was cut (retried as a dropped connection);
    one too deep or too large for the parser is unreadable, and never a crash."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:  # cut short by a proxy or a dying server
        raise NetworkError("The server's answer was cut or is not JSON.") from exc
    except (RecursionError, MemoryError) as exc:
        raise unreadable(body, exc) from exc


def unreadable(body: bytes | str, error: BaseException) -> AnswerUnreadableError:
    """The error for JSON the parser gave up on: nested too deep, or too large to hold."""
    text = body if isinstance(body, str) else body[:2000].decode("utf-8", errors="replace")
    if isinstance(error, RecursionError):
        why = "nested too deeply to parse"
        message = (f"The server's answer is JSON {why}: check the server and its model; "
                   "the chunk is rejected.")
    else:
        why = "too large to parse in memory"
        message = (f"The server's answer is {why}: lower the largest-answer setting, or "
                   "check the server.")
    return AnswerUnreadableError(message, reason=f"answer {why}", raw=text[:2000])


def parse_completion(api: str, data: Any) -> Completion:
    """A non-streaming answer; the thinking trace (message.thinking / reasoning) is ignored."""
    if not isinstance(data, dict):
        raise BadResponseError("The server's answer is not a JSON object.")
    if "error" in data:
        raise NetworkError(f"The server reported an error: {error_text(data)}")
    return _native_completion(data) if api == "native" else _openai_completion(data)


def _native_completion(data: dict[str, Any]) -> Completion:
    message = data.get("message")
    if not isinstance(message, dict):
        raise BadResponseError("The server's answer has no message (is this an Ollama server?).")
    return Completion(
        content=_text(message.get("content")),
        done_reason=_optional_str(data.get("done_reason")),
        prompt_tokens=_count(data.get("prompt_eval_count")),
        completion_tokens=_count(data.get("eval_count")),
    )


def _openai_completion(data: dict[str, Any]) -> Completion:
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise BadResponseError("The server's answer has no choices (is this an OpenAI API?).")
    message = choices[0].get("message")
    content = _text(message.get("content")) if isinstance(message, dict) else ""
    prompt_tokens, completion_tokens = _openai_usage(data.get("usage"))
    return Completion(
        content=content,
        done_reason=_optional_str(choices[0].get("finish_reason")),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )


# -- streams --------------------------------------------------------------------------------


def read_native_stream(lines: Iterable[str]) -> Completion:
    """NDJSON: content pieces, then one `done: true` object with the usage counts."""
    pieces: list[str] = []
    for line in lines:
        if not line.strip():
            continue
        event = _json_line(line)
        if "error" in event:  # a failure after the 200 status was sent
            raise NetworkError(f"The server failed while answering: {error_text(event)}")
        message = event.get("message")
        if isinstance(message, dict):
            pieces.append(_text(message.get("content")))
        if event.get("done") is True:
            return Completion(
                content="".join(pieces),
                done_reason=_optional_str(event.get("done_reason")),
                prompt_tokens=_count(event.get("prompt_eval_count")),
                completion_tokens=_count(event.get("eval_count")),
            )
    # The body ended without the final object: a dropped connection, retried as such.
    raise NetworkError("The answer stream ended before the server finished (no final message).",
                       cause="stream cut short")


def read_sse_stream(lines: Iterable[str]) -> Completion:
    """SSE: `data: {chunk}` events, a finish_reason, an optional usage chunk, then [DONE]."""
    pieces: list[str] = []
    finish_reason: str | None = None
    usage: tuple[int | None, int | None] = (None, None)
    finished = False
    for line in lines:
        if not line.startswith("data:"):
            continue  # blank separators, `: ping` comments, `event:` lines
        data = line[5:].strip()
        if data == "[DONE]":
            finished = True
            break
        event = _json_line(data)
        if "error" in event:
            raise NetworkError(f"The server failed while answering: {error_text(event)}")
        if event.get("usage") is not None:
            usage = _openai_usage(event.get("usage"))
        for choice in event.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                pieces.append(_text(delta.get("content")))
            finish_reason = _optional_str(choice.get("finish_reason")) or finish_reason
    if not finished and finish_reason is None:  # the body ended: a dropped connection
        raise NetworkError("The answer stream ended before the server finished (no [DONE]).",
                           cause="stream cut short")
    if finish_reason is None:
        # llama.cpp's server ends a request it dropped with the role delta and [DONE] alone;
        # llama-cpp-python's drops the running request whenever another one arrives.
        raise StreamCutShortError(
            "The answer stream ended without a finish_reason: the server cut the answer short "
            "(a server that answers one request at a time, such as llama-cpp-python's, does so "
            "when the next request arrives: set the concurrency to 1).")
    return Completion("".join(pieces), finish_reason, *usage)


# Words of a server that found the request itself invalid, whatever status it sent (a
# pydantic validation message in llama-cpp-python's 500, "invalid_request_error" in OpenAI's).
_INVALID_REQUEST = re.compile(
    r"validation error|invalid[_ ]request|input should be|unsupported|not supported"
    r"|unknown (?:field|parameter)|extra (?:inputs|fields) are not permitted",
    re.IGNORECASE,
)


def context_sizes_from_body(body: bytes) -> tuple[int | None, int | None] | None:
    """(prompt tokens, context tokens) of llama-server's exceed_context_size_error, or of a
    message about the context size; None for any other error."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and error.get("type") == "exceed_context_size_error":
        return _count(error.get("n_prompt_tokens")), _count(error.get("n_ctx"))
    text = error_text(data).lower()
    if "context size" in text or "context length" in text or "context window" in text:
        return None, None
    return None


def says_request_invalid(body: bytes) -> bool:
    return bool(_INVALID_REQUEST.search(body.decode("utf-8", errors="replace")))


def _json_line(text: str) -> dict[str, Any]:
    try:
        event = json.loads(text)
    except ValueError as exc:
        raise NetworkError("The answer stream was cut or garbled (a line is not JSON).") from exc
    except (RecursionError, MemoryError) as exc:
        raise unreadable(text, exc) from exc
    if not isinstance(event, dict):
        raise NetworkError("The answer stream holds something other than JSON objects.")
    return event


# -- error bodies ---------------------------------------------------------------------------


def error_text(data: Any, fallback: str = "") -> str:
    """`error` as a string, or the `message` of an error object (OpenAI shape); a server's
    escape sequences are shown, never sent to a terminal."""
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, str):
        return printable(error)
    message = error.get("message") if isinstance(error, dict) else None
    if isinstance(message, str):
        return printable(message)
    return printable(fallback)


def error_text_from_body(body: bytes) -> str:
    """The server's words on one line: a JSON error's message, an HTML page's title."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return _one_line(printable(_html_title(text) or text))[:300]
    return _one_line(error_text(data, fallback=text))[:300]


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")


def _html_title(text: str) -> str | None:
    """A proxy's HTML error page: its title, or its text without tags."""
    if not text.lstrip().startswith("<"):
        return None
    match = _TITLE.search(text)
    return match.group(1) if match else _TAG.sub(" ", text)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def signin_url_from_body(body: bytes) -> str | None:
    """A local Ollama's 401 for a cloud model names the page where the machine signs in."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    url = data.get("signin_url") if isinstance(data, dict) else None
    return url if isinstance(url, str) and url.startswith("https://") else None


# -- small helpers --------------------------------------------------------------------------


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _openai_usage(usage: Any) -> tuple[int | None, int | None]:
    if not isinstance(usage, dict):
        return None, None
    return _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
