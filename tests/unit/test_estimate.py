"""The memory estimate against real models built at test time, and the recommendation."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from finetuneflow.core.training.config import TrainingConfig
from finetuneflow.core.training.estimate import (
    activation_bytes,
    count_parameters,
    estimate_memory,
    lora_trainable_params,
    model_shape,
    nf4_bytes,
    weight_bytes,
)
from finetuneflow.core.training.recommend import (
    DatasetStats,
    describe_change,
    next_smaller,
    recommend,
)
from finetuneflow.core.units import GIB, format_bytes, format_duration

SMALL = {"vocab_size": 320, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2}
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "llama": {}, "mistral": {}, "qwen2": {}, "qwen3": {"head_dim": 24},
    "gemma": {"head_dim": 32}, "gemma2": {"head_dim": 16}, "gemma3_text": {"head_dim": 16},
    "phi3": {"pad_token_id": 0},
}
TARGETS: list[Any] = ["all-linear", ["q_proj", "v_proj"], ["o_proj", "down_proj"]]

# Published configs (the parts that matter) and their parameter counts.
QWEN25_05B = {"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864,
              "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
              "vocab_size": 151936, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
              "max_position_embeddings": 32768}
SMOLLM2_135M = {"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
                "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
                "vocab_size": 49152, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
                "max_position_embeddings": 8192}
LLAMA32_1B = {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192,
              "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
              "head_dim": 64, "vocab_size": 128256, "tie_word_embeddings": True,
              "max_position_embeddings": 131072}


def build(arch: str) -> tuple[Any, dict[str, Any]]:
    """A random-init model of `arch` and the config.json it would save (no Hub)."""
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.AutoConfig.for_model(arch, **SMALL, **ARCHITECTURES[arch])
    model = transformers.AutoModelForCausalLM.from_config(config)
    return model, json.loads(config.to_json_string(use_diff=True))


@pytest.mark.slow  # the first test to import transformers pays for it
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_parameter_count_matches_the_real_model(arch: str) -> None:
    model, config = build(arch)
    assert count_parameters(config) == sum(param.numel() for param in model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma2", "phi3"])
@pytest.mark.parametrize("targets", TARGETS, ids=str)
def test_trainable_params_match_peft(arch: str, targets: Any) -> None:
    from peft import LoraConfig, get_peft_model

    model, config = build(arch)
    if arch == "phi3" and targets != "all-linear" and "o_proj" not in targets:
        with pytest.raises(ValueError, match="its layers are qkv_proj, o_proj"):
            lora_trainable_params(config, 4, targets)
        return
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=targets,
                                                  task_type="CAUSAL_LM"))
    trainable, _ = peft_model.get_nb_trainable_parameters()
    assert lora_trainable_params(config, 4, targets) == trainable


def _tensor_bytes(model: Any) -> int:
    """Bytes of every parameter, with the quantisation constants of 4-bit weights."""
    total = 0
    for param in model.parameters():
        total += param.numel() * param.element_size()
        state = getattr(param, "quant_state", None)
        if state is not None:
            total += state.absmax.numel() * state.absmax.element_size() + 4  # + offset
            if state.nested:
                total += state.state2.absmax.numel() * state.state2.absmax.element_size()
    return total


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("dtype_bytes", [4, 2])
def test_weight_bytes_are_within_two_percent(arch: str, dtype_bytes: int) -> None:
    import torch

    model, config = build(arch)
    model = model.to(torch.float32 if dtype_bytes == 4 else torch.bfloat16)
    predicted = weight_bytes(model_shape(config), "lora", dtype_bytes)
    assert predicted == pytest.approx(_tensor_bytes(model), rel=0.02)


@pytest.mark.slow
def test_nf4_weight_bytes_are_within_two_percent(tiny_model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quantisation = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                      bnb_4bit_use_double_quant=True,
                                      bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16,
                                                 quantization_config=quantisation)
    config = json.loads((tiny_model_dir / "config.json").read_text())
    predicted = weight_bytes(model_shape(config), "qlora", 2)
    assert predicted == pytest.approx(_tensor_bytes(model), rel=0.02)


def test_known_models_have_their_published_sizes() -> None:
    assert count_parameters(QWEN25_05B) == 494_032_768
    assert count_parameters(SMOLLM2_135M) == 134_515_008
    assert count_parameters(LLAMA32_1B) == 1_235_814_400
    # NF4 with double quantisation: a little over half a byte per weight.
    assert nf4_bytes(64 * 256 * 100) / (64 * 256 * 100) == pytest.approx(0.5159, abs=1e-4)


def test_multimodal_configs_use_their_text_config() -> None:
    nested = {"model_type": "gemma3", "text_config": {**SMALL, "model_type": "gemma3_text",
                                                      "head_dim": 16}}
    assert model_shape(nested).model_type == "gemma3_text"
    assert model_shape(nested).tied_embeddings


def test_activations_grow_with_sequence_and_batch() -> None:
    shape = model_shape(QWEN25_05B)
    base = TrainingConfig(per_device_batch_size=2, max_seq_length=512)
    sizes = [activation_bytes(shape, base, 2, seq_len=length) for length in (256, 512, 1024)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3
    batches = [activation_bytes(shape, base, 2, batch=batch) for batch in (1, 2, 4, 8)]
    assert batches == sorted(batches) and len(set(batches)) == 4
    totals = [estimate_memory(QWEN25_05B, base.replace(max_seq_length=length)).total
              for length in (256, 1024, 4096)]
    assert totals == sorted(totals)


def test_checkpointing_cuts_activations() -> None:
    shape = model_shape(QWEN25_05B)
    plain = TrainingConfig(per_device_batch_size=4, max_seq_length=1024)
    checkpointed = plain.replace(activation_checkpointing=True)
    assert activation_bytes(shape, checkpointed, 2) < activation_bytes(shape, plain, 2) / 3


def test_the_breakdown_adds_up_and_qlora_shrinks_the_weights() -> None:
    lora = estimate_memory(QWEN25_05B, TrainingConfig())
    qlora = estimate_memory(QWEN25_05B, TrainingConfig(method="qlora"))
    for estimate in (lora, qlora):
        assert estimate.total == (estimate.weights + estimate.trainable + estimate.optimizer
                                  + estimate.activations + estimate.overhead)
        assert estimate.trainable_params == lora_trainable_params(QWEN25_05B, 16)
    assert lora.weights == 2 * lora.total_params
    assert qlora.weights < 0.6 * lora.weights
    # fp32 adapters: weights + gradients 8 bytes, AdamW 8 bytes per trainable parameter.
    assert lora.trainable == lora.optimizer == 8 * lora.trainable_params
    assert estimate_memory(QWEN25_05B, TrainingConfig(), device="cpu").weights == (
        4 * lora.total_params)
    assert "GB" in lora.summary()


# --- recommendation ---------------------------------------------------------------------------

DATASET = DatasetStats(num_examples=1000, max_tokens=700, mean_tokens=300.0, p95_tokens=600)


def gpu_probe(free_gib: float, name: str = "NVIDIA RTX 4090") -> dict[str, Any]:
    return {"gpus": [{"index": 0, "name": name, "total_bytes": 24 * GIB,
                      "free_bytes": int(free_gib * GIB), "compute_capability": "8.9",
                      "bf16": True}],
            "cpu_cores": 16, "ram_total_bytes": 64 * GIB, "ram_free_bytes": 60 * GIB}


def test_a_big_gpu_gets_lora_with_the_chosen_batch() -> None:
    result = recommend(gpu_probe(22), QWEN25_05B, DATASET)
    assert result.fits and result.method == "lora" and result.device == "cuda"
    assert result.per_device_batch_size == 4 and not result.activation_checkpointing
    assert result.max_seq_length == 704  # the longest example, rounded up to 64
    assert result.reason.startswith("LoRA fits your NVIDIA RTX 4090 with batch 4")
    assert result.estimate.total <= 0.9 * 22 * GIB


def test_smaller_gpus_get_checkpointing_then_qlora_then_shorter_sequences() -> None:
    config = TrainingConfig(max_seq_length=2048)
    long_dataset = DatasetStats(1000, 2048, 900.0, 1800)
    seen = []
    for free in (22, 10, 6, 4, 3, 2.2):
        result = recommend(gpu_probe(free), LLAMA32_1B, long_dataset, config)
        assert result.fits, (free, result.reason)
        assert result.estimate.total <= result.budget_bytes
        assert (result.per_device_batch_size * result.gradient_accumulation_steps
                == config.effective_batch_size)
        seen.append((result.method, result.activation_checkpointing, result.max_seq_length))
    assert seen[:3] == [("lora", False, 2048), ("lora", True, 2048), ("lora", True, 2048)]
    assert seen[3:5] == [("qlora", True, 2048)] * 2
    assert seen[5][0] == "qlora" and seen[5][2] < 2048  # the last resort: shorter sequences
    qlora = recommend(gpu_probe(4), LLAMA32_1B, long_dataset, config)
    assert qlora.reason.startswith("LoRA would need") and "QLoRA" in qlora.reason


def test_a_gpu_too_small_says_so() -> None:
    result = recommend(gpu_probe(0.5, "GeForce GT 1030"), LLAMA32_1B, DATASET)
    assert not result.fits
    assert "does not fit your GeForce GT 1030" in result.reason
    assert result.method == "qlora" and result.per_device_batch_size == 1


def test_without_cuda_there_is_no_qlora_and_a_time_warning() -> None:
    probe = {"gpus": [], "cpu_cores": 8, "ram_total_bytes": 16 * GIB,
             "ram_free_bytes": 12 * GIB, "bitsandbytes": True}
    result = recommend(probe, SMOLLM2_135M, DATASET)
    assert result.fits and result.device == "cpu" and result.method == "lora"
    assert result.reason.startswith("No NVIDIA GPU found: LoRA trains on the CPU")
    assert result.estimated_seconds and result.estimated_seconds > 60
    assert any("slow: an NVIDIA GPU" in warning for warning in result.warnings)
    # The guess from FLOPs is not quoted as the expected time: that one is measured.
    assert not any("expect about" in warning for warning in result.warnings)
    too_big = {**LLAMA32_1B, "hidden_size": 4096, "intermediate_size": 14336,
               "num_hidden_layers": 32, "head_dim": 128}
    refused = recommend(probe, too_big, DATASET)
    assert not refused.fits and "take weeks to train on the CPU" in refused.reason


def test_next_smaller_keeps_the_effective_batch_until_nothing_is_left() -> None:
    config = TrainingConfig(per_device_batch_size=4, gradient_accumulation_steps=4,
                            max_seq_length=1024)
    steps = []
    while (smaller := next_smaller(config)) is not None:
        steps.append(describe_change(config, smaller))
        assert smaller.effective_batch_size == 16
        config = smaller
    assert steps == [
        "Turned on activation checkpointing.",
        "Batch 4 → 2 with gradient accumulation 8.",
        "Batch 2 → 1 with gradient accumulation 16.",
        "Switched to QLoRA.",
        "Sequences cut to 512 tokens.",
        "Sequences cut to 256 tokens.",
    ]
    assert next_smaller(TrainingConfig(activation_checkpointing=True, per_device_batch_size=1),
                        allow_qlora=False).method == "lora"


def test_dataset_stats_and_durations() -> None:
    stats = DatasetStats.from_lengths([10, 20, 30, 40, 1000])
    assert (stats.num_examples, stats.max_tokens, stats.p95_tokens) == (5, 1000, 1000)
    assert math.isclose(stats.mean_tokens, 220.0)
    assert DatasetStats.from_lengths([]).num_examples == 0
    assert [format_duration(s) for s in (5, 600, 7300, 3 * 86400)] == [
        "5 s", "10 min", "2 h 02 min", "3.0 days"]


def test_sizes_keep_a_unit_a_person_can_read() -> None:
    assert [format_bytes(s) for s in (12, 538_000, 5 * 1024**2, 3 * 1024**3)] == [
        "12 bytes", "525 KB", "5 MB", "3.0 GB"]
