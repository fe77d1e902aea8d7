"""From raw LLM answers to validated items: cleaning, finding JSON, repairing, validating."""

from __future__ import annotations

import json

import pytest

from finetuneflow.core.generation import parse
from finetuneflow.core.generation.parse import (
    CUT_OFF_REASON,
    build_repair_messages,
    clean_answer,
    find_json,
    parse_answer,
    repair_json,
    strip_code_fences,
    strip_thinking,
    validate,
)
from finetuneflow.core.generation.tasks import Task, TaskSettings, TaskType

QA_SCHEMA = Task().item_schema
ITEM = {"question": "What is the boiling point?", "answer": "100 °C.", "quote": "boils at 100"}
EMPTY = "the answer is empty (or only a thinking trace)"
ITEMS = [ITEM, {**ITEM, "question": "Why?"}, {**ITEM, "question": "When?"}]


# -- cleaning -------------------------------------------------------------------------------


def test_strip_thinking_removes_every_block_and_an_unclosed_trace() -> None:
    text = "<think>plan {not json}</think>[1]<THINKING>more</THINKING> done"
    assert strip_thinking(text) == "[1] done"
    assert strip_thinking("<think>never closed [1, 2]") == ""
    assert strip_thinking("no trace") == "no trace"


@pytest.mark.parametrize(
    "fenced",
    [
        '```json\n{"a": 1}\n```',
        '```\n{"a": 1}\n```',
        'Here you go:\n```JSON {"a": 1}```\nEnjoy',
        '```json\n{"a": 1}',  # the closing fence was cut off
    ],
)
def test_strip_code_fences_keeps_the_json_inside(fenced: str) -> None:
    assert json.loads(strip_code_fences(fenced)) == {"a": 1}


def test_a_fence_without_json_is_skipped_for_one_with_json() -> None:
    text = "```text\nnotes\n```\n```json\n[1]\n```"
    assert strip_code_fences(text).strip() == "[1]"


def test_clean_answer_combines_both() -> None:
    text = '<think>a</think>\n```json\n{"b": 2}\n```'
    assert json.loads(clean_answer(text)) == {"b": 2}


# -- finding JSON -----------------------------------------------------------------------------


def test_find_json_takes_the_first_balanced_value_and_ignores_braces_in_strings() -> None:
    text = 'Sure! {"q": "a } tricky ] string {", "n": [1, {"x": "]"}]} and {"later": 1}'
    found = find_json(text)
    assert found is not None
    assert found.value == {"q": "a } tricky ] string {", "n": [1, {"x": "]"}]}
    assert not found.repaired


def test_find_json_skips_json_that_is_not_examples() -> None:
    found = find_json('As shown in [1] and [2, 3]: [{"a": 1}]')
    assert found is not None and found.value == [{"a": 1}]


def test_find_json_returns_none_without_json() -> None:
    assert find_json("I am sorry, I cannot help with that.") is None


