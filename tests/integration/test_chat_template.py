"""The chat-template renderer gives transformers' text and token counts, without transformers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetuneflow.core.chat_template import (
    PLAIN_TEMPLATE,
    ChatRenderer,
    chat_token_counter,
    load_chat_template,
)

CHAT = [
    {"role": "system", "content": "You answer from the manual."},
    {"role": "user", "content": "How long is the warranty?"},
    {"role": "assistant", "content": "Two years — \"from the date of purchase\"."},
]
# Llama 3's shape: bos_token, a raised error, strftime_now, loop controls and trimmed blocks.
LLAMA3_LIKE = (
    "{{ bos_token }}{% set date = strftime_now('%d %b %Y') %}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('bad role') }}{% endif %}"
    "{% if loop.index0 > 50 %}{% break %}{% endif %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ message['content'] | trim }}<|eot_id|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):  # -> PreTrainedTokenizerFast
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_renders_the_models_template_as_transformers_does(tiny_model_dir: Path,
                                                          tokenizer) -> None:
    renderer = ChatRenderer.for_model(tiny_model_dir)
    for prompt in (False, True):
        expected = tokenizer.apply_chat_template(CHAT, tokenize=False,
                                                 add_generation_prompt=prompt)
        assert renderer.render(CHAT, add_generation_prompt=prompt) == expected


def test_counts_the_whole_chat_in_tokens(tiny_model_dir: Path, tokenizer) -> None:
    expected = len(tokenizer.apply_chat_template(CHAT, tokenize=True, return_dict=True)
                   ["input_ids"])
    assert chat_token_counter(tiny_model_dir)(CHAT) == expected


@pytest.mark.parametrize("template", [LLAMA3_LIKE, PLAIN_TEMPLATE])
def test_other_templates_match_transformers(template: str, tokenizer) -> None:
    tokenizer.chat_template = template
    renderer = ChatRenderer(template, {"bos_token": tokenizer.bos_token or "",
                                       "eos_token": tokenizer.eos_token or ""})
    expected = tokenizer.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert renderer.render(CHAT, add_generation_prompt=True) == expected


def test_a_template_error_is_raised_not_swallowed() -> None:
    from jinja2.exceptions import TemplateError

    with pytest.raises(TemplateError, match="bad role"):
        ChatRenderer(LLAMA3_LIKE).render([{"role": "tool", "content": "x"}])


def test_finds_the_template_in_each_file_layout(tmp_path: Path) -> None:
    assert load_chat_template(tmp_path) is None
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": [
        {"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}))
    assert load_chat_template(tmp_path) == "D"
    (tmp_path / "chat_template.jinja").write_text("J")
    assert load_chat_template(tmp_path) == "J"
