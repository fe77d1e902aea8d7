"""Chat-format detection, the Go templates per family, and the Modelfile's quoting.

What each template renders is checked by Go's own text/template against the families' HF
templates in test_modelfile_go.py.
"""

from __future__ import annotations

import pytest

from finetuneflow.core.chat_template import PLAIN_TEMPLATE
from finetuneflow.core.export.modelfile import (
    CHATML,
    FORMATS,
    GEMMA,
    LLAMA3,
    MISTRAL,
    PHI3,
    PLAIN,
    create_command,
    detect_chat_format,
    ollama_model_name,
    ollama_support,
    render_modelfile,
)
from tests.helpers.modelfile import parse_modelfile
from tests.helpers.tiny_model import CHATML_TEMPLATE

LLAMA3_HF = ("{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
             "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}")
GEMMA_HF = "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
PHI3_HF = "{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{{ '<|assistant|>\\n' }}"
MISTRAL_HF = "{{- '[INST] ' + message['content'] + '[/INST]' }}"
LLAMA2_HF = "{{ bos_token + '[INST] <<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' + '[/INST]' }}"
PHI4_HF = "{{'<|im_start|>' + message['role'] + '<|im_sep|>' + message['content'] + '<|im_end|>'}}"


@pytest.mark.parametrize(("template", "expected"), [
    (CHATML_TEMPLATE, CHATML), (LLAMA3_HF, LLAMA3), (GEMMA_HF, GEMMA), (PHI3_HF, PHI3),
    (MISTRAL_HF, MISTRAL), (PLAIN_TEMPLATE, PLAIN), (LLAMA2_HF, None), (PHI4_HF, None),
    ("{{ messages }}", None)])
def test_the_family_is_read_from_the_chat_template(template: str, expected: object) -> None:
    assert detect_chat_format(template) is expected


def test_without_a_template_the_special_tokens_decide() -> None:
    assert detect_chat_format(None, ["<|begin_of_text|>", "<|start_header_id|>",
                                     "<|end_header_id|>", "<|eot_id|>"]) is LLAMA3
    assert detect_chat_format("", ["<|im_start|>", "<|im_end|>"]) is CHATML
    assert detect_chat_format(None, ["</s>"]) is None


def test_every_format_stops_at_its_end_of_turn() -> None:
    for chat_format in FORMATS:
        assert chat_format.stops, chat_format.name
    assert PLAIN.with_eos("</s>").stops == ("</s>", "\nUser:")
    assert PLAIN.with_eos(None).stops == ("\nUser:",)


def test_the_modelfile_has_from_template_stops_and_system() -> None:
    system = 'Answer from the "manual".\nSay """exactly""" when unsure. '
    text = render_modelfile(CHATML, system=system, eos_token="<|im_end|>", temperature=0.3)
    commands = parse_modelfile(text)
    assert commands[0] == ("from", ".")
    values = dict(commands)
    assert values["template"] == CHATML.with_eos("<|im_end|>").template
    assert [v for name, v in commands if name == "stop"] == ["<|im_start|>", "<|im_end|>"]
    assert values["temperature"] == "0.3"
    assert values["system"] == 'Answer from the "manual".\nSay " " "exactly" " " when unsure.'


def test_every_template_survives_the_modelfile_parser() -> None:
    for chat_format in FORMATS:
        text = render_modelfile(chat_format, system="S", eos_token="</s>")
        values = dict(parse_modelfile(text))
        assert values["template"] == chat_format.with_eos("</s>").template, chat_format.name


def test_an_unknown_format_leaves_the_template_to_ollama() -> None:
    commands = parse_modelfile(render_modelfile(None, system="", eos_token="</s>"))
    assert [name for name, _ in commands] == ["from", "stop", "temperature"]
    assert ("stop", "</s>") in commands


def test_architectures_ollama_cannot_import_get_a_note() -> None:
    assert ollama_support("LlamaForCausalLM").importable
    unsupported = ollama_support("MistralForCausalLM")
    assert not unsupported.importable
    assert "convert_hf_to_gguf.py" in unsupported.note and "FROM ./model.gguf" in unsupported.note


def test_model_names_are_what_ollama_create_accepts() -> None:
    assert ollama_model_name("My Project: Q&A (v2)") == "my-project-q-a-v2"
    assert ollama_model_name("…") == "finetuneflow-model"
    assert create_command("x") == "ollama create x -f Modelfile"


def test_a_template_that_cannot_render_keeps_the_family_defaults() -> None:
    refusing = "<|im_start|><|im_end|>{{ raise_exception('roles must alternate') }}"
    assert CHATML.fitted(refusing, "<|im_end|>") == CHATML
    assert CHATML.fitted("<|im_start|><|im_end|>{{ messages }}", "<|im_end|>") == CHATML


def test_a_template_refusing_system_messages_still_fits_its_replies() -> None:
    template = (
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}"
        "{% for m in messages %}<start_of_turn>"
        "{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n{{ m['content'] }}"
        "<end_of_turn>{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
    assert GEMMA.fitted(template, "<eos>").reply_end == "<end_of_turn>"
