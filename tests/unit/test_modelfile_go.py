"""The Modelfile TEMPLATE run by Go's own text/template gives the model's own chat text.

For each family's real HF chat template (the copies TRL ships of the Hub's, tests/helpers'
families, and the app's own), the Modelfile that the export writes is parsed the way Ollama
parses it, its TEMPLATE executed by tests/gotemplate (Go, Ollama's data shape), and the prompt
compared byte for byte with `tokenizer.apply_chat_template` on a real tokenizer. The BOS token
is left out of the HF text: Ollama's runtime adds it when tokenizing, not the template.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

import pytest

from finetuneflow.core.chat_template import PLAIN_TEMPLATE
from finetuneflow.core.export.modelfile import (
    CHATML,
    GEMMA,
    LLAMA3,
    MISTRAL,
    PHI3,
    PHI4,
    PLAIN,
    ChatFormat,
    detect_chat_format,
    render_modelfile,
)
from tests.helpers.families import PHI4_MINI_TEMPLATE, SMOLLM3_TEMPLATE
from tests.helpers.gotemplate import Renderer, go_renderer
from tests.helpers.modelfile import parse_modelfile
from tests.helpers.tiny_model import CHATML_TEMPLATE

SYSTEM = {"role": "system", "content": "Be brief."}
USER = {"role": "user", "content": "Hi?"}
ASSISTANT = {"role": "assistant", "content": "Hello."}
USER_2 = {"role": "user", "content": "Name?"}
CASES = {"system + user": [SYSTEM, USER],
         "multi-turn": [SYSTEM, USER, ASSISTANT, USER_2],
         "no system": [USER, ASSISTANT, USER_2]}

# Mistral-7B-Instruct-v0.3's layout (its Hub template less the tool-call branches): the system
# text goes before the last user message, replies end with </s>.
MISTRAL_V3 = (
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] %}"
    "{%- set loop_messages = messages[1:] %}{%- else %}{%- set loop_messages = messages %}"
    "{%- endif %}\n{{- bos_token }}\n{%- for message in loop_messages %}\n"
    "    {%- if message['role'] == 'user' %}\n"
    "        {%- if loop.last and system_message is defined %}\n"
    "            {{- '[INST] ' + system_message + '\\n\\n' + message['content'] + '[/INST]' }}\n"
    "        {%- else %}\n            {{- '[INST] ' + message['content'] + '[/INST]' }}\n"
    "        {%- endif %}\n"
    "    {%- elif message['role'] == 'assistant' %}\n"
    "        {{- ' ' + message['content']|trim + eos_token }}\n"
    "    {%- endif %}\n{%- endfor %}\n")


# SmolLM2-Instruct's template: ChatML with a default system turn when the chat has none.
SMOLLM2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

# The issue-17 case: a ChatML template written over several lines, where trim_blocks drops the
# newline after `{% endgeneration %}`, so a reply ends `<|im_end|>` with no newline after it.
CHATML_TRIM_BLOCKS = """{% for message in messages %}
{% if message['role'] == 'assistant' %}
<|im_start|>assistant
{% generation %}{{ message['content'] }}<|im_end|>{% endgeneration %}
{% else %}
<|im_start|>{{ message['role'] }}
{{ message['content'] }}<|im_end|>
{% endif %}
{% endfor %}
{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""


@dataclass(frozen=True)
class Family:
    """A model's HF chat template and the Modelfile format the export picks for it."""

    name: str
    template: str
    chat_format: ChatFormat
    eos: str
    bos: str | None = None
    cases: tuple[str, ...] = tuple(CASES)  # the chats its template accepts


def trl_template(name: str) -> str:
    return (resources.files("trl") / "chat_templates" / f"{name}.jinja").read_text("utf-8")


FAMILIES = [
    Family("tiny-chatml", CHATML_TEMPLATE, CHATML, "<|im_end|>"),
    Family("chatml-trim-blocks", CHATML_TRIM_BLOCKS, CHATML, "<|im_end|>"),
    Family("smollm2", SMOLLM2, CHATML, "<|im_end|>"),
    Family("qwen2.5", trl_template("qwen2_5"), CHATML, "<|im_end|>"),
    Family("qwen3", trl_template("qwen3"), CHATML, "<|im_end|>"),
    Family("llama3", trl_template("llama3"), LLAMA3, "<|eot_id|>", "<|begin_of_text|>"),
    Family("llama3.2", trl_template("llama3_2"), LLAMA3, "<|eot_id|>", "<|begin_of_text|>"),
    Family("gemma2", trl_template("gemma"), GEMMA, "<end_of_turn>", "<bos>",
           cases=("no system",)),  # Gemma 2's template refuses a system message
    Family("gemma3", trl_template("gemma3"), GEMMA, "<end_of_turn>", "<bos>"),
    Family("phi3", trl_template("phi3"), PHI3, "<|endoftext|>"),
    Family("phi3.5", trl_template("phi3_5"), PHI3, "<|endoftext|>"),
    Family("phi4-mini", PHI4_MINI_TEMPLATE, PHI4, "<|end|>"),
    Family("smollm3", SMOLLM3_TEMPLATE, CHATML, "<|im_end|>"),
    Family("mistral-v0.3", MISTRAL_V3, MISTRAL, "</s>", "<s>"),
    Family("plain", PLAIN_TEMPLATE, PLAIN, "<|im_end|>"),
]


def _params() -> Iterator[Any]:
    for family in FAMILIES:
        for case in family.cases:
            yield pytest.param(family, case, id=f"{family.name}-{case.replace(' ', '')}")


@pytest.fixture(scope="module")
def go_render() -> Renderer:
    render, reason = go_renderer()
    if render is None:
        pytest.skip(reason)
    return render


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Any) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def modelfile_template(family: Family) -> str:
    """The TEMPLATE of the Modelfile the export writes for a model with this template."""
    chat_format = detect_chat_format(family.template)
    assert chat_format is family.chat_format
    text = render_modelfile(chat_format, system="", eos_token=family.eos,
                            chat_template=family.template)
    return dict(parse_modelfile(text))["template"]


def hf_prompt(tokenizer: Any, family: Family, messages: list[dict[str, str]]) -> str:
    tokenizer.chat_template = family.template
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                         bos_token=family.bos or "", eos_token=family.eos)
    return text.removeprefix(family.bos or "")


@pytest.mark.parametrize(("family", "case"), list(_params()))
def test_go_renders_the_modelfile_template_as_the_model_was_trained(
        go_render: Renderer, tokenizer: Any, family: Family, case: str) -> None:
    messages = CASES[case]
    expected = hf_prompt(tokenizer, family, messages)
    assert go_render(modelfile_template(family), messages) == expected


def test_go_collates_messages_as_ollama_does(go_render: Renderer) -> None:
    """Consecutive messages of one role are merged with a blank line, and .System joins the
    system messages (Ollama's template.collate)."""
    template = "{{ .System }}|{{ range .Messages }}{{ .Role }}={{ .Content }};{{ end }}"
    messages = [SYSTEM, {"role": "system", "content": "Cite."}, USER, USER_2]
    assert go_render(template, messages) == (
        "Be brief.\n\nCite.|system=Be brief.\n\nCite.;user=Hi?\n\nName?;")
