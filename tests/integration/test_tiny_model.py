from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.tiny_model import CHATML_TEMPLATE, build_tiny_model, cached_tiny_model


def test_cached_model_folder_has_what_the_app_needs(tiny_model_dir: Path) -> None:
    names = {path.name for path in tiny_model_dir.iterdir()}
    assert {"config.json", "tokenizer.json", "tokenizer_config.json",
            "model.safetensors"} <= names
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert cached_tiny_model() == tiny_model_dir  # built once, reused


def test_model_loads_generates_and_renders_chatml(tiny_model_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert sum(p.numel() for p in model.parameters()) < 300_000
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    text = tokenizer.apply_chat_template(chat, tokenize=False)
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n"
    rendered = tokenizer.apply_chat_template(chat, return_dict=True,
                                             return_assistant_tokens_mask=True)
    assert any(rendered["assistant_masks"])  # the {% generation %} markers work
    with torch.no_grad():
        out = model.generate(**tokenizer("Hello", return_tensors="pt"), max_new_tokens=3,
                             do_sample=False)
    assert out.shape[1] >= 2


def test_tokenizer_json_is_usable_without_transformers(tiny_model_dir: Path) -> None:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    encoding = tokenizer.encode("Fine-tuning adapts a model. 敏捷的棕色狐狸")
    assert encoding.ids and tokenizer.decode(encoding.ids).startswith("Fine-tuning")


def test_build_is_deterministic(tmp_path: Path) -> None:
    first = build_tiny_model(tmp_path / "a")
    second = build_tiny_model(tmp_path / "b")
    assert (first / "tokenizer.json").read_bytes() == (second / "tokenizer.json").read_bytes()
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()
    assert "generation" in CHATML_TEMPLATE
