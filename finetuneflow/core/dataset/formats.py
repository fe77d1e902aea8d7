"""Import of existing datasets into the canonical chat format.

Canonical: one `{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}` per
line (what TRL's SFTTrainer takes). Accepted inputs, as JSONL or as a JSON array of records:

- messages:          {"messages": [{"role": ..., "content": ...}, ...]}
- prompt-completion: {"prompt": str, "completion": str}, or both lists of turns (conversational)
- alpaca:            {"instruction": str, "input": str, "output": str, "system": str}, input and
                     system optional
- sharegpt:          {"conversations": [{"from": "human"|"gpt"|"system", "value": str}, ...]}
- csv:               a header row, then one example per row (see `CsvColumns`)

Every example must have a user and an assistant turn with non-empty text. Bad records are kept
with their line number and a reason; nothing is dropped silently. Blank lines are skipped.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple, TextIO, TypeGuard

from finetuneflow.core.dataset.jsonl import (
    MAX_LINE_BYTES,
    SourceRecord,
    iter_json_records,
    truncate,
    write_jsonl,
)

__all__ = [
    "FORMATS",
    "CsvColumns",
    "ImportResult",
    "ImportedRow",
    "detect_format",
    "read_dataset",
    "write_jsonl",
]

FORMATS = ("messages", "prompt-completion", "alpaca", "sharegpt", "csv")
ROLES = ("system", "user", "assistant")
JSON_SUFFIXES = (".jsonl", ".json", ".ndjson", ".jsonlines")
CSV_SUFFIXES = (".csv", ".tsv")
DETECTION_SAMPLE = 50  # records looked at to recognise a format

Messages = list[dict[str, str]]

_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "model": "assistant",
    "system": "system",
}
_SURROGATE = re.compile("[\ud800-\udfff]")  # from "\ud83d"-style escapes; UTF-8 cannot hold them


class ImportedRow(NamedTuple):  # a tuple: a million-line file makes a million of them
    line: int  # 1-based line in the source file where the record starts
    messages: Messages | None  # the example in canonical form; None when rejected
    error: str | None  # why the record was rejected; None when accepted
    raw: str  # source text of a rejected record (truncated); "" for accepted ones


@dataclass
class ImportResult:
    format: str
    rows: list[ImportedRow] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(row.error is None for row in self.rows)

    @property
    def rejected(self) -> int:
        return len(self.rows) - self.accepted

    @property
    def examples(self) -> list[Messages]:
        return [row.messages for row in self.rows if row.messages is not None]

    def errors(self, limit: int = 20) -> list[str]:
        """The first `limit` rejections as "line N: reason"."""
        rejected = (row for row in self.rows if row.error is not None)
        return [f"line {row.line}: {row.error}" for row in islice(rejected, limit)]

    def summary(self, limit: int = 10) -> str:
        """A few lines for the user: counts, then the first rejections."""
        text = f"{self.accepted} examples imported ({self.format}), {self.rejected} rejected."
        lines = [text, *self.errors(limit)]
        if self.rejected > limit:
            lines.append(f"… and {self.rejected - limit} more rejected lines.")
        return "\n".join(lines)


@dataclass(frozen=True)
class CsvColumns:
    """Which CSV columns make an example (names as in the header, case and spaces ignored).

    `input` is an optional second part of the prompt (Alpaca's input, Dolly's context): it is
    joined after the prompt with a blank line when not empty.
    """

    prompt: str
    completion: str
    system: str | None = None
    input: str | None = None


class _Invalid(Exception):
    """A record that cannot become an example; the message is shown to the user."""


# --- public entry points ----------------------------------------------------------------------


def detect_format(path: Path, max_line_bytes: int = MAX_LINE_BYTES) -> str:
    """Recognise a dataset file's format from its extension and its first records.

    Raises ValueError with an explanation when the file type is unsupported, the file has no
    readable record, or its records match no known format.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix not in JSON_SUFFIXES and not _starts_like_json(path):
        raise ValueError(
            f"{path.name}: unsupported dataset file type. Use JSONL (.jsonl), a JSON list of "
            f"records (.json) or CSV (.csv)."
        )
    votes: Counter[str] = Counter()
    first_error: SourceRecord | None = None
    first_value: Any = None
    for record in islice(iter_json_records(path, max_line_bytes), DETECTION_SAMPLE):
        if record.error is not None:
            first_error = first_error or record
            continue
        first_value = record.value if first_value is None else first_value
        kind = _format_of(record.value)
        if kind is not None:
            votes[kind] += 1
    if votes:
        return max(FORMATS, key=lambda kind: (votes[kind], -FORMATS.index(kind)))
    raise ValueError(_unrecognised(path, first_value, first_error))


