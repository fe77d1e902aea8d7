"""From an LLM's answer to validated example items, repairing what can be repaired in code.

Models wrap JSON in thinking traces, code fences and prose, leave trailing commas, use single
quotes, put raw newlines inside strings, and get cut off at max_tokens. The steps:
strip <think> blocks and fences; take the first balanced JSON value that looks like examples
(an object or a list of objects); if it does not parse, repair it in code (the fixes above, and
for a cut-off list keep the complete items); validate each item against the task's schema.
When nothing usable comes out, the caller may ask the LLM once to repair its answer
(build_repair_messages). Every item that still fails becomes a reject with a reason.

Schema validation uses a small validator for the subset of JSON Schema the tasks use (type,
properties, required, additionalProperties, items, min/maxItems, min/maxLength, enum):
`jsonschema` is not a dependency.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Item = dict[str, Any]
Schema = Mapping[str, Any]

MAX_JSON_STARTS = 64  # where a JSON value may begin; enough for any prose preamble
MAX_REPAIRS = 4  # code repairs tried (each a pass over the rest of the answer)
MAX_REPAIR_TEXT = 12_000  # characters of a bad answer sent back for an LLM repair
CUT_OFF_REASON = "cut off: the answer ended before this example was complete"

_THINK_BLOCK = re.compile(r"<(think|thinking)>.*?</\1>", re.DOTALL | re.IGNORECASE)
_UNCLOSED_THINK = re.compile(r"<(think|thinking)>(?!.*</\1>).*", re.DOTALL | re.IGNORECASE)
_FENCED = re.compile(r"```[ \t]*[\w-]*[ \t]*\n?(.*?)(?:```|$)", re.DOTALL)
_PY_LITERALS = {"True": "true", "False": "false", "None": "null"}
_WORD = re.compile(r"[A-Za-z_]\w*")
_DECODER = json.JSONDecoder(strict=False)  # strict=False: raw newlines inside strings are fine


@dataclass(frozen=True)
class ItemReject:
    reason: str  # short, for people: "missing field 'quote'"
    raw: str  # the item (or text) that was rejected, as JSON or as it came


@dataclass
class ParseOutcome:
    items: list[Item] = field(default_factory=list)  # valid against the item schema
    rejects: list[ItemReject] = field(default_factory=list)
    error: str | None = None  # why no JSON at all could be read (then items is empty)
    repaired: bool = False  # code repair was needed

    @property
    def needs_llm_repair(self) -> bool:
        """Nothing usable came out: worth one repair request to the LLM."""
        return not self.items and (self.error is not None or bool(self.rejects))


# -- cleaning -------------------------------------------------------------------------------


def strip_thinking(text: str) -> str:
    """Remove <think>…</think> blocks; an unclosed one hides everything after it."""
    text = _THINK_BLOCK.sub("", text)
    return _UNCLOSED_THINK.sub("", text)


def strip_code_fences(text: str) -> str:
    """The inside of the first ``` fence that holds JSON; the text itself when there is none."""
    for match in _FENCED.finditer(text):
        inside = match.group(1)
        if "{" in inside or "[" in inside:
            return inside
    return text.replace("```", "")


def clean_answer(text: str) -> str:
    return strip_code_fences(strip_thinking(text)).strip()


# -- finding and repairing JSON ---------------------------------------------------------------


@dataclass(frozen=True)
class FoundJson:
    value: Any
    repaired: bool
    cut_tail: str  # text of an incomplete last element dropped by the repair ("" when none)


def find_json(text: str) -> FoundJson | None:
    """The first JSON value in `text` that looks like examples, repaired if need be."""
    starts = [m.start() for m in re.finditer(r"[\[{]", text)][:MAX_JSON_STARTS]
    repairs = 0
    for start in starts:
        try:
            value, _ = _DECODER.raw_decode(text, start)
        except ValueError:
            value = None
        else:
            if _looks_like_examples(value):
                return FoundJson(value, repaired=False, cut_tail="")
            continue  # valid JSON but not examples (say "[1]" in a preamble): look further
        if repairs >= MAX_REPAIRS:
            continue
        repairs += 1
        repaired_text, cut_tail = repair_json(text[start:])
        try:
            value = json.loads(repaired_text, strict=False)
        except ValueError:
            continue
        if _looks_like_examples(value):
            return FoundJson(value, repaired=True, cut_tail=cut_tail)
    return None


def _looks_like_examples(value: Any) -> bool:
    if isinstance(value, dict):
        return True
    # A list with one object in it: the other elements become rejects, never silently lost.
    return isinstance(value, list) and (not value or any(isinstance(v, dict) for v in value))


