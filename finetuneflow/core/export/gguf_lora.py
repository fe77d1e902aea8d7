"""A trained PEFT LoRA adapter as a LoRA GGUF: llama.cpp applies it on top of the base model's
GGUF at load time (`llama-cli -m base.gguf --lora adapter.gguf`, Ollama's `ADAPTER` line), so
one base serves several adapters.

The layout follows llama.cpp's reference converter (convert_lora_to_gguf.py): `general.type`
"adapter", `adapter.type` "lora", `adapter.lora.alpha`, and per adapted weight two tensors named
after the base's GGUF tensor, `<name>.lora_a` (rank x in) and `<name>.lora_b` (out x rank).
Names and the llama q/k row permutation come from core/export/gguf.py, so adapter and base
agree: permuting the rows of W + B·A is permuting the rows of B, so only lora_b is permuted.

llama.cpp scales B·A by alpha / rank (rank read from the tensors). PEFT does the same, or by
alpha / sqrt(rank) with rsLoRA, which is written as the equivalent alpha. DoRA, per-module alpha,
extra full tensors (modules_to_save) and adapted embeddings have no llama.cpp equivalent here and
are refused before any work.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from finetuneflow.core.export.gguf import (
    _PERMUTED,
    ARCHITECTURES,
    Array,
    GgufError,
    GgufFile,
    _architecture,
    _model_arch,
    _permute,
    _read_json,
    _safetensors,
    _temporary,
)
from finetuneflow.core.progress import CancelToken

F16, F32 = "f16", "f32"
ADAPTER_CONFIG = "adapter_config.json"
_PEFT_PREFIX = "base_model.model."
_LORA_SUFFIXES = {".lora_A.weight": "lora_a", ".lora_B.weight": "lora_b"}
_CONVERT = ("convert it with llama.cpp's convert_lora_to_gguf.py, or export without the "
            "adapter GGUF and use the merged model.")


def adapter_file_name(precision: str = F16) -> str:
    return f"adapter-{precision}.gguf"


def unsupported_reason(adapter_dir: Path, base_dir: Path) -> str | None:
    """Why this adapter cannot become a LoRA GGUF (checked before any work); None if it can.
    Reads the two config files only."""
    try:
        _lora_architecture(_read_json(base_dir / "config.json"))
        _alpha(_read_json(adapter_dir / ADAPTER_CONFIG))
    except GgufError as error:
        return str(error)
    return None


def _lora_architecture(config: dict[str, Any]) -> str:
    """llama.cpp's name for the base's architecture; the adapter's own advice when unknown."""
    architecture = (config.get("architectures") or ["unknown"])[0]
    if architecture not in ARCHITECTURES:
        raise GgufError(f"The adapter GGUF does not support {architecture} models yet (only "
                        f"{', '.join(sorted(ARCHITECTURES))}): " + _CONVERT)
    return _architecture(config)


def _alpha(adapter_config: dict[str, Any]) -> float:
    """The alpha llama.cpp needs (it scales by alpha / rank) for PEFT's scaling."""
    if adapter_config.get("peft_type", "LORA") != "LORA":
        raise GgufError(f"The adapter is a {adapter_config['peft_type']} adapter, not LoRA: "
                        + _CONVERT)
    if adapter_config.get("use_dora"):
        raise GgufError("llama.cpp cannot apply a DoRA adapter: export the merged model "
                        "instead.")
    if adapter_config.get("alpha_pattern") or adapter_config.get("modules_to_save"):
        raise GgufError("The adapter has per-module alpha or fully trained modules, which a "
                        "LoRA GGUF cannot hold: " + _CONVERT)
    alpha = float(adapter_config.get("lora_alpha") or 8)
    if adapter_config.get("use_rslora"):  # PEFT scales by alpha / sqrt(rank)
        alpha *= math.sqrt(float(adapter_config.get("r") or 8))
    return alpha


def _base_name(peft_name: str) -> tuple[str, str]:
    """("model.layers.0.self_attn.q_proj.weight", "lora_a") for a PEFT tensor name."""
    for suffix, part in _LORA_SUFFIXES.items():
        if peft_name.endswith(suffix):
            return peft_name.removeprefix(_PEFT_PREFIX).removesuffix(suffix) + ".weight", part
    raise GgufError(f"The adapter holds a tensor that is not a LoRA matrix ({peft_name}): "
                    + _CONVERT)


def _lora_tensors(adapter_dir: Path, config: dict[str, Any], arch: str
                  ) -> list[tuple[str, Array]]:
    """(GGUF name, float32 data) for every lora_a and lora_b, in the file's order."""
    import gguf

    names = gguf.get_tensor_name_map(_model_arch(arch), int(config["num_hidden_layers"]))
    heads = int(config["num_attention_heads"])
    rows_per = {"q_proj": heads, "k_proj": int(config.get("num_key_value_heads") or heads)}
    tensors = []
    for peft_name, tensor in _safetensors(adapter_dir).items():
        base, part = _base_name(peft_name)
        name = names.get_name(base, try_suffixes=(".weight",))
        if name is None or name.startswith(("token_embd", "output.")):
            raise GgufError(f"llama.cpp has no LoRA slot for {base} in this model: " + _CONVERT)
        data = tensor.load()
        module = base.split(".")[-2]
        if part == "lora_b" and arch in _PERMUTED and module in rows_per:
            data = _permute(data, rows_per[module])
        tensors.append((f"{name}.{part}", data))
    return tensors


def write_lora_gguf(adapter_dir: Path, base_dir: Path, target: Path, precision: str = F16, *,
                    name: str, cancel: CancelToken | None = None) -> GgufFile:
    """Write the adapter in `adapter_dir` (trained on the model in `base_dir`, whose
    config.json names the architecture) as a LoRA GGUF in F16 or F32."""
    import gguf

    if precision not in (F16, F32):
        raise GgufError(f"A LoRA GGUF is written in F16 or F32, not {precision!r}.")
    config = _read_json(base_dir / "config.json")
    arch = _lora_architecture(config)
    alpha = _alpha(_read_json(adapter_dir / ADAPTER_CONFIG))
    tensors = _lora_tensors(adapter_dir, config, arch)
    dtype = np.float16 if precision == F16 else np.float32
    with _temporary(target) as partial:
        writer = gguf.GGUFWriter(partial, arch)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        writer.add_name(name)
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if precision == F16
                             else gguf.LlamaFileType.ALL_F32)
        for tensor_name, data in tensors:
            if cancel is not None:
                cancel.raise_if_cancelled()
            writer.add_tensor(tensor_name, data.astype(dtype))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return GgufFile(target, precision, target.stat().st_size)
