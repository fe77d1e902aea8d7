"""A small renderer for the subset of Go's text/template that Ollama chat templates use.

Enough to execute the TEMPLATE a Modelfile carries and compare its output with the HF chat
template's: text with `{{-`/`-}}` trimming, `{{ pipeline }}`, `if`/`else if`/`else`/`end`,
`range` (with `$i, $v :=`), fields (`.Role`, `$.System`), variables, string and integer
literals, parentheses, and the functions eq, ne, and, or, not, len, slice.

`ollama_values` builds the data Ollama passes (server/template `collate`): every message,
system ones included, consecutive messages of one role merged, and System joining the system
messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(r'\s*(\(|\)|:=|,|"(?:[^"\\]|\\.)*"|\$[\w]*(?:\.\w+)*|\.[\w.]*|-?\d+|\w+)')


def ollama_values(messages: list[dict[str, str]]) -> dict[str, Any]:
    collated: list[dict[str, str]] = []
    for message in messages:
        if collated and collated[-1]["Role"] == message["role"]:
            collated[-1]["Content"] += "\n\n" + message["content"]
        else:
            collated.append({"Role": message["role"], "Content": message["content"]})
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    return {"System": system, "Messages": collated}


def render(template: str, values: dict[str, Any]) -> str:
    body, rest = _parse(_lex(template), stop=())
    assert not rest, f"unexpected {rest[0]}"
    out: list[str] = []
    _run(body, values, {"$": values}, values, out)
    return "".join(out)


# --- lexing: text and actions, trimmed ------------------------------------------------------

@dataclass
class _Action:
    words: list[str]


def _lex(template: str) -> list[str | _Action]:
    items: list[str | _Action] = []
    position = 0
    trim_next = False
    for match in _ACTION.finditer(template):
        text = template[position:match.start()]
        if trim_next:
            text = text.lstrip(" \t\r\n")
        if match.group(1):
            text = text.rstrip(" \t\r\n")
        items += [text, _Action(_words(match.group(2)))]
        trim_next = bool(match.group(3))
        position = match.end()
    tail = template[position:]
    items.append(tail.lstrip(" \t\r\n") if trim_next else tail)
    return items


def _words(action: str) -> list[str]:
    words, position, action = [], 0, action.strip()
    while position < len(action):
        match = _TOKEN.match(action, position)
        assert match, f"cannot read {action[position:]!r}"
        words.append(match.group(1))
        position = match.end()
    return words


# --- parsing: a tree of text, output, if and range nodes ------------------------------------

@dataclass
class _If:
    branches: list[tuple[list[str], list[Any]]] = field(default_factory=list)
    otherwise: list[Any] = field(default_factory=list)


@dataclass
class _Range:
    names: list[str]
    pipeline: list[str]
    body: list[Any]


def _parse(items: list[Any], stop: tuple[str, ...]) -> tuple[list[Any], list[Any]]:
    nodes: list[Any] = []
    while items:
        item, items = items[0], items[1:]
        if isinstance(item, str):
            nodes.append(item)
            continue
        keyword = item.words[0] if item.words else ""
        if keyword in stop:
            return nodes, [item, *items]
        if keyword == "if":
            node, items = _parse_if(item.words[1:], items)
            nodes.append(node)
        elif keyword == "range":
            names, pipeline = _range_header(item.words[1:])
            body, items = _parse(items, stop=("end",))
            assert items and items[0].words == ["end"], "range without end"
            nodes.append(_Range(names, pipeline, body))
            items = items[1:]
        else:
            nodes.append(item.words)
    return nodes, items


def _parse_if(condition: list[str], items: list[Any]) -> tuple[_If, list[Any]]:
    node = _If()
    while True:
        body, items = _parse(items, stop=("else", "end"))
        assert items, "if without end"
        node.branches.append((condition, body))
        words = items[0].words
        items = items[1:]
        if words == ["end"]:
            return node, items
        if words[1:2] == ["if"]:
            condition = words[2:]
            continue
        node.otherwise, items = _parse(items, stop=("end",))
        assert items and items[0].words == ["end"], "else without end"
        return node, items[1:]


def _range_header(words: list[str]) -> tuple[list[str], list[str]]:
    if ":=" not in words:
        return [], words
    split = words.index(":=")
    return [w for w in words[:split] if w != ","], words[split + 1:]


# --- running --------------------------------------------------------------------------------

def _run(nodes: list[Any], dot: Any, variables: dict[str, Any], root: Any,
         out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, _If):
            chosen = next((body for condition, body in node.branches
                           if bool(_evaluate(condition, dot, variables))), node.otherwise)
            _run(chosen, dot, variables, root, out)
        elif isinstance(node, _Range):
            for index, element in enumerate(_evaluate(node.pipeline, dot, variables) or []):
                scope = dict(variables)
                for name, value in zip(node.names, (index, element), strict=False):
                    scope[name] = value
                _run(node.body, element, scope, root, out)
        else:
            out.append(str(_evaluate(node, dot, variables)))


FUNCTIONS = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "not": lambda a: not bool(a),
    "and": lambda *v: next((x for x in v if not bool(x)), v[-1]),
    "or": lambda *v: next((x for x in v if bool(x)), v[-1]),
    "len": len, "slice": lambda x, start: x[start:],
}


def _evaluate(words: list[str], dot: Any, variables: dict[str, Any]) -> Any:
    values, rest = _operands(words, dot, variables)
    assert not rest, f"unexpected {rest}"
    if values and callable(values[0]):
        return values[0](*values[1:])
    assert len(values) == 1, f"cannot evaluate {words}"
    return values[0]


def _operands(words: list[str], dot: Any, variables: dict[str, Any]
              ) -> tuple[list[Any], list[str]]:
    values: list[Any] = []
    while words and words[0] != ")":
        word, words = words[0], words[1:]
        if word == "(":
            inner, words = _operands(words, dot, variables)
            assert words and words[0] == ")", "missing )"
            words = words[1:]
            values.append(inner[0](*inner[1:]) if callable(inner[0]) else inner[0])
        elif word.startswith('"'):
            values.append(word[1:-1].encode().decode("unicode_escape"))
        elif re.fullmatch(r"-?\d+", word):
            values.append(int(word))
        elif word.startswith("$"):
            name, _, path = word.partition(".")
            values.append(_field(variables[name], path))
        elif word.startswith("."):
            values.append(_field(dot, word[1:]))
        else:
            values.append(FUNCTIONS[word])
    return values, words


def _field(value: Any, path: str) -> Any:
    for name in filter(None, path.split(".")):
        value = value.get(name, "") if isinstance(value, dict) else getattr(value, name)
    return value