def read_dataset(
    path: Path,
    *,
    format: str = "auto",
    system_prompt: str | None = None,
    csv_columns: CsvColumns | None = None,
) -> ImportResult:
    """Read a dataset file into canonical examples, one `ImportedRow` per record.

    `format` is one of FORMATS or "auto" (see `detect_format`). A non-empty `system_prompt` is
    put first in every example that has no system turn; an example's own system turn is kept
    as it is. `csv_columns` maps CSV columns; without it the usual header names are recognised.
    """
    format, rows = iter_dataset(path, format=format, system_prompt=system_prompt,
                                csv_columns=csv_columns)
    return ImportResult(format, list(rows))


def iter_dataset(
    path: Path,
    *,
    format: str = "auto",
    system_prompt: str | None = None,
    csv_columns: CsvColumns | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> tuple[str, Iterator[ImportedRow]]:
    """`read_dataset` as a stream: the format, and the rows one by one (a file of a million
    lines is never held whole, nor is a JSON array). A JSONL line, or an element of a JSON array,
    longer than `max_line_bytes` is a rejected row."""
    path = Path(path)
    if format == "auto":
        format = detect_format(path, max_line_bytes)
    elif format not in FORMATS:
        raise ValueError(
            f"Unknown dataset format {format!r}; expected one of {', '.join(FORMATS)}."
        )
    if format == "csv":
        rows = _read_csv(path, csv_columns, max_line_bytes)
    else:
        convert = _CONVERTERS[format]
        rows = (_convert(record, convert)
                for record in iter_json_records(path, max_line_bytes))
    if system_prompt and system_prompt.strip():
        rows = (_with_system_prompt(row, system_prompt) for row in rows)
    return format, rows


# --- JSON formats -----------------------------------------------------------------------------


def _convert(record: SourceRecord, convert: Callable[[Any], Messages]) -> ImportedRow:
    if record.error is not None:
        return ImportedRow(record.line, None, record.error, record.raw)
    try:
        if not isinstance(record.value, dict):
            raise _Invalid(f"expected a JSON object {{...}}, found {_json_kind(record.value)}")
        messages = convert(record.value)
    except _Invalid as exc:
        return ImportedRow(record.line, None, str(exc), record.raw)
    return ImportedRow(record.line, messages, None, "")


def _from_messages(record: dict[str, Any]) -> Messages:
    return _conversation(_turns(_required(record, "messages"), "messages"))


def _from_prompt_completion(record: dict[str, Any]) -> Messages:
    prompt, completion = _required(record, "prompt"), _required(record, "completion")
    if isinstance(prompt, str) and isinstance(completion, str):
        return [_turn("user", prompt, "'prompt'"), _turn("assistant", completion, "'completion'")]
    if isinstance(prompt, list) and isinstance(completion, list):
        return _conversation(_turns(prompt, "prompt") + _turns(completion, "completion"))
    raise _Invalid("'prompt' and 'completion' must both be text or both be lists of turns")


def _from_alpaca(record: dict[str, Any]) -> Messages:
    instruction, output = _text(record, "instruction"), _text(record, "output")
    extra, system = _optional_text(record, "input"), _optional_text(record, "system")
    user = f"{instruction}\n\n{extra}" if extra else instruction
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, {"role": "user", "content": user}, {"role": "assistant", "content": output}]


