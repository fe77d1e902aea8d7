"""A merged model folder as one GGUF file: the format llama.cpp, LM Studio, Ollama and Jan load.

Built on the `gguf` package, which is kept with llama.cpp: its writer, its map from Hugging Face
tensor names to GGUF ones, its special-token reader and its numpy quantisers (F16, Q8_0). What
is written follows llama.cpp's reference converter (convert_hf_to_gguf.py) for the architectures
the app trains: Llama-shaped models (Llama 3.x, SmolLM2, Mistral), Qwen2, Qwen3, Phi-3 (Phi-4-mini),
Gemma 3 (text) and SmolLM3, with a byte-level BPE tokenizer or a SentencePiece-style one
(Mistral v0.3's, Gemma 3's: see gguf_vocab.py). Anything else is refused by
`unsupported_reason` before any work starts.

Q4_K_M has no numpy quantiser: llama.cpp's own (`llama_model_quantize`, reached through the
optional llama-cpp-python package) turns the F16 file into it.

No torch here: the safetensors files are read with numpy (bf16 widened to float32 by hand), so
the conversion runs in a plain worker process. Each file is written under a temporary name and
renamed when complete, so a stop or a crash never leaves a half GGUF under the final name.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from finetuneflow.core.export import gguf_vocab
from finetuneflow.core.progress import CancelToken, ProgressSink, ignore_progress

F16, Q8_0, Q4_K_M = "f16", "q8_0", "q4_k_m"
QUANTISATIONS = (F16, Q8_0, Q4_K_M)
LABELS = {F16: "F16", Q8_0: "Q8_0", Q4_K_M: "Q4_K_M"}
LLAMA_CPP_PACKAGE = "llama-cpp-python"
# HF architecture -> llama.cpp architecture name; q/k rows are permuted for llama's rope layout.
ARCHITECTURES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "llama",
                 "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3",
                 "Phi3ForCausalLM": "phi3", "Gemma3ForCausalLM": "gemma3",
                 "SmolLM3ForCausalLM": "smollm3"}
_PERMUTED = {"llama", "smollm3"}
_NORM_PLUS_ONE = {"gemma3"}  # Gemma's RMSNorm scales by (1 + weight); llama.cpp's by weight
_SMOLLM3_NO_ROPE_STEP = 4  # llama.cpp skips rope on every 4th SmolLM3 layer, whatever the config
# The pre-tokenizer's split regex (as tokenizer.json writes it) -> llama.cpp's name for it.
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# o200k's (GPT-4o's, Phi-4-mini's): cased words with their contractions
_GPT4O_SPLIT = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
                r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+"
                r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_SPLITS = {_LLAMA3_SPLIT: "llama-bpe", _LLAMA3_SPLIT.replace(r"\p{N}{1,3}", r"\p{N}"): "qwen2",
           _GPT4O_SPLIT: "gpt-4o"}
# Tokens that end an assistant turn in the chat families the app knows (GGUF's EOT id).
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")
_SAFETENSORS_DTYPES: dict[str, npt.DTypeLike] = {"F32": np.float32, "F16": np.float16,
                                                 "BF16": np.uint16}


class GgufError(Exception):
    """The model cannot be written as GGUF; the message says why and what to do."""


@dataclass(frozen=True)
class GgufFile:
    path: Path
    quantisation: str  # one of QUANTISATIONS
    bytes: int


def file_name(quantisation: str) -> str:
    return f"model-{quantisation}.gguf"


def quantiser_missing(quantisation: str) -> str | None:
    """Why this quantisation cannot be made on this computer; None when it can."""
    if quantisation not in QUANTISATIONS:
        return f"Unknown GGUF quantisation {quantisation!r}: choose {', '.join(QUANTISATIONS)}."
    if quantisation == Q4_K_M and find_spec("llama_cpp") is None:
        return (f"Q4_K_M needs llama.cpp's quantiser: install it with `pip install "
                f"'finetuneflow[gguf-q4]'` ({LLAMA_CPP_PACKAGE}); F16 and Q8_0 work without "
                "it.")
    return None


def unsupported_reason(model_dir: Path) -> str | None:
    """Why this model folder cannot become a GGUF here (checked before any work); None if it
    can. Reads config.json and tokenizer.json only."""
    try:
        config = _read_json(model_dir / "config.json")
        arch = _architecture(config)
        _check_shape(arch, config)
        _rope_scaling(_rope_parameters(config), arch)
        _check_tokenizer(_read_json(model_dir / "tokenizer.json"))
    except GgufError as error:
        return str(error)
    return None


# --- reading the model folder -----------------------------------------------------------------

def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise GgufError(f"{path.name} is missing from {path.parent}: the model folder is "
                        "incomplete; export the merged model again.")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _architecture(config: dict[str, Any]) -> str:
    architecture = (config.get("architectures") or ["unknown"])[0]
    if architecture not in ARCHITECTURES:
        known = ", ".join(sorted(ARCHITECTURES))
        raise GgufError(f"GGUF export does not support {architecture} models yet (only "
                        f"{known}): export without GGUF and convert the merged model with "
                        "llama.cpp's convert_hf_to_gguf.py.")
    return ARCHITECTURES[architecture]


def _check_shape(arch: str, config: dict[str, Any]) -> None:
    """Refuse settings llama.cpp fixes for the architecture where this model's differ."""
    problem = None
    layers = int(config["num_hidden_layers"])
    if arch == "smollm3":
        expected = [int((layer + 1) % _SMOLLM3_NO_ROPE_STEP != 0) for layer in range(layers)]
        if list(config.get("no_rope_layers") or expected) != expected:
            problem = ("its layers without rope are not every 4th layer, the only pattern "
                       "llama.cpp runs for SmolLM3")
    elif arch == "gemma3" and config.get("query_pre_attn_scalar", _head_dim(config)) != \
            _head_dim(config):
        problem = "its query_pre_attn_scalar differs from head_dim, which llama.cpp assumes"
    elif arch == "llama" and config.get("sliding_window"):
        problem = "it has a sliding attention window, which llama.cpp's llama models lack"
    if problem:  # llama.cpp's own converter would write a file that runs the model wrongly
        raise GgufError(f"This {config['architectures'][0]} model cannot run in llama.cpp as "
                        f"trained: {problem}. Export it without GGUF (llama.cpp's "
                        "convert_hf_to_gguf.py cannot fix this either).")


