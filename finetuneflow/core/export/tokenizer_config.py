"""An exported tokenizer_config.json that transformers 4.x reads as well as 5.x.

transformers 5 writes a class name 4.x does not know (`TokenizersBackend`), its extra special
tokens as a list under a key 4.x expects to be a dict (4.x then tries a slow conversion and
fails), and the arguments the folder was loaded with (`is_local`, `local_files_only`, …).
Tools that pin 4.x, such as llama.cpp's convert_hf_to_gguf.py, then cannot load the folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from finetuneflow.core.atomic import atomic_write_text

FILE_NAME = "tokenizer_config.json"
# Loading arguments, not facts about the tokenizer; `token` would also leak a secret.
LOADING_KEYS = ("is_local", "local_files_only", "cache_dir", "revision", "token",
                "trust_remote_code", "_commit_hash")
CLASS_RENAMES = {"TokenizersBackend": "PreTrainedTokenizerFast"}  # the name both versions know


def portable_tokenizer_config(config: dict[str, Any]) -> dict[str, Any]:
    portable = {key: value for key, value in config.items() if key not in LOADING_KEYS}
    name = portable.get("tokenizer_class")
    if isinstance(name, str):
        portable["tokenizer_class"] = CLASS_RENAMES.get(name, name)
    extra = portable.get("extra_special_tokens")
    if isinstance(extra, list):  # 5.x's list is 4.x's additional_special_tokens
        del portable["extra_special_tokens"]
        additional = portable.get("additional_special_tokens") or []
        portable["additional_special_tokens"] = list(dict.fromkeys([*additional, *extra]))
    return portable


def make_tokenizer_config_portable(folder: Path) -> None:
    """Rewrite the folder's tokenizer_config.json, if it has one, in the portable form."""
    path = folder / FILE_NAME
    if path.is_file():
        config = json.loads(path.read_text(encoding="utf-8"))
        atomic_write_text(path, json.dumps(portable_tokenizer_config(config), indent=2,
                                           ensure_ascii=False) + "\n")