def _from_sharegpt(record: dict[str, Any]) -> Messages:
    turns = record.get("conversations", record.get("messages"))
    if turns is None:
        raise _Invalid("no 'conversations' field")
    if not isinstance(turns, list):
        raise _Invalid("'conversations' must be a list of turns")
    messages = [_sharegpt_turn(turn, number) for number, turn in enumerate(turns, start=1)]
    system = _optional_text(record, "system")
    if system and not any(m["role"] == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": system})
    return _conversation(messages)


def _sharegpt_turn(turn: Any, number: int) -> dict[str, str]:
    if not isinstance(turn, dict):
        raise _Invalid(f"turn {number} is not an object with 'from' and 'value'")
    speaker = turn.get("from", turn.get("role"))
    if speaker is None:
        raise _Invalid(f"turn {number} has no 'from' (who speaks: human, gpt or system)")
    role = _SHAREGPT_ROLES.get(str(speaker).lower())
    if role is None:
        raise _Invalid(
            f"turn {number}: speaker {speaker!r} is not supported (expected human, gpt or system)"
        )
    value = turn.get("value", turn.get("content"))
    return _turn(role, value, f"the 'value' of turn {number}")


_CONVERTERS: dict[str, Callable[[dict[str, Any]], Messages]] = {
    "messages": _from_messages,
    "prompt-completion": _from_prompt_completion,
    "alpaca": _from_alpaca,
    "sharegpt": _from_sharegpt,
}


# --- validation helpers -----------------------------------------------------------------------


def _turns(value: Any, name: str) -> Messages:
    """Validate a list of {"role", "content"} turns; extra keys are dropped."""
    if not isinstance(value, list):
        raise _Invalid(f"'{name}' must be a list of turns")
    turns = []
    for number, turn in enumerate(value, start=1):
        if not isinstance(turn, dict) or "role" not in turn:
            raise _Invalid(f"turn {number} of '{name}' is not an object with 'role' and 'content'")
        role, content = turn["role"], turn.get("content")
        if role not in ROLES:
            raise _Invalid(f"turn {number} has role {role!r}; expected system, user or assistant")
        if not _is_text(content):  # the reason is worded only for a bad turn: imports are long
            _content(content, f"the 'content' of turn {number}")
        turns.append({"role": role, "content": content})
    return turns


def _turn(role: str, content: Any, what: str) -> dict[str, str]:
    return {"role": role, "content": _content(content, what)}


def _is_text(value: Any) -> TypeGuard[str]:
    """Non-blank text that UTF-8 can hold (ASCII cannot hold a surrogate: no search)."""
    return (isinstance(value, str) and bool(value) and not value.isspace()
            and (value.isascii() or not _SURROGATE.search(value)))


def _content(value: Any, what: str) -> str:
    """`value` if `_is_text`; else the reason, with `what` naming it."""
    if _is_text(value):
        return value
    if not isinstance(value, str):
        raise _Invalid(f"{what} must be text" if value is not None else f"{what} is missing")
    if not value or value.isspace():
        raise _Invalid(f"{what} is empty")
    raise _Invalid(f"{what} contains an invalid character (a lone UTF-16 surrogate)")


def _conversation(messages: Messages) -> Messages:
    roles = {message["role"] for message in messages}
    if "user" not in roles:
        raise _Invalid("no user turn")
    if "assistant" not in roles:
        raise _Invalid("no assistant turn")
    return messages


def _required(record: dict[str, Any], name: str) -> Any:
    if name not in record:
        raise _Invalid(f"no '{name}' field")
    return record[name]


def _text(record: dict[str, Any], name: str) -> str:
    """A required, non-empty text field."""
    return _content(_required(record, name), f"'{name}'")


def _optional_text(record: dict[str, Any], name: str) -> str:
    """The field's text, stripped; "" when absent, null or blank."""
    value = record.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Invalid(f"'{name}' must be text")
    return value.strip()


def _with_system_prompt(row: ImportedRow, system_prompt: str) -> ImportedRow:
    if row.messages is None or any(m["role"] == "system" for m in row.messages):
        return row
    messages = [{"role": "system", "content": system_prompt}, *row.messages]
    return ImportedRow(row.line, messages, None, row.raw)


# --- format detection -------------------------------------------------------------------------


def _format_of(value: Any) -> str | None:
    """The format a single record looks like, or None."""
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("conversations"), list):
        return "sharegpt"
    turns = value.get("messages")
    if isinstance(turns, list):
        uses_from = bool(turns) and isinstance(turns[0], dict) and "from" in turns[0]
        return "sharegpt" if uses_from else "messages"
    if "prompt" in value and "completion" in value:
        return "prompt-completion"
    if "instruction" in value and "output" in value:
        return "alpaca"
    return None