def _check_tokenizer(tokenizer: dict[str, Any]) -> None:
    if not gguf_vocab.is_sentencepiece_style(tokenizer):
        _pre_tokenizer(tokenizer)
    elif problem := gguf_vocab.space_prefix_problem(tokenizer):
        raise GgufError(f"This model's SentencePiece-style tokenizer cannot be written as GGUF: "
                        f"{problem}. Export without GGUF and convert the merged model with "
                        "llama.cpp's convert_hf_to_gguf.py.")


def _pre_tokenizer(tokenizer: dict[str, Any]) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenizer (how text is split before BPE)."""
    model = tokenizer.get("model") or {}
    steps = _steps(tokenizer.get("pre_tokenizer"))
    kinds = [step.get("type") for step in steps]
    name: str | None = None
    if model.get("type") == "BPE" and kinds and kinds[-1] == "ByteLevel":
        if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
            name = "gpt-2"
        elif kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits"):
            name = "smollm"
        elif (kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True)
              and steps[0].get("behavior") == "Isolated" and not steps[0].get("invert")):
            name = _SPLITS.get((steps[0].get("pattern") or {}).get("Regex", ""))
    if name is None:
        raise GgufError("GGUF export supports byte-level BPE tokenizers of the GPT-2, SmolLM, "
                        "Llama 3, Qwen2 and GPT-4o kinds and SentencePiece-style ones (Mistral, "
                        "Gemma), not this model's: export without GGUF and convert the merged "
                        "model with llama.cpp's convert_hf_to_gguf.py.")
    return name


def _steps(pre_tokenizer: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not pre_tokenizer:
        return []
    if pre_tokenizer.get("type") == "Sequence":
        steps: list[dict[str, Any]] = pre_tokenizer.get("pretokenizers", [])
        return steps
    return [pre_tokenizer]


@dataclass(frozen=True)
class _Tensor:
    name: str
    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int  # byte offset in the file
    end: int

    def load(self) -> npt.NDArray[np.float32]:
        data = np.memmap(self.file, dtype=_SAFETENSORS_DTYPES[self.dtype], mode="r",
                         offset=self.start, shape=self.shape)
        if self.dtype == "BF16":  # bf16 is the top half of a float32
            return (data.astype(np.uint32) << 16).view(np.float32)
        return np.asarray(data, dtype=np.float32)


def _safetensors(model_dir: Path) -> dict[str, _Tensor]:
    """Every tensor of the folder's *.safetensors files (header only; the data stays on disk)."""
    tensors: dict[str, _Tensor] = {}
    for path in sorted(model_dir.glob("*.safetensors")):
        with path.open("rb") as stream:
            (length,) = struct.unpack("<Q", stream.read(8))
            header = json.loads(stream.read(length))
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            if entry["dtype"] not in _SAFETENSORS_DTYPES:
                raise GgufError(f"{path.name} holds {entry['dtype']} weights ({name}); GGUF "
                                "export reads float32, float16 and bfloat16 models.")
            start, end = entry["data_offsets"]
            tensors[name] = _Tensor(name, path, entry["dtype"], tuple(entry["shape"]),
                                    8 + length + start, 8 + length + end)
    if not tensors:
        raise GgufError(f"There is no .safetensors file in {model_dir}: export the merged "
                        "model again.")
    return tensors


