"""How much memory a LoRA/QLoRA run needs, from the model's config.json alone (no weights).

The Hardware page shows this before anything is downloaded or loaded, so it works from the
architecture's shapes: the parameter count, which Linear layers get adapters (counted exactly as
PEFT does: r × (in + out) per targeted Linear), their gradients and AdamW states, the
activations the backward pass keeps, and a fixed overhead.

What the trainer does, and so what is counted here:
- LoRA: the model in 16-bit on a GPU (fp32 on a CPU), adapters in fp32 (PEFT upcasts them).
- QLoRA: every Linear of the decoder layers in NF4 (4-bit, blocks of 64 with double-quantised
  constants); embeddings, lm_head, norms and biases in 16-bit; adapters in bf16 (TRL casts them).
- AdamW keeps two states per trainable parameter in its dtype.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from finetuneflow.core.training.config import ALL_LINEAR, TrainingConfig
from finetuneflow.core.units import MIB, format_bytes

NF4_BLOCKSIZE = 64
NF4_NESTED_BLOCKSIZE = 256
CUDA_CONTEXT_BYTES = 500 * MIB
FRAGMENTATION = 0.10  # the CUDA caching allocator's slack over what tensors need
CPU_RUNTIME_BYTES = 500 * MIB  # Python + torch + transformers + trl, resident after import
CPU_ALLOCATOR_FACTOR = 2.4  # peak RSS ÷ live activation tensors, measured (tests/bench/train.py)
# TRL's fused LM head scores the vocabulary in [4096 tokens × 32768 words] tiles and never
# holds the full logits.
LOGITS_TILE_TOKENS = 4096
LOGITS_TILE_VOCAB = 32_768

DTYPE_BYTES = {"float32": 4, "fp32": 4, "float16": 2, "fp16": 2, "bfloat16": 2, "bf16": 2}


@dataclass(frozen=True)
class LinearShape:
    name: str  # as PEFT sees it inside a decoder layer, e.g. "self_attn.q_proj"
    in_features: int
    out_features: int
    bias: bool = False

    @property
    def params(self) -> int:
        return self.in_features * self.out_features + (self.out_features if self.bias else 0)


@dataclass(frozen=True)
class ModelShape:
    model_type: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    tied_embeddings: bool
    layer_linears: tuple[LinearShape, ...]
    layer_norm_params: int  # all norm weights of one decoder layer
    eager_attention: bool  # attention scores are materialised (no fused kernel)
    config_dtype_bytes: int

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def layer_linear_params(self) -> int:
        return sum(linear.params for linear in self.layer_linears)

    @property
    def embedding_params(self) -> int:
        """Input embeddings plus lm_head (once when they are tied)."""
        return self.vocab_size * self.hidden_size * (1 if self.tied_embeddings else 2)

    @property
    def total_params(self) -> int:
        per_layer = self.layer_linear_params + self.layer_norm_params
        return self.embedding_params + self.num_layers * per_layer + self.hidden_size


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per category. `trainable` = adapter weights + their gradients."""

    weights: int
    trainable: int
    optimizer: int
    activations: int
    overhead: int
    trainable_params: int
    total_params: int
    method: str
    device: str

    @property
    def total(self) -> int:
        return self.weights + self.trainable + self.optimizer + self.activations + self.overhead

    def summary(self) -> str:
        parts = [("model", self.weights), ("adapters", self.trainable + self.optimizer),
                 ("activations", self.activations), ("overhead", self.overhead)]
        detail = ", ".join(f"{name} {format_bytes(size)}" for name, size in parts)
        return f"about {format_bytes(self.total)} ({detail})"



# --- architectures ----------------------------------------------------------------------------

ATTENTION_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj")
TIED_BY_DEFAULT = {"gemma", "gemma2", "gemma3_text"}
FOUR_NORMS = {"gemma2", "gemma3_text"}  # pre/post norms around both attention and MLP
QK_NORMS = {"qwen3", "gemma3_text"}  # an RMSNorm over head_dim on queries and keys
BIASED_QKV = {"qwen2"}
FUSED = {"phi3"}  # qkv_proj and gate_up_proj


def _text_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """Multimodal configs nest the language model's settings in text_config."""
    text = config.get("text_config")
    return text if isinstance(text, Mapping) and "hidden_size" in text else config