class _Repairer:
    """One pass over text that starts with { or [, rewriting it into strict JSON."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.out: list[str] = []
        self.stack: list[str] = []
        # After each complete element of an array: (output length, open containers, input index).
        self.safe_point: tuple[int, list[str], int] | None = None

    def run(self) -> tuple[str, str]:
        text, i, quote = self.text, 0, ""
        while i < len(text):
            ch = text[i]
            if quote:
                i, quote = self._in_string(i, quote)
            elif ch in "\"'":
                quote = ch
                self.out.append('"')
                i += 1
            elif ch in "{[":
                self.stack.append(ch)
                self.out.append(ch)
                i += 1
            elif ch in "}]":
                if self._close(i):
                    return "".join(self.out), ""
                i += 1
            elif ch.isalpha() or ch == "_":
                i = self._word(i)
            else:
                self.out.append(ch)
                i += 1
        return self._finish_cut(quote)

    def _in_string(self, i: int, quote: str) -> tuple[int, str]:
        ch, out = self.text[i], self.out
        if ch == "\\" and i + 1 < len(self.text):
            following = self.text[i + 1]
            out.append("'" if quote == "'" and following == "'" else ch + following)
            return i + 2, quote
        if ch == quote:
            out.append('"')
            return i + 1, ""
        if ch == '"':  # inside a single-quoted string
            out.append('\\"')
        elif ch in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
        return i + 1, quote

    def _close(self, i: int) -> bool:
        """Close the innermost container (whatever bracket was typed); True when all are closed."""
        opener = self.stack.pop() if self.stack else "{"
        _drop_trailing_comma(self.out)
        self.out.append("}" if opener == "{" else "]")
        if not self.stack:
            return True
        if self.stack[-1] == "[":
            self.safe_point = (len(self.out), list(self.stack), i + 1)
        return False

    def _word(self, i: int) -> int:
        match = _WORD.match(self.text, i)
        word = match.group(0) if match else self.text[i]
        end = i + len(word)
        if self.stack and self.stack[-1] == "{" and self.text[end:].lstrip().startswith(":"):
            self.out.append(f'"{word}"')  # a bare key, as JavaScript allows
        else:
            self.out.append(_PY_LITERALS.get(word, word))
        return end

    def _finish_cut(self, quote: str) -> tuple[str, str]:
        """The text ended inside the value: keep the complete elements, close the rest."""
        if self.safe_point is not None:
            length, stack, index = self.safe_point
            out, tail = self.out[:length], self.text[index:]
        else:
            out, stack, tail = self.out + (['"'] if quote else []), self.stack, ""
        _drop_trailing_comma(out)
        out.extend("}" if opener == "{" else "]" for opener in reversed(stack))
        return "".join(out), tail.strip(" \t\r\n,")


def repair_json(text: str) -> tuple[str, str]:
    """Fix trailing commas, single quotes, raw control characters in strings, Python literals,
    bare keys and a cut-off end. Returns the repaired text and the dropped incomplete tail
    ("" when nothing was dropped)."""
    return _Repairer(text).run()


def _drop_trailing_comma(out: list[str]) -> None:
    j = len(out) - 1
    while j >= 0 and out[j].isspace():
        j -= 1
    if j >= 0 and out[j] == ",":
        del out[j]


# -- validation -----------------------------------------------------------------------------

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def validate(value: Any, schema: Schema, path: str = "") -> list[str]:
    """Errors of `value` against the JSON Schema subset; minLength counts non-blank text."""
    expected = schema.get("type")
    if expected is not None and not _has_type(value, expected):
        wanted = " or ".join(expected) if isinstance(expected, list) else expected
        return [f"{_where(path)}must be {_article(wanted)}, not {_json_type_name(value)}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{_where(path)}must be one of {schema['enum']}"]
    if isinstance(value, str):
        return _string_errors(value, schema, path)
    if isinstance(value, dict):
        return _object_errors(value, schema, path)
    if isinstance(value, list):
        return _array_errors(value, schema, path)
    return []


def _has_type(value: Any, expected: str | list[str]) -> bool:
    names = expected if isinstance(expected, list) else [expected]
    for name in names:
        if isinstance(value, bool) and name in ("integer", "number"):
            continue  # JSON booleans are not numbers, although Python's are ints
        if isinstance(value, _JSON_TYPES.get(name, ())):
            return True
    return False


def _string_errors(value: str, schema: Schema, path: str) -> list[str]:
    length = len(value.strip())
    if length < schema.get("minLength", 0):
        return [f"{_where(path)}is empty" if length == 0 else f"{_where(path)}is too short"]
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        return [f"{_where(path)}is longer than {schema['maxLength']} characters"]
    return []


def _object_errors(value: dict[str, Any], schema: Schema, path: str) -> list[str]:
    errors = [f"missing field '{_join(path, name)}'" for name in schema.get("required", [])
              if name not in value]
    properties: Mapping[str, Any] = schema.get("properties", {})
    for name, sub_schema in properties.items():
        if name in value:
            errors += validate(value[name], sub_schema, _join(path, name))
    if schema.get("additionalProperties") is False:
        errors += [f"unexpected field '{_join(path, name)}'" for name in value
                   if name not in properties]
    return errors


def _array_errors(value: list[Any], schema: Schema, path: str) -> list[str]:
    errors: list[str] = []
    if len(value) < schema.get("minItems", 0):
        errors.append(f"{_where(path)}needs at least {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(f"{_where(path)}has more than {schema['maxItems']} items")
    if "items" in schema:
        for index, element in enumerate(value):
            errors += validate(element, schema["items"], f"{path}[{index}]")
    return errors


def _where(path: str) -> str:
    return f"'{path}' " if path else ""


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _article(type_name: str) -> str:
    return f"an {type_name}" if type_name[:1] in "aeiou" else f"a {type_name}"


def _json_type_name(value: Any) -> str:
    return next((name for name in _JSON_TYPES if _has_type(value, name)), type(value).__name__)


# -- from answer to items -------------------------------------------------------------------


def parse_answer(text: str, item_schema: Schema) -> ParseOutcome:
    """Every item of the answer, valid or rejected with a reason; nothing silently dropped.
    JSON the parser gives up on (nested too deep, too large to hold) is a reason too."""
    try:
        return _parse_answer(text, item_schema)
    except RecursionError:
        return ParseOutcome(error="the answer's JSON is nested too deeply to parse")
    except MemoryError:
        return ParseOutcome(error="the answer is too large to parse in memory")


def _parse_answer(text: str, item_schema: Schema) -> ParseOutcome:
    cleaned = clean_answer(text)
    if not cleaned:
        return ParseOutcome(error="the answer is empty (or only a thinking trace)")
    found = find_json(cleaned)
    if found is None:
        return ParseOutcome(error="no JSON object or list found in the answer")
    candidates = _unwrap(found.value, item_schema)
    if candidates is None:
        return ParseOutcome(error="the JSON holds no list of examples", repaired=found.repaired)
    outcome = ParseOutcome(repaired=found.repaired)
    for candidate in candidates:
        _sort_item(candidate, item_schema, outcome)
    if found.cut_tail:
        outcome.rejects.append(ItemReject(CUT_OFF_REASON, found.cut_tail[:2000]))
    if not outcome.items and not outcome.rejects:
        outcome.rejects.append(ItemReject("the answer's list of examples is empty", cleaned[:2000]))
    return outcome


def _unwrap(value: Any, item_schema: Schema) -> list[Any] | None:
    """The list of candidate items: a list, {"examples": [...]}, any lone list, or one item."""
    if isinstance(value, list):
        return value
    if not isinstance(value, dict):
        return None
    examples = value.get("examples")
    if isinstance(examples, list):
        return examples
    lists = [v for v in value.values() if isinstance(v, list)]
    required = set(item_schema.get("required", []))
    if required & value.keys():
        return [value]  # a single example, not wrapped
    if len(lists) == 1:
        return lists[0]
    return None


def _sort_item(candidate: Any, item_schema: Schema, outcome: ParseOutcome) -> None:
    if isinstance(candidate, dict):
        candidate = _coerce_scalars(candidate, item_schema)
    errors = validate(candidate, item_schema)
    if errors:
        raw = json.dumps(candidate, ensure_ascii=False)[:2000]
        outcome.rejects.append(ItemReject("; ".join(errors)[:200], raw))
    else:
        outcome.items.append(candidate)


def _coerce_scalars(item: Item, item_schema: Schema) -> Item:
    """Numbers where text is expected (an answer of 42) become text; nothing else changes."""
    properties: Mapping[str, Any] = item_schema.get("properties", {})
    fixed = dict(item)
    for name, sub_schema in properties.items():
        value = fixed.get(name)
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if sub_schema.get("type") == "string" and is_number:
            fixed[name] = str(value)
    return fixed


# -- asking the LLM to repair -----------------------------------------------------------------


def build_repair_messages(
    bad_text: str, error: str, schema: Schema | None = None
) -> list[dict[str, str]]:
    """One follow-up request: the broken answer, what is wrong, and the schema it must fit."""
    schema_part = (
        f"It must match this JSON Schema:\n{json.dumps(schema, ensure_ascii=False)}\n\n"
        if schema is not None
        else ""
    )
    user = (
        f"The answer below should be valid JSON but could not be used: {error}.\n\n"
        f"{schema_part}"
        f"Answer to repair:\n{bad_text[:MAX_REPAIR_TEXT]}\n\n"
        "Return only the corrected JSON, with no other text. Keep the content; fix only the "
        "format and any missing required fields."
    )
    return [
        {"role": "system", "content": "You repair malformed JSON. You reply with JSON only."},
        {"role": "user", "content": user},
    ]