# --- what goes into the file ------------------------------------------------------------------

Array = npt.NDArray[Any]


@dataclass(frozen=True)
class _Planned:
    """One GGUF tensor: where its data comes from and how it is stored."""

    name: str
    shape: tuple[int, ...]
    qtype: Any  # gguf.GGMLQuantizationType
    load: Callable[[], Array]


def _permute(weights: Array, heads: int) -> Array:
    """llama.cpp's rope pairs dimensions (i, i + d/2) the other way round from HF's layout."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _rope_parameters(config: dict[str, Any], layers: str = "full_attention") -> dict[str, Any]:
    """rope_theta and scaling, as transformers 4 (top level) or 5 (rope_parameters) saves them;
    Gemma 3 keeps one set per kind of layer (full or sliding attention)."""
    parameters = dict(config.get("rope_scaling") or {})
    parameters.update(config.get("rope_parameters") or {})
    parameters = dict(parameters.get(layers) or parameters)
    parameters.pop("sliding_attention", None)
    local = config.get("rope_local_base_freq") if layers == "sliding_attention" else None
    parameters.setdefault("rope_theta", local or config.get("rope_theta", 10000.0))
    return parameters


def _head_dim(config: dict[str, Any]) -> int:
    return int(config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"])


def _llama3_rope_factors(config: dict[str, Any]) -> Array:
    """Per-frequency rope scaling of Llama 3.1+ ("llama3" rope type), stored as rope_freqs."""
    rope = _rope_parameters(config)
    dim = _head_dim(config)
    factor = rope.get("factor", 8.0)
    low, high = rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    context = rope.get("original_max_position_embeddings", 8192)
    factors = []
    for index in range(0, dim, 2):
        wavelength = 2 * math.pi * rope["rope_theta"] ** (index / dim)
        if wavelength < context / high:
            factors.append(1.0)
        elif wavelength > context / low:
            factors.append(factor)
        else:
            smooth = (context / wavelength - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


def _plan(model_dir: Path, config: dict[str, Any], arch: str, quantisation: str
          ) -> list[_Planned]:
    import gguf

    tensors = _safetensors(model_dir)
    blocks = int(config["num_hidden_layers"])
    names = gguf.get_tensor_name_map(_model_arch(arch), blocks)
    tied = bool(config.get("tie_word_embeddings")) and "lm_head.weight" in tensors
    planned = []
    for hf_name, tensor in tensors.items():
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp reuses token_embd when there is no output tensor
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise GgufError(f"The merged model has a tensor GGUF has no name for ({hf_name}): "
                            "convert it with llama.cpp's convert_hf_to_gguf.py instead.")
        planned.append(_Planned(name, tensor.shape, _storage(name, tensor.shape, quantisation),
                                _loader(tensor, arch, config)))
    rope = _rope_parameters(config)
    extra = {}
    if _rope_scaling(rope, arch) == "llama3":
        extra[gguf.MODEL_TENSOR.ROPE_FREQS] = _llama3_rope_factors(config)
    elif _rope_scaling(rope, arch) == "longrope":  # llama.cpp picks one set by context size
        extra[gguf.MODEL_TENSOR.ROPE_FACTORS_LONG] = np.array(rope["long_factor"], np.float32)
        extra[gguf.MODEL_TENSOR.ROPE_FACTORS_SHORT] = np.array(rope["short_factor"], np.float32)
    for kind, factors in extra.items():
        planned.append(_Planned(gguf.TENSOR_NAMES[kind] + ".weight", factors.shape,
                                gguf.GGMLQuantizationType.F32, _constant(factors)))
    return planned


def _constant(value: Array) -> Callable[[], Array]:
    return lambda: value


def _loader(tensor: _Tensor, arch: str, config: dict[str, Any]) -> Callable[[], Array]:
    heads = int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads") or heads)
    permute = None
    if arch in _PERMUTED and tensor.name.endswith(("q_proj.weight", "q_proj.bias")):
        permute = heads
    elif arch in _PERMUTED and tensor.name.endswith(("k_proj.weight", "k_proj.bias")):
        permute = kv_heads
    shift = arch in _NORM_PLUS_ONE and tensor.name.endswith("norm.weight")

    def load() -> Array:
        data = tensor.load()
        if shift:
            data = data + 1.0
        return _permute(data, permute) if permute else data

    return load


def _storage(name: str, shape: tuple[int, ...], quantisation: str) -> Any:
    """How one tensor is stored: vectors and norms in F32 (llama.cpp wants them so), matrices
    in the file's type; Q8_0 needs rows that are a multiple of its block, else F16."""
    import gguf

    types = gguf.GGMLQuantizationType
    if len(shape) <= 1 or name.endswith("_norm.weight") or not name.endswith(".weight"):
        return types.F32
    if quantisation == Q8_0:
        block, _ = gguf.GGML_QUANT_SIZES[types.Q8_0]
        return types.Q8_0 if shape[-1] % block == 0 else types.F16
    return types.F16


