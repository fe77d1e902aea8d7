"""Read a Modelfile the way Ollama's parser does (parser/parser.go `ParseFile`), for tests.

A command is a name, whitespace, then a value that ends at a newline once it is complete: a
value opened with `\"\"\"` is complete when it ends with `\"\"\"`, one opened with `"` when it
ends with `"`. There are no escapes. `PARAMETER` and `MESSAGE` take one more word first.
"""

from __future__ import annotations

COMMANDS = {"from", "license", "template", "system", "adapter", "draft", "renderer", "parser",
            "parameter", "message", "requires"}


class ModelfileError(ValueError):
    pass


def _unquote(text: str) -> tuple[str, bool]:
    if text.startswith('"""'):
        if len(text) >= 6 and text.endswith('"""'):
            return text[3:-3], True
        return "", False
    if text.startswith('"'):
        if len(text) >= 2 and text.endswith('"'):
            return text[1:-1], True
        return "", False
    return text, True


def parse_modelfile(text: str) -> list[tuple[str, str]]:
    """(command, value) pairs in order; PARAMETER gives (parameter name, value)."""
    commands: list[tuple[str, str]] = []
    lines = text.split("\n")
    index = 0
    while index < len(lines):
        line = lines[index].lstrip(" \t")
        index += 1
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition(" ")
        if name.lower() not in COMMANDS:
            raise ModelfileError(f"line {index}: unknown command {name!r}")
        name = name.lower()
        if name == "parameter":
            name, _, value = value.lstrip(" \t").partition(" ")
        value = value.strip(" \t")
        unquoted, complete = _unquote(value)
        while not complete:
            if index >= len(lines):
                raise ModelfileError(f"unterminated value of {name}")
            value += "\n" + lines[index]
            index += 1
            unquoted, complete = _unquote(value.strip(" \t"))
        commands.append(("from" if name == "from" else name, unquoted))
    if not any(name == "from" for name, _ in commands):
        raise ModelfileError("no FROM line")
    return commands