def _first(config: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    if default is None:
        raise ValueError(f"config.json has none of {', '.join(keys)}: cannot size this model")
    return default


def _dtype_bytes(config: Mapping[str, Any]) -> int:
    name = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")
    return DTYPE_BYTES.get(name.removeprefix("torch."), 2)


def _attention_linears(model_type: str, hidden: int, q_dim: int, kv_dim: int,
                       config: Mapping[str, Any]) -> list[LinearShape]:
    if model_type in FUSED:
        return [LinearShape("self_attn.qkv_proj", hidden, q_dim + 2 * kv_dim),
                LinearShape("self_attn.o_proj", q_dim, hidden)]
    attention_bias = bool(config.get("attention_bias", False))
    qkv_bias = model_type in BIASED_QKV or attention_bias
    return [LinearShape("self_attn.q_proj", hidden, q_dim, qkv_bias),
            LinearShape("self_attn.k_proj", hidden, kv_dim, qkv_bias),
            LinearShape("self_attn.v_proj", hidden, kv_dim, qkv_bias),
            LinearShape("self_attn.o_proj", q_dim, hidden, attention_bias)]


def _mlp_linears(model_type: str, hidden: int, intermediate: int,
                 config: Mapping[str, Any]) -> list[LinearShape]:
    bias = bool(config.get("mlp_bias", False))
    if model_type in FUSED:
        return [LinearShape("mlp.gate_up_proj", hidden, 2 * intermediate, bias),
                LinearShape("mlp.down_proj", intermediate, hidden, bias)]
    return [LinearShape("mlp.gate_proj", hidden, intermediate, bias),
            LinearShape("mlp.up_proj", hidden, intermediate, bias),
            LinearShape("mlp.down_proj", intermediate, hidden, bias)]


def model_shape(config: Mapping[str, Any]) -> ModelShape:
    """The shapes that matter for memory, for llama, mistral, qwen2/3, gemma/2/3, phi3 and any
    decoder-only config that uses the same key names (treated like llama)."""
    text = _text_config(config)
    model_type = str(text.get("model_type") or config.get("model_type") or "llama")
    hidden = int(_first(text, "hidden_size", "n_embd", "d_model"))
    layers = int(_first(text, "num_hidden_layers", "n_layer", "num_layers"))
    heads = int(_first(text, "num_attention_heads", "n_head"))
    kv_heads = int(_first(text, "num_key_value_heads", default=heads))
    head_dim = int(_first(text, "head_dim", default=hidden // heads))
    intermediate = int(_first(text, "intermediate_size", "n_inner", default=4 * hidden))
    vocab = int(_first(text, "vocab_size"))
    tied = text.get("tie_word_embeddings", config.get("tie_word_embeddings"))
    if tied is None:
        tied = model_type in TIED_BY_DEFAULT
    q_dim, kv_dim = heads * head_dim, kv_heads * head_dim
    linears = (_attention_linears(model_type, hidden, q_dim, kv_dim, text)
               + _mlp_linears(model_type, hidden, intermediate, text))
    norms = (4 if model_type in FOUR_NORMS else 2) * hidden
    norms += 2 * head_dim if model_type in QK_NORMS else 0
    return ModelShape(
        model_type=model_type, vocab_size=vocab, hidden_size=hidden, num_layers=layers,
        intermediate_size=intermediate, num_heads=heads, num_kv_heads=kv_heads,
        head_dim=head_dim, tied_embeddings=bool(tied), layer_linears=tuple(linears),
        layer_norm_params=norms, eager_attention=model_type == "gemma2",
        config_dtype_bytes=_dtype_bytes(text if "torch_dtype" in text else config))


def count_parameters(config: Mapping[str, Any]) -> int:
    """Total parameters of the causal LM described by config.json."""
    return model_shape(config).total_params


def targeted_linears(shape: ModelShape, target_modules: Sequence[str] | str
                     ) -> list[LinearShape]:
    """The Linear layers of one decoder layer that get adapters, matched as PEFT matches names:
    a target equals the module's name or its last dotted parts."""
    if target_modules == ALL_LINEAR:
        return list(shape.layer_linears)
    targets = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    chosen = [linear for linear in shape.layer_linears
              if any(linear.name == key or linear.name.endswith("." + key) for key in targets)]
    if not chosen:
        available = ", ".join(linear.name.rsplit(".", 1)[-1] for linear in shape.layer_linears)
        raise ValueError(f"None of the target layers ({', '.join(targets)}) exist in this "
                         f"{shape.model_type} model; its layers are {available}.")
    return chosen


def lora_trainable_params(config: Mapping[str, Any] | ModelShape, r: int,
                          target_modules: Sequence[str] | str = ALL_LINEAR) -> int:
    shape = config if isinstance(config, ModelShape) else model_shape(config)
    per_layer = sum(r * (linear.in_features + linear.out_features)
                    for linear in targeted_linears(shape, target_modules))
    return per_layer * shape.num_layers


# --- bytes ------------------------------------------------------------------------------------

def nf4_bytes(params: int) -> int:
    """One Linear weight in NF4: 4 bits per value, one 8-bit absmax per block of 64 and, for the
    double quantisation, one fp32 constant per 256 blocks plus an fp32 offset."""
    blocks = math.ceil(params / NF4_BLOCKSIZE)
    return math.ceil(params / 2) + blocks + 4 * math.ceil(blocks / NF4_NESTED_BLOCKSIZE) + 4


def weight_bytes(shape: ModelShape, method: str, dtype_bytes: int) -> int:
    """The frozen model: all in `dtype_bytes`, or for QLoRA the decoder Linears in NF4."""
    if method != "qlora":
        return shape.total_params * dtype_bytes
    quantised = sum(nf4_bytes(linear.in_features * linear.out_features)
                    for linear in shape.layer_linears) * shape.num_layers
    biases = sum(linear.out_features for linear in shape.layer_linears if linear.bias)
    kept = shape.embedding_params + shape.hidden_size + shape.num_layers * (
        shape.layer_norm_params + biases)
    return quantised + kept * dtype_bytes


def adapter_dtype_bytes(method: str) -> int:
    return 2 if method == "qlora" else 4


def activation_bytes(shape: ModelShape, config: TrainingConfig, dtype_bytes: int,
                     seq_len: int | None = None, batch: int | None = None, *,
                     attention_scores: bool | None = None) -> int:
    """What the backward pass keeps, for one micro-batch of `batch` × `seq_len` tokens.

    Without checkpointing every layer keeps its intermediate tensors; with it, each layer keeps
    only its input and one layer is recomputed at a time. The LM head's logits are scored in
    tiles, so they cost a tile (forward buffer + backward tile) whatever the length.
    attention_scores: the (heads × seq) scores are kept (eager attention, or PyTorch's CPU
    path with a padding mask); by default only for eager-attention models.
    """
    seq_len = seq_len or config.max_seq_length
    batch = batch or config.per_device_batch_size
    tokens = seq_len * batch
    scores = shape.eager_attention if attention_scores is None else attention_scores
    full_layer = _layer_activation_elements(shape, config, seq_len, scores) * tokens * dtype_bytes
    if config.activation_checkpointing:
        layers = shape.num_layers * shape.hidden_size * tokens * dtype_bytes + full_layer
    else:
        layers = shape.num_layers * full_layer
    logits = 2 * min(tokens, LOGITS_TILE_TOKENS) * min(shape.vocab_size, LOGITS_TILE_VOCAB) * (
        dtype_bytes)
    embeddings_and_final = 3 * tokens * shape.hidden_size * dtype_bytes
    return layers + logits + embeddings_and_final


def _layer_activation_elements(shape: ModelShape, config: TrainingConfig, seq_len: int,
                               attention_scores: bool) -> int:
    """Values kept per token by one decoder layer (SwiGLU MLP, RMSNorms, rotary attention)."""
    hidden, q_dim, kv_dim = shape.hidden_size, shape.q_dim, shape.kv_dim
    norms_and_residuals = 6 * hidden  # two norms (inputs and fp32 upcasts), two residuals
    attention = 5 * q_dim + 4 * kv_dim  # q, k, v, rotated q/k, k/v repeated for GQA, output
    mlp = 4 * shape.intermediate_size  # gate, up, activation, product
    if attention_scores:  # the (heads × seq) score matrix and its softmax, per token
        attention += 2 * shape.num_heads * seq_len
    lora = 0
    for linear in targeted_linears(shape, config.target_modules):
        # LoRA's dropout makes its own copy of each targeted layer's input, plus the mask.
        dropout = linear.in_features * 5 // 4 if config.lora_dropout > 0 else 0
        lora += config.lora_r + dropout
    return norms_and_residuals + attention + mlp + lora


def estimate_memory(model_config: Mapping[str, Any], config: TrainingConfig, *,
                    device: str = "cuda", weight_dtype_bytes: int | None = None
                    ) -> MemoryEstimate:
    """Peak memory of a training run on `device` ("cuda", "mps" or "cpu").

    weight_dtype_bytes: the dtype the trainer loads the model in. By default what it picks:
    16-bit on CUDA and for QLoRA's compute dtype; fp32 for LoRA on a CPU or an Apple GPU.
    """
    shape = model_shape(model_config)
    sixteen_bit = device == "cuda" or config.method == "qlora"
    dtype_bytes = weight_dtype_bytes or (2 if sixteen_bit else 4)
    trainable_params = lora_trainable_params(shape, config.lora_r, config.target_modules)
    adapter_bytes = adapter_dtype_bytes(config.method)
    weights = weight_bytes(shape, config.method, dtype_bytes)
    trainable = trainable_params * adapter_bytes * 2  # weights + gradients
    optimizer = trainable_params * adapter_bytes * 2  # AdamW: exp_avg + exp_avg_sq
    if device == "cpu":
        # PyTorch's CPU attention keeps the scores when batches carry a padding mask, and
        # malloc keeps freed activation memory, so the process grows well past live tensors.
        activations = int(CPU_ALLOCATOR_FACTOR * activation_bytes(
            shape, config, dtype_bytes, attention_scores=True))
    else:
        activations = activation_bytes(shape, config, dtype_bytes)
    tensors = weights + trainable + optimizer + activations
    if device == "cpu":
        overhead = CPU_RUNTIME_BYTES
    else:
        overhead = CUDA_CONTEXT_BYTES + int(FRAGMENTATION * tensors)
    return MemoryEstimate(
        weights=weights, trainable=trainable, optimizer=optimizer, activations=activations,
        overhead=overhead, trainable_params=trainable_params, total_params=shape.total_params,
        method=config.method, device=device)
