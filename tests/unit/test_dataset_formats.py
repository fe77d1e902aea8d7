"""Dataset import: every format with good and bad records, detection, CSV mapping, writing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from finetuneflow.core.dataset import jsonl
from finetuneflow.core.dataset.formats import (
    FORMATS,
    CsvColumns,
    ImportResult,
    detect_format,
    iter_dataset,
    read_dataset,
    write_jsonl,
)
from finetuneflow.core.dataset.jsonl import RAW_LIMIT, iter_json_array

CHAT = [
    {"role": "user", "content": "What is LoRA?"},
    {"role": "assistant", "content": "A low-rank adapter."},
]


def write_lines(path: Path, lines: list[str], *, newline: str = "\n", bom: bool = False) -> Path:
    data = newline.join(lines) + newline
    path.write_bytes(("\ufeff" if bom else "").encode() + data.encode("utf-8"))
    return path


def dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def errors_by_line(result: ImportResult) -> dict[int, str]:
    return {row.line: row.error for row in result.rows if row.error is not None}


# --- messages ---------------------------------------------------------------------------------


def test_messages_good_and_bad_lines(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "chat.jsonl",
        [
            dumps({"messages": CHAT}),  # 1
            dumps({"messages": [{"role": "system", "content": "Be brief."}, *CHAT], "id": 7}),
            "",  # 3: blank, skipped
            '{"messages": [{"role": "user", "content": "hi"} {"role": "assistant"}]}',  # 4
            dumps({"messages": [CHAT[0]]}),  # 5
            dumps({"messages": [CHAT[0], {"role": "assistant", "content": 42}]}),  # 6
            dumps({"messages": [CHAT[0], {"role": "bot", "content": "x"}]}),  # 7
            dumps({"messages": [CHAT[0], {"role": "assistant", "content": "  "}]}),  # 8
            dumps({"messages": "hello"}),  # 9
            dumps({"text": "no messages here"}),  # 10
            dumps(["a", "list"]),  # 11
            "   ",  # 12: whitespace only, skipped
            dumps({"messages": [{"role": "assistant", "content": "Hi"}]}),  # 13
            json.dumps({"messages": [CHAT[0], {"role": "assistant", "content": "\ud83d"}]}),  # 14
        ],
    )
    result = read_dataset(path)
    assert result.format == "messages"
    assert (result.accepted, result.rejected) == (2, 10)
    assert result.examples[0] == CHAT
    assert result.examples[1][0] == {"role": "system", "content": "Be brief."}
    assert errors_by_line(result) == {
        4: "not valid JSON (Expecting ',' delimiter at column 49)",
        5: "no assistant turn",
        6: "the 'content' of turn 2 must be text",
        7: "turn 2 has role 'bot'; expected system, user or assistant",
        8: "the 'content' of turn 2 is empty",
        9: "'messages' must be a list of turns",
        10: "no 'messages' field",
        11: "expected a JSON object {...}, found a list",
        13: "no user turn",
        14: "the 'content' of turn 2 contains an invalid character (a lone UTF-16 surrogate)",
    }
    rejected = {row.line: row for row in result.rows if row.error}
    assert rejected[4].raw.startswith('{"messages": [{"role": "user"')
    assert all(row.raw == "" for row in result.rows if row.error is None)
    assert result.errors(2) == [
        "line 4: not valid JSON (Expecting ',' delimiter at column 49)",
        "line 5: no assistant turn",
    ]
    summary = result.summary(limit=3)
    assert summary.splitlines()[0] == "2 examples imported (messages), 10 rejected."
    assert summary.splitlines()[-1] == "… and 7 more rejected lines."


def test_bom_crlf_and_invalid_utf8_lines(tmp_path: Path) -> None:
    good = dumps({"messages": CHAT})
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(
        b"\xef\xbb\xbf"
        + good.encode()
        + b"\r\n\r\n"
        + b'{"messages": "caf\xe9"}\r\n'
        + good.encode()
    )
    result = read_dataset(path)
    assert result.accepted == 2
    assert errors_by_line(result) == {3: "not valid UTF-8 text (byte 0xe9 at column 18)"}


def test_lines_read_by_orjson_or_json_give_what_json_gives(tmp_path: Path) -> None:
    """Most lines are read by orjson straight from their bytes; the rest (NaN, a lone
    surrogate escape, a BOM) by `json`, as before."""
    lines = [
        json.dumps({"messages": CHAT, "score": 0.5, "n": -12, "ok": True, "none": None}),
        '{"text": "caf\\u00e9 \u00e9 \\ud83d\\ude00"}',  # escapes, a surrogate pair
        '{"a": NaN, "b": Infinity}',
        '{"a": "\\ud800"}',  # a lone surrogate, escaped
        "\ufeff" + json.dumps({"messages": CHAT}),
        json.dumps({"messages": []}),
    ]
    path = write_lines(tmp_path / "mixed.jsonl", lines, newline="\r\n")
    records = list(jsonl.iter_jsonl(path))
    assert [record.line for record in records] == list(range(1, len(lines) + 1))
    assert all(record.error is None for record in records), records
    for record, line in zip(records, lines, strict=True):
        expected = json.loads(line.lstrip("\ufeff"))
        assert json.dumps(record.value) == json.dumps(expected)  # NaN != NaN as a value
    assert records[-1].raw == lines[-1]  # the text shown if the record is rejected
    result = read_dataset(path)
    assert {row.line: row.raw for row in result.rows if row.error}[6] == lines[-1]


def test_long_raw_records_are_truncated(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "long.jsonl", [dumps({"messages": [], "pad": "x" * 10_000})])
    [row] = read_dataset(path, format="messages").rows
    assert row.error == "no user turn"
    assert len(row.raw) == RAW_LIMIT + 1 and row.raw.endswith("…")


# --- prompt-completion --------------------------------------------------------------------------


def test_prompt_completion_plain_and_conversational(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "pc.jsonl",
        [
            dumps({"prompt": "What is LoRA?", "completion": "A low-rank adapter."}),
            dumps({"prompt": [CHAT[0]], "completion": [CHAT[1]]}),
            dumps({"prompt": "Only a prompt"}),
            dumps({"prompt": "Mixed", "completion": [CHAT[1]]}),
            dumps({"prompt": [CHAT[0]], "completion": [CHAT[0]]}),
            dumps({"prompt": "", "completion": "x"}),
        ],
    )
    result = read_dataset(path)
    assert result.format == "prompt-completion"
    assert result.examples == [CHAT, CHAT]
    assert errors_by_line(result) == {
        3: "no 'completion' field",
        4: "'prompt' and 'completion' must both be text or both be lists of turns",
        5: "no assistant turn",
        6: "'prompt' is empty",
    }


# --- Alpaca -------------------------------------------------------------------------------------


def test_alpaca(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "alpaca.jsonl",
        [
            dumps({"instruction": "Summarise.", "input": "A long text.", "output": "Short."}),
            dumps({"instruction": "Say hi.", "input": "", "output": "Hi!", "system": "Be nice."}),
            dumps({"instruction": "Say hi.", "output": "Hi!"}),
            dumps({"instruction": "No output"}),
            dumps({"instruction": "Bad input", "input": ["x"], "output": "y"}),
        ],
    )
    result = read_dataset(path)
    assert result.format == "alpaca"
    assert result.examples == [
        [
            {"role": "user", "content": "Summarise.\n\nA long text."},
            {"role": "assistant", "content": "Short."},
        ],
        [
            {"role": "system", "content": "Be nice."},
            {"role": "user", "content": "Say hi."},
            {"role": "assistant", "content": "Hi!"},
        ],
        [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi!"}],
    ]
    assert errors_by_line(result) == {4: "no 'output' field", 5: "'input' must be text"}


# --- ShareGPT -----------------------------------------------------------------------------------


def test_sharegpt(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "sharegpt.jsonl",
        [
            dumps(
                {
                    "conversations": [
                        {"from": "system", "value": "Be brief."},
                        {"from": "human", "value": "What is LoRA?"},
                        {"from": "gpt", "value": "A low-rank adapter."},
                    ]
                }
            ),
            dumps(
                {
                    "system": "From the top level.",
                    "conversations": [
                        {"from": "user", "value": "What is LoRA?"},
                        {"from": "assistant", "value": "A low-rank adapter."},
                    ],
                }
            ),
            dumps({"conversations": [{"from": "human", "value": "Hi"}]}),
            dumps({"conversations": [{"from": "tool", "value": "{}"}]}),
            dumps({"conversations": [{"value": "who?"}]}),
        ],
    )
    result = read_dataset(path)
    assert result.format == "sharegpt"
    assert result.examples == [
        [{"role": "system", "content": "Be brief."}, *CHAT],
        [{"role": "system", "content": "From the top level."}, *CHAT],
    ]
    assert errors_by_line(result) == {
        3: "no assistant turn",
        4: "turn 1: speaker 'tool' is not supported (expected human, gpt or system)",
        5: "turn 1 has no 'from' (who speaks: human, gpt or system)",
    }


# --- JSON array files ---------------------------------------------------------------------------


def test_json_array_file_with_line_numbers(tmp_path: Path) -> None:
    records = [{"messages": CHAT}, {"messages": [CHAT[0]]}, {"messages": CHAT}]
    path = tmp_path / "data.json"
    path.write_text("\ufeff" + json.dumps(records, indent=2), encoding="utf-8")
    result = read_dataset(path)
    assert result.format == "messages"
    assert result.accepted == 2
    starts = [row.line for row in result.rows]
    assert starts == [2, 14, 22]  # where each record's "{" is in the indented file
    assert errors_by_line(result) == {14: "no assistant turn"}


def test_broken_json_array_keeps_the_records_before_the_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    good = json.dumps({"messages": CHAT})
    path.write_text(f'[\n{good},\n{good},\n{{"messages": oops}}\n]', encoding="utf-8")
    result = read_dataset(path)
    assert result.accepted == 2
    [(line, error)] = errors_by_line(result).items()
    assert line == 4
    assert error.startswith("not valid JSON (Expecting value at column 14)")
    assert "the rest of the file was not read" in error


def _array_records(path: Path) -> list[tuple[int, object, str | None]]:
    return [(record.line, record.value, record.error) for record in iter_json_array(path)]


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 64])
def test_a_json_array_read_in_pieces_gives_what_a_whole_read_gives(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece: int) -> None:
    """Numbers and words that a piece cuts, strings with brackets and escapes, Unicode that a
    piece cuts in the middle of its bytes, CRLF and blank lines."""
    elements = [json.dumps({"messages": CHAT}, indent=1), "12345678", "-1.5e10", "true", "null",
                json.dumps({"text": "a ] , [ { \" } \\ b", "ok": "Grüße, 東京 🚀"},
                           ensure_ascii=False), "[[1, [2, [3]]], {}]", '"tail"']
    text = "\ufeff [ \r\n" + ",\r\n\r\n".join(elements) + "\r\n]\r\n"
    path = tmp_path / "pieces.json"
    path.write_bytes(text.encode("utf-8"))
    whole = _array_records(path)
    assert [value for _line, value, _error in whole] == [json.loads(e) for e in elements]
    starts = [text.index(element) for element in elements]
    assert [line for line, _value, _error in whole] == [
        text.count("\n", 0, start) + 1 for start in starts]
    monkeypatch.setattr(jsonl, "ARRAY_PIECE_BYTES", piece)
    assert _array_records(path) == whole


def test_a_json_array_stops_with_a_reason_and_keeps_what_came_before(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonl, "ARRAY_PIECE_BYTES", 256)
    good = json.dumps({"messages": CHAT})
    cases = {  # name: text, the reason
        "longer.json": (f"[{good},\n" + json.dumps({"messages": "x" * 5000}) + "]",
                        "an element longer than 1,000 characters"),
        "latin1.json": (f"[{good},\n" + '{"text": "Caf\xe9"}]', "not UTF-8 text (byte 0xe9)"),
        "cut.json": (f"[{good},\n{good}", "not valid JSON (the file ends inside the list)"),
        "deep.json": (f"[{good},\n" + "[" * 100_000 + "]" * 100_000 + "]",
                      "JSON nested too deeply"),
        "broken.json": (f"[{good},\n" + '{"messages": oops}, ' + good * 20 + "]",
                        "not valid JSON (Expecting value at column 14)"),
    }
    for name, (text, reason) in cases.items():
        path = tmp_path / name
        path.write_bytes(text.encode("latin-1"))
        *read, last = iter_json_array(path, max_element_bytes=1_000)
        kept = 2 if name == "cut.json" else 1
        assert [record.value for record in read] == [{"messages": CHAT}] * kept, name
        assert last.error == reason + "; the rest of the file was not read" + (
            ": save it again as UTF-8" if name == "latin1.json" else ""), name
        assert last.line == 2, name


def test_a_json_array_with_a_bom_and_a_bad_byte_in_its_first_piece(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf[" + json.dumps({"messages": CHAT}).encode() +
                     b',\n{"text": "Caf\xe9"}]')
    first, last = iter_json_array(path)
    assert (first.line, first.value) == (1, {"messages": CHAT})
    assert (last.line, last.error) == (2, "not UTF-8 text (byte 0xe9); the rest of the file "
                                          "was not read: save it again as UTF-8")


def test_a_long_element_read_whole_is_rejected_and_the_next_follows(tmp_path: Path) -> None:
    good = json.dumps({"messages": CHAT})
    path = tmp_path / "long.json"
    path.write_text(f"[{good},\n" + json.dumps({"messages": "x" * 5000}) + f",\n{good}]",
                    encoding="utf-8")
    records = list(iter_json_array(path, max_element_bytes=1_000))
    assert [(record.line, record.error) for record in records] == [
        (1, None), (2, "an element longer than 1,000 characters"), (3, None)]


# --- detection ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"messages": CHAT}, "messages"),
        ({"messages": [{"from": "human", "value": "x"}]}, "sharegpt"),
        ({"conversations": [{"from": "human", "value": "x"}]}, "sharegpt"),
        ({"prompt": "p", "completion": "c"}, "prompt-completion"),
        ({"instruction": "i", "input": "", "output": "o"}, "alpaca"),
    ],
)
def test_detect_format(tmp_path: Path, record: dict[str, object], expected: str) -> None:
    path = write_lines(tmp_path / "data.jsonl", ["not json at all", dumps(record)])
    assert detect_format(path) == expected


def test_detect_format_by_majority_and_by_content(tmp_path: Path) -> None:
    alpaca = dumps({"instruction": "i", "output": "o"})
    path = write_lines(tmp_path / "data.txt", [dumps({"messages": CHAT}), alpaca, alpaca])
    assert detect_format(path) == "alpaca"  # an unknown extension, but the content is JSON
    assert detect_format(tmp_path / "sheet.CSV") == "csv"  # by extension alone


def test_detect_format_explains_what_it_cannot_read(tmp_path: Path) -> None:
    unknown = write_lines(tmp_path / "qa.jsonl", [dumps({"q": "x", "a": "y"})])
    with pytest.raises(ValueError, match=r"the first record has the fields 'q', 'a'"):
        detect_format(unknown)
    empty = write_lines(tmp_path / "empty.jsonl", [""])
    with pytest.raises(ValueError, match="is empty"):
        detect_format(empty)
    garbage = write_lines(tmp_path / "garbage.jsonl", ["{", '  "messages": []', "}"])
    with pytest.raises(ValueError, match=r"line 1: not valid JSON.*one JSON object over many"):
        detect_format(garbage)
    binary = tmp_path / "model.parquet"
    binary.write_bytes(b"PAR1\x00\x01")
    with pytest.raises(ValueError, match="unsupported dataset file type"):
        detect_format(binary)
    with pytest.raises(ValueError, match="Unknown dataset format 'yaml'"):
        read_dataset(unknown, format="yaml")


def test_an_explicit_format_overrides_detection(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "x.jsonl", [dumps({"messages": CHAT})])
    result = read_dataset(path, format="alpaca")
    assert result.format == "alpaca"
    assert result.errors() == ["line 1: no 'instruction' field"]
    assert set(FORMATS) == {"messages", "prompt-completion", "alpaca", "sharegpt", "csv"}


# --- system prompt -----------------------------------------------------------------------------


def test_system_prompt_is_added_where_none_exists(tmp_path: Path) -> None:
    own = [{"role": "system", "content": "Own prompt."}, *CHAT]
    path = write_lines(
        tmp_path / "s.jsonl",
        [dumps({"messages": CHAT}), dumps({"messages": own}), dumps({"messages": []})],
    )
    result = read_dataset(path, system_prompt="You answer from the manual.")
    assert result.examples == [
        [{"role": "system", "content": "You answer from the manual."}, *CHAT],
        own,
    ]
    assert result.rejected == 1
    assert read_dataset(path, system_prompt="  ").examples[0] == CHAT


# --- CSV ----------------------------------------------------------------------------------------


def test_csv_with_known_headers_quotes_and_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "qa.csv"
    path.write_text(
        "\ufeffQuestion,Answer\r\n"
        "What is LoRA?,A low-rank adapter.\r\n"
        '"Multi-line, quoted\r\nquestion?","Yes, ""quoted"" answer."\r\n'
        "\r\n"
        ",Missing question\r\n"
        "Too,many,fields\r\n"
        "Only one field\r\n"
        "Trailing empty field,is fine,\r\n",
        encoding="utf-8",
        newline="",
    )
    result = read_dataset(path)
    assert result.format == "csv"
    assert result.examples == [
        CHAT,
        [
            {"role": "user", "content": "Multi-line, quoted\r\nquestion?"},
            {"role": "assistant", "content": 'Yes, "quoted" answer.'},
        ],
        [
            {"role": "user", "content": "Trailing empty field"},
            {"role": "assistant", "content": "is fine"},
        ],
    ]
    assert errors_by_line(result) == {
        6: "the 'Question' column is empty",
        7: "has 3 fields but the header has 2 (a missing or extra separator, or a field "
        "that should be quoted?)",
        8: "has 1 field but the header has 2 (a missing or extra separator, or a field "
        "that should be quoted?)",
    }
    assert {row.line: row.raw for row in result.rows if row.error}[7] == "Too,many,fields"


def test_csv_alpaca_style_semicolons_and_system_column(tmp_path: Path) -> None:
    path = tmp_path / "alpaca.csv"
    path.write_text(
        "instruction;input;output;system\nSummarise.;A text.;Short.;Be brief.\nHi.;;Hello!;\n",
        encoding="utf-8",
    )
    assert read_dataset(path).examples == [
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Summarise.\n\nA text."},
            {"role": "assistant", "content": "Short."},
        ],
        [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello!"}],
    ]


def test_csv_explicit_mapping_and_unknown_headers(tmp_path: Path) -> None:
    path = tmp_path / "custom.tsv"
    path.write_text("id\tq\ta\n1\tWhat is LoRA?\tA low-rank adapter.\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"its header is: 'id', 'q', 'a'.*CsvColumns\("):
        read_dataset(path)
    result = read_dataset(path, csv_columns=CsvColumns(prompt="Q", completion=" a "))
    assert result.examples == [CHAT]
    with pytest.raises(ValueError, match=r"Column 'question' is not in the header"):
        read_dataset(path, csv_columns=CsvColumns(prompt="question", completion="a"))


def test_csv_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("prompt,completion\nCafé?,Oui.\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"not UTF-8 text \(line 2\)"):
        read_dataset(path)


def test_csv_that_is_not_utf8_far_into_the_file(tmp_path: Path) -> None:
    """The check reads the file a piece at a time: a bad byte after the first piece is found,
    with its line."""
    path = tmp_path / "late.csv"
    good = "".join(f"Question {i}?,Answer {i}.\n" for i in range(100_000))
    path.write_bytes(("prompt,completion\n" + good).encode() + "Café?,Oui.\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"not UTF-8 text \(line 100002\)"):
        read_dataset(path)


def test_csv_lines_and_fields_over_the_limit(tmp_path: Path) -> None:
    """A field up to the line limit is read (and judged as an example); a longer line or
    field ends the file with a reason, keeping the rows before it. The csv module alone
    stopped at 131,072 characters with an error that ended the import."""
    path = tmp_path / "long.csv"
    path.write_text("prompt,completion\nShort?,Yes.\n"
                    f"Long?,{'x' * 200_000}\nNext?,Read.\n"
                    f"Longer?,\"{'y' * 300_000}\"\nAfter?,Not read.\n", encoding="utf-8")
    rows = list(iter_dataset(path, max_line_bytes=250_000)[1])
    assert [(row.line, row.error is None) for row in rows] == [
        (2, True), (3, True), (4, True), (5, False)]
    assert len(rows[1].messages[1]["content"]) == 200_000
    assert rows[3].error == ("a line or field longer than 250,000 characters; the rest of the "
                             "file was not read")


def test_an_unclosed_quote_ends_the_file_at_the_field_limit(tmp_path: Path) -> None:
    """An opened quote that never closes takes every line after it into one field: the field
    limit stops it with a reason, and the rows before it are kept."""
    path = tmp_path / "unclosed.csv"
    rest = "".join(f"Question {i}?,Answer {i}.\n" for i in range(20_000))
    path.write_text(f'prompt,completion\nOne?,Yes.\n"Two?,No.\n{rest}', encoding="utf-8")
    rows = list(iter_dataset(path, max_line_bytes=100_000)[1])
    assert [(row.line, row.error) for row in rows] == [
        (2, None), (3, "a line or field longer than 100,000 characters; the rest of the file "
                       "was not read")]


def test_empty_csv_has_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("\n\n", encoding="utf-8")
    assert read_dataset(path).rows == []


# --- writing ------------------------------------------------------------------------------------


def test_write_jsonl_round_trip(tmp_path: Path) -> None:
    examples = [CHAT, [{"role": "user", "content": "Grüße 敏捷 😀\nline"}, CHAT[1]]]
    path = tmp_path / "out" / "train.jsonl"
    assert write_jsonl(path, examples) == 2
    text = path.read_bytes().decode("utf-8")
    assert "Grüße 敏捷 😀" in text and "\r" not in text  # no \\u escapes, \n line ends
    assert read_dataset(path).examples == examples
    assert [p.name for p in path.parent.iterdir()] == ["train.jsonl"]  # no temp file left


def test_write_jsonl_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    write_jsonl(path, [CHAT])

    def failing() -> object:
        yield CHAT
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_jsonl(path, failing())
    assert read_dataset(path).examples == [CHAT], "the old file is untouched"
    assert os.listdir(tmp_path) == ["train.jsonl"]


def test_datasets_library_reads_what_we_write(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    examples = [CHAT, [{"role": "system", "content": "Sé breve."}, *CHAT]]
    path = tmp_path / "train.jsonl"
    write_jsonl(path, examples)
    loaded = datasets.load_dataset(
        "json", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache")
    )
    assert loaded.column_names == ["messages"]
    assert [row["messages"] for row in loaded] == examples
