"""Reading JSON records with their line numbers, and writing JSONL atomically.

A dataset file is either JSONL (one JSON value per line) or a JSON array of records. Reading never
stops at a bad line: each record comes back with the value or a reason a person can act on.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

RAW_LIMIT = 4096  # characters of a source record kept to show next to its error
MAX_LINE_BYTES = 8 * 1024 * 1024  # a longer JSONL line is refused before it is read whole
_BOM = "\ufeff"
_JSON_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class SourceRecord:
    line: int  # 1-based line where the record starts
    value: Any  # the parsed JSON value; None if `error` is set
    error: str | None
    raw: str  # the record's source text, truncated to RAW_LIMIT


def truncate(raw: str) -> str:
    return raw if len(raw) <= RAW_LIMIT else raw[:RAW_LIMIT] + "…"


def is_json_array(path: Path) -> bool:
    """Whether the file's first non-space character (after a BOM) is '['."""
    with path.open("rb") as file:
        head = file.read(4096).decode("utf-8", errors="ignore").lstrip(_BOM + " \t\r\n")
    return head.startswith("[")


def iter_json_records(path: Path, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[SourceRecord]:
    """The records of a JSONL file or of a JSON array file, blank lines skipped."""
    if is_json_array(path):
        return iter_json_array(path)
    return iter_jsonl(path, max_line_bytes)


def iter_jsonl(path: Path, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[SourceRecord]:
    """One record per non-blank line; handles a BOM, CRLF and invalid UTF-8 on single lines.
    A line longer than `max_line_bytes` is an error record, skipped without being held."""
    with path.open("rb") as file:
        for number, data in enumerate(iter(lambda: file.readline(max_line_bytes + 1), b""),
                                      start=1):
            if len(data) > max_line_bytes and not data.endswith(b"\n"):
                _skip_rest_of_line(file)
                yield SourceRecord(number, None, f"a line longer than {max_line_bytes:,} bytes",
                                   truncate(data[:RAW_LIMIT].decode("utf-8", errors="replace")))
                continue
            try:
                line = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raw = truncate(data.decode("utf-8", errors="replace").rstrip("\r\n"))
                reason = (
                    f"not valid UTF-8 text (byte 0x{data[exc.start]:02x} at column {exc.start + 1})"
                )
                yield SourceRecord(number, None, reason, raw)
                continue
            line = line.lstrip(_BOM).rstrip("\r\n")  # a BOM also appears mid-file after `cat`
            if line and not line.isspace():
                yield _parse_line(number, line)


def _skip_rest_of_line(file: BinaryIO) -> None:
    while (piece := file.readline(1 << 20)) and not piece.endswith(b"\n"):
        pass


def _parse_line(number: int, line: str) -> SourceRecord:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        reason = f"not valid JSON ({exc.msg} at column {exc.colno})"
        return SourceRecord(number, None, reason, truncate(line))
    except RecursionError:
        return SourceRecord(number, None, "JSON nested too deeply", truncate(line))
    return SourceRecord(number, value, None, truncate(line))


def iter_json_array(path: Path) -> Iterator[SourceRecord]:
    """The elements of a JSON array file. A syntax error ends the file with one error record."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ValueError(
            f"{path.name} is not UTF-8 text (line {line}); save it again as UTF-8."
        ) from exc
    lines = _LineCounter(text)
    pos = _skip_space(text, 0) + 1  # past the '['
    while True:
        pos = _skip_space(text, pos)
        if text.startswith("]", pos):
            return
        try:
            value, end = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            yield _syntax_error(lines, exc.pos, exc.msg, text[pos : pos + RAW_LIMIT])
            return
        yield SourceRecord(lines.line_at(pos), value, None, truncate(text[pos:end]))
        pos = _skip_space(text, end)
        if text.startswith(",", pos):
            pos += 1
        elif not text.startswith("]", pos):
            yield _syntax_error(lines, pos, "Expecting ',' or ']'", text[pos : pos + RAW_LIMIT])
            return


def _syntax_error(lines: _LineCounter, pos: int, message: str, raw: str) -> SourceRecord:
    line, column = lines.line_at(pos), lines.column_at(pos)
    reason = f"not valid JSON ({message} at column {column}); the rest of the file was not read"
    return SourceRecord(line, None, reason, truncate(raw))


def _skip_space(text: str, pos: int) -> int:
    match = _JSON_SPACE.match(text, pos)
    return match.end() if match else pos


class _LineCounter:
    """Line numbers of increasing positions in a text, counted incrementally (linear overall)."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._pos = 0
        self._line = 1

    def line_at(self, pos: int) -> int:
        if pos > self._pos:
            self._line += self._text.count("\n", self._pos, pos)
            self._pos = pos
        return self._line

    def column_at(self, pos: int) -> int:
        return pos - self._text.rfind("\n", 0, pos)


def write_jsonl(path: Path, examples: Iterable[list[dict[str, str]]]) -> int:
    """Write one `{"messages": [...]}` per line, atomically; return the number written.

    The file appears complete or not at all: lines go to a temporary file in the same folder,
    which then replaces `path`. UTF-8, non-ASCII written as is, "\\n" line ends on every OS.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    count = 0
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as file:
            for messages in examples:
                file.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
                count += 1
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return count
