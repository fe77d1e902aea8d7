"""Reading JSON records with their line numbers, and writing JSONL atomically.

A dataset file is either JSONL (one JSON value per line) or a JSON array of records. Reading never
stops at a bad line: each record comes back with the value or a reason a person can act on.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import orjson

RAW_LIMIT = 4096  # characters of a source record kept to show next to its error
MAX_LINE_BYTES = 8 * 1024 * 1024  # a longer JSONL line is refused before it is read whole
ARRAY_PIECE_BYTES = 1 << 20  # a JSON array file is read in pieces of this size
_BOM = "\ufeff"
_JSON_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


class SourceRecord(NamedTuple):  # a tuple: a million-line file makes a million of them
    line: int  # 1-based line where the record starts
    value: Any  # the parsed JSON value; None if `error` is set
    error: str | None
    source: str | bytes  # the record's text; a JSONL line parsed straight from its bytes keeps them

    @property
    def raw(self) -> str:
        """The record's text to show with an error, truncated to RAW_LIMIT (decoded only then:
        most records have no error)."""
        source = self.source
        return truncate(source if isinstance(source, str)
                        else source.decode("utf-8").rstrip("\r\n"))


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
        return iter_json_array(path, max_line_bytes)
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
            try:  # the usual line: valid UTF-8 holding one JSON value, read as it is
                record: SourceRecord | None = SourceRecord(number, orjson.loads(data), None, data)
            except orjson.JSONDecodeError:
                record = _read_line(number, data)
            if record is not None:
                yield record


def _read_line(number: int, data: bytes) -> SourceRecord | None:
    """A line that orjson did not read: blank (None), with a BOM, not UTF-8, or not JSON
    that orjson reads. `json` then reads it, as the import always has (NaN, a lone UTF-16
    surrogate in an escape), or words the reason."""
    try:
        line = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raw = truncate(data.decode("utf-8", errors="replace").rstrip("\r\n"))
        reason = f"not valid UTF-8 text (byte 0x{data[exc.start]:02x} at column {exc.start + 1})"
        return SourceRecord(number, None, reason, raw)
    line = line.lstrip(_BOM).rstrip("\r\n")  # a BOM also appears mid-file after `cat`
    return _parse_line(number, line) if line and not line.isspace() else None


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


def iter_json_array(path: Path, max_element_bytes: int = MAX_LINE_BYTES
                    ) -> Iterator[SourceRecord]:
    """The elements of a JSON array file, read a piece at a time, so that only the element
    being read is held (a 275 MB array read whole peaked at 851 MB). An element longer than
    `max_element_bytes` is an error record; a syntax error, text that is not UTF-8, or a long
    element still unfinished at that length ends the file with one."""
    with path.open("rb") as file:
        text = _ArrayText(file)
        try:
            yield from _array_elements(text, max_element_bytes)
        except _ArrayStop as stop:
            yield stop.record


class _ArrayStop(Exception):
    """The rest of the file cannot be read: its error record."""

    def __init__(self, record: SourceRecord) -> None:
        self.record = record


def _array_elements(text: _ArrayText, limit: int) -> Iterator[SourceRecord]:
    pos = text.skip_space(0) + 1  # past the '['
    while True:
        pos = text.skip_space(pos)
        if text.at(pos, "]"):
            return
        pos, value, end = text.value_at(pos, limit)
        if end - pos > limit:  # read whole within a piece: rejected, and the next one follows
            yield SourceRecord(text.line_at(pos), None, _too_long(limit),
                               truncate(text.text[pos:pos + RAW_LIMIT]))
        else:
            yield SourceRecord(text.line_at(pos), value, None, truncate(text.text[pos:end]))
        pos = text.skip_space(end)
        if text.at(pos, ","):
            pos += 1
        elif not text.at(pos, "]"):
            raise text.stop(pos, "not valid JSON (Expecting ',' or ']' at column "
                            f"{text.column_at(pos)})")


class _ArrayText:
    """The decoded text of a JSON array file from the element being read on; positions are
    in `text`, which drops what was read each time more is read."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.text = ""
        self._eof = False
        self._line = 1  # of position `_counted`
        self._counted = 0
        self._not_utf8: SourceRecord | None = None  # met in the last piece, after its text
        self._started = False  # a piece was read (the BOM can only lead the first)

    def more(self, pos: int) -> int:
        """Read the next piece, dropping the text before `pos`; `pos`'s new place (0)."""
        if self._not_utf8 is not None:
            raise _ArrayStop(self._not_utf8)
        first, self._started = not self._started, True
        self.line_at(pos)
        self.text, self._counted = self.text[pos:], 0
        data = self._file.read(ARRAY_PIECE_BYTES)
        self._eof = not data
        try:
            self.text += self._decoder.decode(data, final=self._eof)
        except UnicodeDecodeError as error:  # the text before the byte is still read
            self.text += error.object[:error.start].decode("utf-8-sig" if first else "utf-8")
            self._not_utf8 = SourceRecord(
                self._line + self.text.count("\n", self._counted), None,
                f"not UTF-8 text (byte 0x{error.object[error.start]:02x}); the rest of the file "
                "was not read: save it again as UTF-8", "")
        return 0

    def skip_space(self, pos: int) -> int:
        """The next non-space position, at or after `pos` (len(text) at the end of the file)."""
        while (pos := _skip_space(self.text, pos)) >= len(self.text) and not self._eof:
            pos = self.more(pos)
        return pos

    def at(self, pos: int, char: str) -> bool:
        if pos >= len(self.text):
            raise self.stop(pos, "not valid JSON (the file ends inside the list)")
        return self.text.startswith(char, pos)

    def value_at(self, pos: int, limit: int) -> tuple[int, Any, int]:
        """(start, value, end) of the JSON value at `pos`, reading more until it is whole. A
        value counts as whole once a ',' or ']' follows it: a piece may end inside a number
        ("-1" of "-1.5e10") or after it, before its comma."""
        while True:
            too_long = len(self.text) - pos > limit
            try:
                value, end = _DECODER.raw_decode(self.text, pos)
                after = _skip_space(self.text, end)
                if self._eof or too_long or self.text[after:after + 1] in (",", "]"):
                    return pos, value, end
            except json.JSONDecodeError as error:
                if self._eof or not _cut_short(error, len(self.text)):
                    raise self.stop(error.pos, f"not valid JSON ({error.msg} at column "
                                    f"{self.column_at(error.pos)})") from None
            except RecursionError:
                raise self.stop(pos, "JSON nested too deeply") from None
            if too_long:
                raise self.stop(pos, _too_long(limit))
            pos = self.more(pos)

    def stop(self, pos: int, reason: str) -> _ArrayStop:
        return _ArrayStop(SourceRecord(self.line_at(pos), None,
                                       f"{reason}; the rest of the file was not read",
                                       truncate(self.text[pos:pos + RAW_LIMIT])))

    def line_at(self, pos: int) -> int:
        if pos > self._counted:
            self._line += self.text.count("\n", self._counted, pos)
            self._counted = pos
        return self._line

    def column_at(self, pos: int) -> int:
        return pos - self.text.rfind("\n", 0, pos)


def _cut_short(error: json.JSONDecodeError, length: int) -> bool:
    """Whether the error may come from the text read so far ending inside the value: an open
    string, or an error within the longest word ("-Infinity") of its end."""
    return error.pos >= length - 10 or error.msg.startswith("Unterminated string")


def _too_long(limit: int) -> str:
    return f"an element longer than {limit:,} characters"


def _skip_space(text: str, pos: int) -> int:
    match = _JSON_SPACE.match(text, pos)
    return match.end() if match else pos


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