def test_find_json_bounds_its_repair_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long answer full of brackets that never parse costs a few passes, not one per bracket."""
    calls: list[int] = []

    def counting_repair(text: str) -> tuple[str, str]:
        calls.append(len(text))
        return repair_json(text)

    monkeypatch.setattr(parse, "repair_json", counting_repair)
    assert find_json("{ oops [ " * 5000) is None
    assert len(calls) == parse.MAX_REPAIRS


# -- repairing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        ('[{"a": 1,}, {"b": [1, 2,],},]', [{"a": 1}, {"b": [1, 2]}]),
        ("{'a': 'it\\'s', 'b': \"say \\\"hi\\\"\"}", {"a": "it's", "b": 'say "hi"'}),
        ("{'a': 'he said \"no\"'}", {"a": 'he said "no"'}),
        ('{"a": "line one\nline two\ttab"}', {"a": "line one\nline two\ttab"}),
        ('{"a": True, "b": False, "c": None}', {"a": True, "b": False, "c": None}),
        ('{"a": [1, 2}', {"a": [1, 2]}),  # a wrong closing bracket closes the right container
        ('{question: "Why?", answer_1: "x"}', {"question": "Why?", "answer_1": "x"}),  # bare keys
    ],
)
def test_repair_json_fixes_common_mistakes(broken: str, expected: object) -> None:
    repaired, tail = repair_json(broken)
    assert json.loads(repaired, strict=False) == expected
    assert tail == ""


def test_repair_json_keeps_the_complete_items_of_a_cut_list() -> None:
    cut = '[{"a": 1}, {"b": {"c": 2}}, {"d": "unfinis'
    repaired, tail = repair_json(cut)
    assert json.loads(repaired) == [{"a": 1}, {"b": {"c": 2}}]
    assert tail == '{"d": "unfinis'


def test_repair_json_inside_an_object_root() -> None:
    cut = '{"examples": [{"a": 1}, {"a": 2}, {"a": 3, "b": [1, 2'
    repaired, tail = repair_json(cut)
    assert json.loads(repaired) == {"examples": [{"a": 1}, {"a": 2}]}
    assert tail.startswith('{"a": 3')


def test_repair_json_closes_a_lone_cut_object() -> None:
    repaired, _ = repair_json('{"question": "What is')
    assert json.loads(repaired) == {"question": "What is"}


# -- validating -------------------------------------------------------------------------------


def test_validate_reports_each_problem_in_words() -> None:
    item = {"question": "  ", "answer": 3, "extra": True}
    errors = validate(item, QA_SCHEMA)
    assert "missing field 'quote'" in errors
    assert "'question' is empty" in errors
    assert "'answer' must be a string, not integer" in errors


@pytest.mark.parametrize(
    ("value", "schema", "ok"),
    [
        (True, {"type": "integer"}, False),  # a JSON boolean is not a number
        (3, {"type": "number"}, True),
        ({"a": 1}, {"type": ["object", "array"]}, True),
        ("x", {"type": ["object", "array"]}, False),
        ([1, 2], {"type": "array", "minItems": 3}, False),
        ([1, 2], {"type": "array", "maxItems": 1}, False),
        ([1, "x"], {"type": "array", "items": {"type": "integer"}}, False),
        ("b", {"enum": ["a", "b"]}, True),
        ("c", {"enum": ["a", "b"]}, False),
        ("abcdef", {"type": "string", "maxLength": 3}, False),
        ({"a": 1, "z": 2}, {"type": "object", "properties": {"a": {}},
                            "additionalProperties": False}, False),
        (None, {"type": "null"}, True),
    ],
)
def test_validate_subset(value: object, schema: dict, ok: bool) -> None:
    assert (validate(value, schema) == []) is ok


# -- whole answers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        json.dumps(ITEMS),
        json.dumps({"examples": ITEMS}),
        json.dumps({"questions": ITEMS}),  # any lone list of objects
        "<think>Let me see.</think>\n```json\n" + json.dumps({"examples": ITEMS}) + "\n```",
        "Here are the pairs:\n" + json.dumps(ITEMS, indent=2) + "\nHope this helps!",
    ],
)
def test_parse_answer_accepts_the_usual_shapes(answer: str) -> None:
    outcome = parse_answer(answer, QA_SCHEMA)
    assert outcome.items == ITEMS
    assert outcome.rejects == [] and outcome.error is None
    assert not outcome.needs_llm_repair


def test_parse_answer_takes_a_single_unwrapped_item() -> None:
    outcome = parse_answer(json.dumps(ITEM), QA_SCHEMA)
    assert outcome.items == [ITEM]


def test_parse_answer_repairs_malformed_json_in_code() -> None:
    malformed = json.dumps(ITEMS, indent=2)[:-1].rstrip() + ",\n]"  # a trailing comma
    outcome = parse_answer(malformed, QA_SCHEMA)
    assert outcome.items == ITEMS and outcome.repaired


def test_parse_answer_keeps_complete_items_of_a_cut_answer_and_rejects_the_rest() -> None:
    full = json.dumps({"examples": ITEMS})
    outcome = parse_answer(full[: len(full) - 30], QA_SCHEMA)
    assert outcome.items == ITEMS[:2]
    assert [r.reason for r in outcome.rejects] == [CUT_OFF_REASON]
    assert outcome.rejects[0].raw.startswith('{"question": "When?"')


def test_parse_answer_rejects_invalid_items_with_reasons_and_drops_nothing() -> None:
    answer = json.dumps([ITEM, {"question": "Q?", "answer": ""}, "just text", 7])
    outcome = parse_answer(answer, QA_SCHEMA)
    assert outcome.items == [ITEM]
    reasons = [r.reason for r in outcome.rejects]
    assert reasons == [
        "missing field 'quote'; 'answer' is empty",
        "must be an object, not string",
        "must be an object, not integer",
    ]
    assert len(outcome.items) + len(outcome.rejects) == 4


def test_numbers_where_text_is_expected_become_text() -> None:
    outcome = parse_answer(json.dumps([{**ITEM, "answer": 42}]), QA_SCHEMA)
    assert outcome.items == [{**ITEM, "answer": "42"}]


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ("", EMPTY),
        ("<think>I ran out of tokens while thinking", EMPTY),
        ("I cannot do that.", "no JSON object or list found in the answer"),
        ('{"note": "nothing here", "count": 0}', "the JSON holds no list of examples"),
    ],
)
def test_parse_answer_says_why_nothing_was_found(answer: str, error: str) -> None:
    outcome = parse_answer(answer, QA_SCHEMA)
    assert outcome.items == [] and outcome.error == error
    assert outcome.needs_llm_repair


def test_an_empty_list_is_a_reject_not_silence() -> None:
    outcome = parse_answer('{"examples": []}', QA_SCHEMA)
    assert outcome.items == [] and len(outcome.rejects) == 1
    assert outcome.needs_llm_repair


def test_every_task_schema_parses_its_own_example() -> None:
    samples = {
        TaskType.QA: ITEM,
        TaskType.INSTRUCTIONS: {"instruction": "Explain X.", "input": "", "response": "X is…"},
        TaskType.SUMMARY: {"instruction": "Summarise in one sentence.", "summary": "It is…"},
        TaskType.EXTRACTION: {"instruction": "List the dates.", "output": {"dates": ["1990"]}},
        TaskType.CUSTOM: {"input": "Hi", "output": "Hello"},
    }
    for task_type, sample in samples.items():
        settings = TaskSettings(type=task_type, instruction="Teach greetings.")
        schema = Task(settings).item_schema
        assert parse_answer(json.dumps({"examples": [sample]}), schema).items == [sample]


def test_build_repair_messages_carries_the_error_the_schema_and_the_answer() -> None:
    schema = Task().response_schema()
    messages = build_repair_messages("{'broken': ", "no JSON found", schema)
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    assert "no JSON found" in user and "{'broken': " in user
    assert json.dumps(schema, ensure_ascii=False) in user
    assert "Return only the corrected JSON" in user


def test_build_repair_messages_bounds_a_huge_answer() -> None:
    messages = build_repair_messages("x" * 100_000, "too long")
    assert len(messages[1]["content"]) < 13_000
