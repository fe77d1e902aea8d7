"""A model's chat template, rendered the way transformers renders it, without transformers.

The GUI process must not import the ML stack, yet it needs an example's true length in tokens
(the whole chat as the trainer will see it) to flag examples over `max_seq_length`. Jinja2 in
a sandbox with the same helpers (`raise_exception`, `strftime_now`, `{% generation %}`) gives
the same text as `tokenizer.apply_chat_template`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from finetuneflow.core.chunking.tokens import TokenCounter

Message = dict[str, str]

# Models without a chat template (base models) are trained with this one; the trainer saves
# it with the adapter so the fine-tuned model is used the way it was trained.
PLAIN_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ 'Assistant: ' }}{% generation %}{{ message['content'] + (eos_token or '') }}"
    "{% endgeneration %}{{ '\n\n' }}"
    "{% else %}{{ message['role'] | capitalize + ': ' + message['content'] + '\n\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}"
)
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "pad_token", "unk_token")


def load_chat_template(folder: Path) -> str | None:
    """The folder's chat template: chat_template.jinja, chat_template.json, or the one in
    tokenizer_config.json (the "default" one when several are named)."""
    jinja_file = folder / "chat_template.jinja"
    if jinja_file.is_file():
        return jinja_file.read_text(encoding="utf-8")
    for name in ("chat_template.json", "tokenizer_config.json"):
        path = folder / name
        if path.is_file():
            template = json.loads(path.read_text(encoding="utf-8")).get("chat_template")
            if template:
                return _default_of(template)
    return None


def _default_of(template: str | list[dict[str, str]]) -> str:
    if isinstance(template, str):
        return template
    named = {entry["name"]: entry["template"] for entry in template}
    return named.get("default", next(iter(named.values())))


def load_special_tokens(folder: Path) -> dict[str, str]:
    """bos/eos/pad/unk as text, for the template's `{{ bos_token }}` and friends."""
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    tokens: dict[str, str] = {}
    for name in SPECIAL_TOKEN_NAMES:
        value = config.get(name)
        if isinstance(value, dict):  # older files store AddedToken objects
            value = value.get("content")
        if isinstance(value, str):
            tokens[name] = value
    return tokens


class ChatRenderer:
    """Renders chats with one template; thread-safe once built."""

    def __init__(self, template: str, special_tokens: dict[str, str] | None = None) -> None:
        self.template_source = template
        self.special_tokens = special_tokens or {}

    @classmethod
    def for_model(cls, folder: Path) -> ChatRenderer:
        return cls(load_chat_template(folder) or PLAIN_TEMPLATE, load_special_tokens(folder))

    @cached_property
    def _template(self) -> Any:
        return compiled_template(self.template_source)

    def render(self, messages: list[Message], *, add_generation_prompt: bool = False) -> str:
        return str(self._template.render(
            messages=messages, add_generation_prompt=add_generation_prompt,
            **self.special_tokens))


@lru_cache(maxsize=16)
def compiled_template(source: str) -> Any:
    """A template compiled once per process: compiling a model's chat template holds the
    interpreter lock for tens of milliseconds, and each generation run would repeat it."""
    return _environment().from_string(source)


def _environment() -> Any:
    from jinja2 import nodes
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationBlock(Extension):
        """`{% generation %}…{% endgeneration %}` marks the assistant's tokens for training;
        for rendering it is just its body."""

        tags = {"generation"}  # noqa: RUF012 - jinja2's own class attribute

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body, lineno=lineno)

    def raise_exception(message: str) -> None:
        from jinja2.exceptions import TemplateError

        raise TemplateError(message)

    def strftime_now(format: str) -> str:
        return datetime.now().strftime(format)

    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlock, loopcontrols])
    environment.filters["tojson"] = _tojson
    environment.globals.update(raise_exception=raise_exception, strftime_now=strftime_now)
    return environment


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    # transformers overrides Jinja's HTML-escaping tojson with plain json.dumps.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def chat_token_counter(folder: Path) -> Callable[[list[Message]], int]:
    """Tokens of a whole chat rendered with the model's template (special tokens included)."""
    renderer = ChatRenderer.for_model(folder)
    counter = TokenCounter.from_model_dir(folder)

    def count(messages: list[Message]) -> int:
        return counter.count(renderer.render(messages))

    return count
