"""Reading an LLM answer within limits (reading.py), parse failures as reasons, and the small
safety helpers: text made printable for a terminal, the plain-http key warning."""

from __future__ import annotations

import json
import random
import time
import tracemalloc
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from finetuneflow.core.generation import (
    AnswerUnreadableError,
    DeadlineError,
    LLMSettings,
    NetworkError,
    ResponseLimits,
    parse_answer,
    plain_http_key_warning,
)
from finetuneflow.core.generation.reading import BoundedReader, error_body
from finetuneflow.core.generation.wire import loads_answer, read_native_stream
from finetuneflow.core.terminal import printable

MB = 2**20
PIECE = 64 * 1024
ITEM_SCHEMA = {"type": "object", "required": ["question"],
               "properties": {"question": {"type": "string"}}}


def response_of(pieces: Iterator[bytes]) -> httpx.Response:
    """A response whose body arrives piece by piece, as from a socket, never held whole."""
    return httpx.Response(200, content=pieces)


def endless(piece: bytes, pause_s: float = 0.0) -> Iterator[bytes]:
    while True:
        if pause_s:
            time.sleep(pause_s)
        yield piece


def peak_memory_of(call: Callable[[], object]) -> tuple[int, BaseException | None]:
    """Peak bytes Python allocated while `call` ran, and what it raised."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    raised: BaseException | None = None
    try:
        call()
    except Exception as exc:
        raised = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, raised


# -- size limits ------------------------------------------------------------------------------


def test_a_body_over_the_limit_stops_at_the_limit_not_at_its_end() -> None:
    giant = (b"a" * PIECE for _ in range(64 * MB // PIECE))  # 64 MB on offer
    reader = BoundedReader(ResponseLimits(max_answer_bytes=1 * MB))

    peak, raised = peak_memory_of(lambda: reader.body(response_of(giant)))

    assert isinstance(raised, AnswerUnreadableError)
    assert str(raised).startswith("The server's answer passed 1 MB, the largest answer allowed")
    assert raised.reason == "answer over 1 MB" and raised.raw.startswith("aaaa")
    assert peak < 4 * MB, f"peak {peak / MB:.1f} MB while reading a 64 MB answer"
    print(f"\npeak while refusing a 64 MB body at a 1 MB limit: {peak / MB:.2f} MB")


def test_a_stream_without_newlines_stops_at_the_line_limit() -> None:
    reader = BoundedReader(ResponseLimits(max_line_bytes=64 * 1024))

    peak, raised = peak_memory_of(lambda: list(reader.lines(response_of(endless(b"x" * 1000)))))

    assert isinstance(raised, AnswerUnreadableError)
    assert "A line of the server's answer passed 64 KB, the longest line allowed" in str(raised)
    assert raised.reason == "a stream line over 64 KB"
    assert peak < 1 * MB
    print(f"\npeak while refusing an endless line at a 64 KB limit: {peak / 1024:.0f} KB")


def test_a_whole_line_over_the_limit_in_one_piece_is_refused_too() -> None:
    reader = BoundedReader(ResponseLimits(max_line_bytes=1024))
    with pytest.raises(AnswerUnreadableError, match="passed 1 KB"):
        list(reader.lines(response_of(iter([b"y" * 5000 + b"\n"]))))


def test_many_lines_count_towards_the_answer_limit() -> None:
    reader = BoundedReader(ResponseLimits(max_answer_bytes=1 * MB, max_line_bytes=1 * MB))
    with pytest.raises(AnswerUnreadableError, match="answer passed 1 MB"):
        list(reader.lines(response_of(endless(b'{"message":{"content":"ok"}}\n' * 100))))


def test_lines_are_split_the_same_wherever_the_pieces_break() -> None:
    text = "first\r\nsecond, with ü and 中文\n\nfourth\nno newline at the end"
    body = text.encode()
    rng = random.Random(7)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(body)), 6))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        lines = list(BoundedReader(ResponseLimits()).lines(response_of(iter(pieces))))
        assert lines == ["first", "second, with ü and 中文", "", "fourth",
                         "no newline at the end"]


def test_an_error_body_is_read_only_as_far_as_its_message() -> None:
    giant = (b"e" * PIECE for _ in range(64 * MB // PIECE))
    peak, _ = peak_memory_of(lambda: error_body(response_of(giant)))
    assert len(error_body(response_of(iter([b"short"])))) == 5
    assert peak < 1 * MB


# -- the deadline -----------------------------------------------------------------------------


@pytest.mark.parametrize("piece", [b'{"message":{"content":"more"}}\n', b" "],
                         ids=["endless lines", "dribble"])
def test_an_answer_that_never_ends_stops_at_the_deadline(piece: bytes) -> None:
    reader = BoundedReader(ResponseLimits(deadline_s=0.3))
    with pytest.raises(DeadlineError) as caught:
        list(reader.lines(response_of(endless(piece, pause_s=0.01))))
    assert "still answering after 1 s, the request deadline" in str(caught.value)
    assert caught.value.cause == "deadline passed" and not caught.value.retryable


def test_the_read_timeout_never_outlasts_the_deadline() -> None:
    reader = BoundedReader(ResponseLimits(deadline_s=5))
    assert reader.read_timeout(300) <= 5
    assert reader.read_timeout(2) == 2


# -- parse failures become reasons ------------------------------------------------------------


def test_json_nested_too_deep_is_an_unreadable_answer_not_a_crash() -> None:
    deep = b'{"message":' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    with pytest.raises(AnswerUnreadableError) as caught:
        loads_answer(deep)
    assert caught.value.reason == "answer nested too deeply to parse"
    assert "nested too deeply to parse" in str(caught.value)
    with pytest.raises(AnswerUnreadableError):
        read_native_stream([deep.decode()])


def test_a_cut_body_is_still_a_network_error_retried_as_before() -> None:
    with pytest.raises(NetworkError, match="cut or is not JSON"):
        loads_answer(b'{"message": {"content": "half')


def test_a_model_answer_nested_too_deep_is_a_reject_reason() -> None:
    outcome = parse_answer("[" * 10_000 + "]" * 10_000, ITEM_SCHEMA)
    assert outcome.items == []
    assert outcome.error == "the answer's JSON is nested too deeply to parse"
    fine = parse_answer(json.dumps([{"question": "q?"}]), ITEM_SCHEMA)
    assert fine.items == [{"question": "q?"}]


# -- text for a terminal ----------------------------------------------------------------------


def test_escape_sequences_and_controls_are_shown_not_run() -> None:
    hostile = "\x1b[2J\x1b]0;owned\x07red\x1b[31m\r\x00\x7f\x9b\u202eevil"
    shown = printable(hostile)
    assert shown == ("\\x1b[2J\\x1b]0;owned\\x07red\\x1b[31m\\x0d\\x00\\x7f\\x9b\\u202eevil")
    assert all(ch.isprintable() for ch in shown)


def test_newlines_tabs_and_ordinary_text_are_kept() -> None:
    text = "Line one\n\tindented — ü, 中文, emoji 🙂, Arabic مرحبا"
    assert printable(text) == text


def test_a_sequence_split_over_streamed_pieces_is_still_harmless() -> None:
    pieces = ["answer \x1b", "[31m", "red"]
    assert "\x1b" not in "".join(printable(p) for p in pieces)


# -- the API key over plain http ----------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://10.0.0.5:11434", "http://gpu-box.lan:8000/v1",
                                 "http://203.0.113.7"])
def test_a_key_over_plain_http_to_another_machine_is_warned_about(url: str) -> None:
    settings = LLMSettings(provider="openai", base_url=url, model="m")
    warning = plain_http_key_warning(settings, has_key=True)
    assert warning is not None and "\n" not in warning
    assert f"unencrypted (plain http) to {urlsplit(url).hostname}:" in warning


@pytest.mark.parametrize("url", ["http://127.0.0.1:11434", "http://127.9.8.7:8000",
                                 "http://localhost:11434", "http://[::1]:11434",
                                 "https://ollama.com", "https://10.0.0.5"])
def test_loopback_and_https_get_no_warning(url: str) -> None:
    settings = LLMSettings(provider="openai", base_url=url, model="m")
    assert plain_http_key_warning(settings, has_key=True) is None


def test_no_key_no_warning() -> None:
    settings = LLMSettings(provider="openai", base_url="http://10.0.0.5", model="m")
    assert plain_http_key_warning(settings, has_key=False) is None


def test_chat_prints_each_streamed_piece_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    from finetuneflow.cli.export import show_token

    for piece in ["Sure\x1b", "]0;owned\x07", "\x1b[31m red\n", "\tdone"]:
        show_token(piece)
    assert capsys.readouterr().out == "Sure\\x1b]0;owned\\x07\\x1b[31m red\n\tdone"
