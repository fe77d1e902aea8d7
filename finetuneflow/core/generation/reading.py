"""Reading an LLM server's answer within limits: size, line length and a wall-clock deadline.

httpx's `response.json()` and `iter_lines()` hold whatever the server sends: a 200 MB body, or
a stream that never sends a newline, grows memory without bound; a stream that never ends (or
dribbles a byte under the read timeout) never ends the request. Here every piece is counted as
it arrives and the request stops at the first limit passed, before the memory is spent.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Protocol

import httpx

from finetuneflow.core.generation.errors import AnswerUnreadableError, DeadlineError
from finetuneflow.core.generation.settings import MB, ResponseLimits
from finetuneflow.core.progress import Cancelled
from finetuneflow.core.units import format_bytes, format_duration

ERROR_BODY_BYTES = 64 * 1024  # an error page's start is enough for its message
RAW_KEPT_CHARS = 2000  # of an answer over a limit, the start kept for review


class Cancellable(Protocol):
    @property
    def cancelled(self) -> bool: ...


class BoundedReader:
    """Reads one response; the deadline runs from the reader's creation (the request's start)."""

    def __init__(self, limits: ResponseLimits, cancel: Cancellable | None = None) -> None:
        self.limits = limits
        self.cancel = cancel
        self.deadline = time.monotonic() + limits.deadline_s
        self._head = bytearray()  # the first bytes of the answer, kept for a reject's raw text

    def read_timeout(self, read_timeout: float) -> float:
        """The read timeout of this request: never past the deadline, even while no byte
        comes (between pieces the deadline itself is checked)."""
        return max(0.001, min(read_timeout, self.deadline - time.monotonic()))

    def pieces(self, response: httpx.Response) -> Iterator[bytes]:
        """The body as it comes, counted; raises at the first limit passed, or Cancelled."""
        total = 0
        for piece in response.iter_bytes():
            total += len(piece)
            if len(self._head) < RAW_KEPT_CHARS:
                self._head += piece[: RAW_KEPT_CHARS - len(self._head)]
            if total > self.limits.max_answer_bytes:
                raise self._too_large()
            if self.expired():
                raise self.late()
            if self.cancel is not None and self.cancel.cancelled:
                raise Cancelled()
            yield piece

    def body(self, response: httpx.Response) -> bytes:
        return b"".join(self.pieces(response))

    def lines(self, response: httpx.Response) -> Iterator[str]:
        """The body's lines (\\n or \\r\\n), none longer than the line limit."""
        pending: list[bytes] = []  # the start of a line not ended yet, in pieces
        pending_size = 0
        for piece in self.pieces(response):
            *ended, rest = piece.split(b"\n")
            for line in ended:
                if pending:
                    line = b"".join([*pending, line])
                    pending, pending_size = [], 0
                yield self._line_text(line)
            if rest:
                pending.append(rest)
                pending_size += len(rest)
                if pending_size > self.limits.max_line_bytes:
                    raise self._line_too_long()
        if pending:
            yield self._line_text(b"".join(pending))

    def _line_text(self, line: bytes) -> str:
        if len(line) > self.limits.max_line_bytes:
            raise self._line_too_long()
        return line.removesuffix(b"\r").decode("utf-8", errors="replace")

    def _raw(self) -> str:
        return bytes(self._head).decode("utf-8", errors="replace")

    def _too_large(self) -> AnswerUnreadableError:
        size = _size(self.limits.max_answer_bytes)
        return AnswerUnreadableError(
            f"The server's answer passed {size}, the largest answer allowed: check the server "
            "and its model, or raise the largest-answer setting if such answers are expected.",
            reason=f"answer over {size}", raw=self._raw())

    def _line_too_long(self) -> AnswerUnreadableError:
        size = _size(self.limits.max_line_bytes)
        return AnswerUnreadableError(
            f"A line of the server's answer passed {size}, the longest line allowed: check "
            "the server, or raise the longest-line setting if such lines are expected.",
            reason=f"a stream line over {size}", raw=self._raw())

    def expired(self) -> bool:
        return time.monotonic() > self.deadline

    def late(self) -> DeadlineError:
        took = format_duration(self.limits.deadline_s)
        return DeadlineError(
            f"The server was still answering after {took}, the request deadline: check the "
            "server, or raise the deadline setting for slow models.",
            cause="deadline passed")


def error_body(response: httpx.Response) -> bytes:
    """The start of an error response's body; the rest is never read."""
    kept = bytearray()
    for piece in response.iter_bytes():
        kept += piece[: ERROR_BODY_BYTES - len(kept)]
        if len(kept) >= ERROR_BODY_BYTES:
            break
    return bytes(kept)


def _size(limit: int) -> str:
    return f"{limit // MB} MB" if limit % MB == 0 else format_bytes(limit)