def _model_arch(arch: str) -> Any:
    import gguf

    return next(key for key, value in gguf.MODEL_ARCH_NAMES.items() if value == arch)


# --- writing ----------------------------------------------------------------------------------

def write_gguf(model_dir: Path, target: Path, quantisation: str, *, name: str,
               progress: ProgressSink = ignore_progress,
               cancel: CancelToken | None = None) -> GgufFile:
    """Write `model_dir` (a merged model) as `target` in F16 or Q8_0; Q4_K_M goes through
    `quantize_with_llama_cpp`. Raises GgufError when the model is not supported."""
    import gguf

    if quantisation not in (F16, Q8_0):
        raise GgufError(f"{LABELS.get(quantisation, quantisation)} is made from the F16 file.")
    config = _read_json(model_dir / "config.json")
    arch = _architecture(config)
    _check_shape(arch, config)
    planned = _plan(model_dir, config, arch, quantisation)
    with _temporary(target) as partial:
        writer = gguf.GGUFWriter(partial, arch)
        _write_parameters(writer, config, name, quantisation)
        _write_vocab(writer, model_dir, config)
        for tensor in planned:  # the header lists every tensor's type and size first
            byte_shape = gguf.quant_shape_to_byte_shape(tensor.shape, tensor.qtype)
            writer.add_tensor_info(tensor.name, byte_shape, np.dtype(np.uint8),
                                   math.prod(byte_shape), raw_dtype=tensor.qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for number, tensor in enumerate(planned, start=1):
            if cancel is not None:
                cancel.raise_if_cancelled()
            writer.write_tensor_data(gguf.quants.quantize(tensor.load(), tensor.qtype))
            progress(number / len(planned), f"Writing {target.name}: tensor {number} of "
                                            f"{len(planned)}")
        writer.close()
    return GgufFile(target, quantisation, target.stat().st_size)


def _write_parameters(writer: Any, config: dict[str, Any], name: str, quantisation: str
                      ) -> None:
    import gguf

    rope = _rope_parameters(config)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(_gguf_name(name))
    writer.add_vocab_size(int(config["vocab_size"]))
    writer.add_context_length(int(config.get("max_position_embeddings", 2048)))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_block_count(int(config["num_hidden_layers"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(int(config["num_attention_heads"]))
    writer.add_head_count_kv(int(config.get("num_key_value_heads")
                                 or config["num_attention_heads"]))
    rotary = config.get("partial_rotary_factor") or rope.get("partial_rotary_factor", 1.0)
    writer.add_rope_dimension_count(int(_head_dim(config) * rotary))
    writer.add_rope_freq_base(float(rope["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    if config.get("head_dim"):
        writer.add_key_length(_head_dim(config))
        writer.add_value_length(_head_dim(config))
    _write_rope_scaling(writer, config)
    _write_attention_window(writer, config)
    file_types = {F16: gguf.LlamaFileType.MOSTLY_F16, Q8_0: gguf.LlamaFileType.MOSTLY_Q8_0}
    writer.add_file_type(file_types[quantisation])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _gguf_name(name: str) -> str:
    """The name without "phi3"/"phi-3": llama.cpp gives such models Phi-3's SentencePiece token
    rules and fails to load a byte-level BPE vocabulary without "</s>"."""
    for quirk in ("phi-3", "phi3"):
        start = name.lower().find(quirk)
        while start >= 0:
            name = f"{name[:start]}{name[start:start + 3]} {name[start + len(quirk) - 1:]}"
            start = name.lower().find(quirk)
    return name


def _rope_scaling(rope: dict[str, Any], arch: str = "") -> str:
    kind = str(rope.get("rope_type") or rope.get("type") or "default").lower()
    # llama3 is the rope_freqs tensor, longrope (Phi-3's) the long and short factor tensors
    known = ("default", "linear", "llama3", *(("longrope", "su") if arch == "phi3" else ()))
    if kind not in known:
        raise GgufError(f"GGUF export does not handle {kind!r} rope scaling yet: convert the "
                        "merged model with llama.cpp's convert_hf_to_gguf.py.")
    return "longrope" if kind == "su" else kind


def _original_context(config: dict[str, Any]) -> int:
    return int(config.get("original_max_position_embeddings")
               or _rope_parameters(config).get("original_max_position_embeddings")
               or config["max_position_embeddings"])


def _write_rope_scaling(writer: Any, config: dict[str, Any]) -> None:
    import gguf

    rope = _rope_parameters(config)
    kind = _rope_scaling(rope, _architecture(config))
    if kind == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    elif kind == "longrope":  # transformers scales cos and sin by this at every length
        original = _original_context(config)
        scale = int(config["max_position_embeddings"]) / original
        factor = rope.get("attention_factor") or (
            math.sqrt(1 + math.log(scale) / math.log(original)) if scale > 1 else 1.0)
        writer.add_rope_scaling_attn_factors(float(factor))


def _write_attention_window(writer: Any, config: dict[str, Any]) -> None:
    """Gemma 3's sliding-window layers (their own rope base), Phi-3's window (0: Phi-4, none)."""
    arch = _architecture(config)
    if arch == "phi3":
        writer.add_sliding_window(int(config.get("sliding_window") or 0))
        writer.add_rope_scaling_orig_ctx_len(_original_context(config))
    elif arch == "gemma3" and config.get("sliding_window"):
        writer.add_sliding_window(int(config["sliding_window"]))
        default = [(layer + 1) % 6 != 0 for layer in range(int(config["num_hidden_layers"]))]
        sliding = [kind == "sliding_attention" for kind in config.get("layer_types") or []]
        if sliding and sliding != default:  # llama.cpp assumes Gemma 3's 5:1 pattern otherwise
            writer.add_sliding_window_pattern(sliding)
        writer.add_rope_freq_base_swa(float(
            _rope_parameters(config, "sliding_attention")["rope_theta"]))
    if config.get("final_logit_softcapping"):
        writer.add_final_logit_softcapping(float(config["final_logit_softcapping"]))


def _write_vocab(writer: Any, model_dir: Path, config: dict[str, Any]) -> None:
    """Tokens, merges, special-token ids (BOS, EOS, EOT, pad) and the chat template."""
    import gguf

    tokenizer = _read_json(model_dir / "tokenizer.json")
    size = int(config["vocab_size"])
    _check_tokenizer(tokenizer)
    ids = [*tokenizer["model"]["vocab"].values(),
           *(entry["id"] for entry in tokenizer.get("added_tokens", []))]
    if max(ids) >= size:
        raise GgufError("The tokenizer has more tokens than the model's vocab_size: the model "
                        "folder does not match its tokenizer; export the merged model again.")
    sentencepiece = gguf_vocab.is_sentencepiece_style(tokenizer)
    if sentencepiece:
        gguf_vocab.write_sentencepiece_vocab(writer, tokenizer, size)
    else:
        tokens, kinds = _tokens(tokenizer, size)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(_pre_tokenizer(tokenizer))
        writer.add_token_list(tokens)
        writer.add_token_types(kinds)
    # llama.cpp's SentencePiece tokenizer works from scores; merges are for its BPE one
    special = gguf.SpecialVocab(model_dir, load_merges=not sentencepiece, n_vocab=size)
    special.add_special_token.setdefault("bos", False)  # HF adds a BOS only by post-processor
    special.add_to_gguf(writer, quiet=True)
    added = {entry["content"]: entry["id"] for entry in tokenizer.get("added_tokens", [])}
    eot = next((added[token] for token in END_OF_TURN if token in added), None)
    if eot is not None:
        writer.add_eot_token_id(eot)


def _tokens(tokenizer: dict[str, Any], size: int) -> tuple[list[str], list[int]]:
    import gguf

    by_id = {index: token for token, index in tokenizer["model"]["vocab"].items()}
    added = {entry["id"]: entry for entry in tokenizer.get("added_tokens", [])}
    tokens, kinds = [], []
    for index in range(size):
        if index in added:
            content = added[index]["content"]
            control = added[index].get("special") or (content.startswith("<|")
                                                      and content.endswith("|>"))
            tokens.append(content)
            kinds.append(gguf.TokenType.CONTROL if control else gguf.TokenType.USER_DEFINED)
        elif index in by_id:
            tokens.append(by_id[index])
            kinds.append(gguf.TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{index}]")
            kinds.append(gguf.TokenType.UNUSED)
    return tokens, [int(kind) for kind in kinds]


class _temporary:
    """A temporary path beside `target`, renamed to it on success and removed otherwise."""

    def __init__(self, target: Path) -> None:
        self._target = target

    def __enter__(self) -> Path:
        self._target.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=self._target.parent, prefix=f".{self._target.name}.",
                                        suffix=".partial")
        os.close(handle)
        self._path = Path(name)
        return self._path

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            os.replace(self._path, self._target)
        else:
            self._path.unlink(missing_ok=True)


def quantize_with_llama_cpp(source: Path, target: Path) -> GgufFile:
    """Q4_K_M from an F16 GGUF with llama.cpp's own quantiser (the optional llama-cpp-python
    package: its C function llama_model_quantize). Not cancellable: it takes seconds."""
    if reason := quantiser_missing(Q4_K_M):
        raise GgufError(reason)
    import llama_cpp  # type: ignore[import-not-found, unused-ignore]

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    with _temporary(target) as partial:
        code = llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(),
                                              ctypes.byref(params))
        if code != 0:
            raise GgufError(f"llama.cpp could not quantise {source.name} to Q4_K_M (code "
                            f"{code}); F16 and Q8_0 files are not affected.")
    return GgufFile(target, Q4_K_M, target.stat().st_size)