def _unrecognised(path: Path, first_value: Any, first_error: SourceRecord | None) -> str:
    if first_value is None and first_error is None:
        return f"{path.name} is empty: it holds no records."
    if first_value is None and first_error is not None:
        hint = ""
        if first_error.raw.strip() in ("{", "{}"):
            hint = " It looks like one JSON object over many lines: use a list [...] or JSONL."
        return (
            f"{path.name} has no readable record in its first lines "
            f"(line {first_error.line}: {first_error.error}).{hint}"
        )
    found = (
        f"the first record has the fields {', '.join(map(repr, first_value))}"
        if isinstance(first_value, dict)
        else f"the first record is {_json_kind(first_value)}, not an object"
    )
    return (
        f"Could not recognise the format of {path.name}: {found}. Expected 'messages' (chat), "
        f"'prompt' and 'completion', Alpaca ('instruction', 'input', 'output') or ShareGPT "
        f"('conversations'). Rename the fields or choose the format explicitly."
    )


def _starts_like_json(path: Path) -> bool:
    with path.open("rb") as file:
        head = file.read(4096).decode("utf-8", errors="ignore").lstrip("\ufeff \t\r\n")
    return head[:1] in ("{", "[")


def _json_kind(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return json.dumps(value)  # null, true, false
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return "text" if isinstance(value, str) else "a number"


# --- CSV --------------------------------------------------------------------------------------

_PROMPT_NAMES = ("prompt", "question", "instruction", "query", "input", "user", "human")
_COMPLETION_NAMES = ("completion", "answer", "response", "output", "assistant", "gpt", "target")
_INPUT_NAMES = ("input", "context")
_SYSTEM_NAMES = ("system", "system_prompt", "system prompt")


@dataclass(frozen=True)
class _CsvLayout:
    """Column indexes of an example's parts, and the header for messages."""

    header: list[str]
    prompt: int
    completion: int
    input: int | None = None
    system: int | None = None

    def cell(self, row: list[str], index: int | None) -> str:
        return row[index].strip() if index is not None else ""

    def label(self, index: int) -> str:
        return f"the {self.header[index].strip()!r} column"


def _read_csv(path: Path, columns: CsvColumns | None,
              max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[ImportedRow]:
    """The rows of a CSV file, read line by line: a line or a field longer than
    `max_line_bytes`, or a record the csv module cannot parse, ends the file with an error
    row."""
    _check_utf8(path)
    csv.field_size_limit(max(max_line_bytes, _CSV_FIELD_LIMIT))  # process-wide; only we read CSV
    with path.open(encoding="utf-8-sig", newline="") as file:
        lines = _RecordingLines(file, max_line_bytes)
        line = 1
        try:
            first = lines.first_text_line()
            delimiter = "\t" if path.suffix.lower() == ".tsv" else _guess_delimiter(first)
            reader = csv.reader(lines, delimiter=delimiter)
            header = next((row for row in reader if any(cell.strip() for cell in row)), None)
            if header is None:
                return
            layout = _csv_layout(path, header, columns)
            lines.take()
            line = reader.line_num + 1
            for row in reader:
                raw = lines.take()
                if any(cell.strip() for cell in row):
                    yield _csv_row(line, row, layout, raw)
                line = reader.line_num + 1
        except (csv.Error, _LineTooLong) as error:
            yield ImportedRow(line, None, f"{_csv_error(error, max_line_bytes)}; the rest of the "
                              "file was not read", truncate(lines.take()))


_CSV_FIELD_LIMIT = 131_072  # the csv module's default


class _LineTooLong(Exception):
    pass


def _csv_error(error: Exception, limit: int) -> str:
    if isinstance(error, _LineTooLong) or "field larger than field limit" in str(error):
        return f"a line or field longer than {limit:,} characters"
    return f"not valid CSV ({error})"


def _csv_row(line: int, row: list[str], layout: _CsvLayout, raw: str) -> ImportedRow:
    width = len(layout.header)
    try:
        if len(row) < width or any(cell.strip() for cell in row[width:]):
            fields = f"{len(row)} field" + ("" if len(row) == 1 else "s")
            raise _Invalid(
                f"has {fields} but the header has {width} "
                f"(a missing or extra separator, or a field that should be quoted?)"
            )
        messages = _csv_messages(row, layout)
    except _Invalid as exc:
        return ImportedRow(line, None, str(exc), truncate(raw.rstrip("\r\n")))
    return ImportedRow(line, messages, None, "")


def _csv_messages(row: list[str], layout: _CsvLayout) -> Messages:
    prompt = layout.cell(row, layout.prompt)
    extra = layout.cell(row, layout.input)
    system = layout.cell(row, layout.system)
    user = f"{prompt}\n\n{extra}" if prompt and extra else prompt
    completion = layout.cell(row, layout.completion)
    messages = [{"role": "system", "content": system}] if system else []
    messages.append(_turn("user", user, layout.label(layout.prompt)))
    messages.append(_turn("assistant", completion, layout.label(layout.completion)))
    return messages


def _csv_layout(path: Path, header: list[str], columns: CsvColumns | None) -> _CsvLayout:
    """Where the example's parts are: from `columns`, or from well-known header names."""
    names = [name.strip().lower() for name in header]
    if columns is not None:

        def find(wanted: str | None) -> int | None:
            return _column(path, names, header, wanted) if wanted else None

        return _CsvLayout(
            header,
            _column(path, names, header, columns.prompt),
            _column(path, names, header, columns.completion),
            find(columns.input),
            find(columns.system),
        )
    prompt = _first_known(names, _PROMPT_NAMES)
    completion = _first_known(names, _COMPLETION_NAMES, exclude=(prompt,))
    if prompt is None or completion is None:
        shown = ", ".join(repr(name) for name in header)
        example = f"CsvColumns(prompt={header[0]!r}, completion={header[-1]!r})"
        raise ValueError(
            f"Could not tell which columns of {path.name} hold the prompt and the answer; its "
            f"header is: {shown}. Choose them explicitly, e.g. {example}."
        )
    used = (prompt, completion)
    return _CsvLayout(
        header,
        prompt,
        completion,
        _first_known(names, _INPUT_NAMES, exclude=used),
        _first_known(names, _SYSTEM_NAMES, exclude=used),
    )


def _column(path: Path, names: list[str], header: list[str], wanted: str) -> int:
    key = wanted.strip().lower()
    if key not in names:
        shown = ", ".join(repr(name) for name in header)
        raise ValueError(f"Column {wanted!r} is not in the header of {path.name} ({shown}).")
    return names.index(key)


def _first_known(
    names: list[str], candidates: tuple[str, ...], exclude: tuple[int | None, ...] = ()
) -> int | None:
    for candidate in candidates:
        if candidate in names and names.index(candidate) not in exclude:
            return names.index(candidate)
    return None


def _check_utf8(path: Path) -> None:
    """ValueError, naming the line, when the file is not UTF-8 (read a piece at a time)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 1
    with path.open("rb") as file:
        while True:
            data = file.read(1 << 20)
            try:
                decoder.decode(data, final=not data)
            except UnicodeDecodeError as exc:
                line = lines + exc.object.count(b"\n", 0, exc.start)
                raise ValueError(
                    f"{path.name} is not UTF-8 text (line {line}). Save it again as UTF-8 "
                    f"(in Excel: 'CSV UTF-8')."
                ) from exc
            if not data:
                return
            lines += data.count(b"\n")


def _guess_delimiter(first_line: str) -> str:
    """',' unless the first line has more ';' or tabs (spreadsheets in some locales)."""
    return max((",", ";", "\t"), key=first_line.count)


class _RecordingLines:
    """Feeds csv.reader line by line and keeps what it consumed, to show a record's source.
    The file splits on \\n, \\r\\n and \\r only (opened with newline="")."""

    def __init__(self, file: TextIO, limit: int) -> None:
        self._file = file
        self._limit = limit
        self._ahead: list[str] = []  # read to find the first line, not yet given out
        self._consumed: list[str] = []

    def first_text_line(self) -> str:
        """The first line that is not blank (kept to be read again), or ""."""
        while line := self._read():
            self._ahead.append(line)
            if line.strip():
                return line
        return ""

    def _read(self) -> str:
        line = self._file.readline(self._limit + 1)
        if len(line) > self._limit and not line.endswith(("\n", "\r")):
            raise _LineTooLong
        return line

    def __iter__(self) -> _RecordingLines:
        return self

    def __next__(self) -> str:
        line = self._ahead.pop(0) if self._ahead else self._read()
        if not line:
            raise StopIteration
        self._consumed.append(line)
        return line

    def take(self) -> str:
        """The text consumed since the last call."""
        taken = "".join(self._consumed)
        self._consumed.clear()
        return taken
