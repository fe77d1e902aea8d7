"""The exported tokenizer_config.json loads in transformers 4.x as in 5.x, to the same tokens."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from finetuneflow.core.export.tokenizer_config import (
    make_tokenizer_config_portable,
    portable_tokenizer_config,
)
from tests.helpers.transformers4 import transformers4_python

TEXTS = ["<|im_start|>user\nHi? <|endoftext|><|im_end|>", "Der schnelle Fuchs, 敏捷的狐狸 123"]
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
        {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Name?"}]
# What each version makes of the folder; the same code runs in both.
PROBE = """
import json, sys
from transformers import AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
texts, chat = json.loads(sys.argv[2]), json.loads(sys.argv[3])
special = tokenizer.all_special_tokens
print(json.dumps({"ids": [tokenizer(text)["input_ids"] for text in texts],
                  "decoded": [tokenizer.decode(tokenizer(text)["input_ids"]) for text in texts],
                  "special": sorted(special), "eos": tokenizer.eos_token,
                  "pad": tokenizer.pad_token,
                  "chat": tokenizer.apply_chat_template(chat, tokenize=False,
                                                        add_generation_prompt=True)}))
"""


def test_loading_arguments_go_and_the_class_is_one_both_versions_know() -> None:
    written_by_5 = {"backend": "tokenizers", "tokenizer_class": "TokenizersBackend",
                    "is_local": True, "local_files_only": True, "token": "hf_secret",
                    "eos_token": "<|im_end|>", "extra_special_tokens": ["<a>", "<b>"],
                    "additional_special_tokens": ["<b>", "<c>"]}
    assert portable_tokenizer_config(written_by_5) == {
        "backend": "tokenizers", "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": "<|im_end|>", "additional_special_tokens": ["<b>", "<c>", "<a>"]}


def test_a_family_class_and_named_extra_tokens_are_kept() -> None:
    config = {"tokenizer_class": "GemmaTokenizer", "extra_special_tokens": {"boi_token": "<x>"}}
    assert portable_tokenizer_config(config) == config


def test_a_folder_without_a_tokenizer_config_is_left_alone(tmp_path: Path) -> None:
    make_tokenizer_config_portable(tmp_path)
    assert list(tmp_path.iterdir()) == []


def _probe(python: str, folder: Path) -> dict[str, Any]:
    result = subprocess.run([python, "-c", PROBE, str(folder), json.dumps(TEXTS),
                             json.dumps(CHAT)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # two processes load transformers; the first run also makes the 4.x venv
def test_the_exported_tokenizer_loads_in_transformers_4_as_in_5(tiny_model_dir: Path,
                                                                 tmp_path: Path) -> None:
    import sys

    from transformers import AutoTokenizer

    python, reason = transformers4_python()
    if python is None:
        pytest.skip(reason)
    folder = tmp_path / "merged"
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)  # as the export does
    make_tokenizer_config_portable(folder)
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert not {"is_local", "local_files_only"} & set(config)
    in_4, in_5 = _probe(str(python), folder), _probe(sys.executable, folder)
    assert in_4 == in_5
    assert in_5["eos"] == "<|im_end|>" and "<|im_start|>" in in_5["special"]
