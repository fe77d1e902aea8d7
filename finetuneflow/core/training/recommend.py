"""LoRA or QLoRA, which batch, which sequence length: what fits this computer.

Input: the trainer's probe (GPUs, RAM), the model's config.json, the dataset's token lengths and
the settings the user picked. The rule, in order of preference:

1. LoRA when it fits the free GPU memory with a 10% margin and a useful batch (≥ 2), first
   without, then with activation checkpointing.
2. Else QLoRA (4-bit), only with CUDA: bitsandbytes imports on any machine, but it is only
   worth it on an NVIDIA GPU.
3. Else batch 1, checkpointing on, then shorter sequences.
The effective batch (batch × gradient accumulation) never changes, so the recipe stays the same.
Without a GPU, small models train on the CPU, with a warning and an honest time estimate.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from finetuneflow.core.child_protocol import ProbeEvent
from finetuneflow.core.training.config import METHOD_LABELS, TrainingConfig
from finetuneflow.core.training.estimate import (
    MemoryEstimate,
    estimate_memory,
    model_shape,
)
from finetuneflow.core.units import format_bytes

MARGIN = 0.10  # keep 10% of the free memory for everything the estimate cannot see
USEFUL_BATCH = 2
MIN_SEQ_LENGTH = 256
SEQ_MULTIPLE = 64
CPU_MAX_PARAMS = 3_000_000_000  # beyond this a CPU run takes weeks
MPS_SHARE_OF_RAM = 0.70  # macOS lets the GPU use roughly this much of the unified memory
PADDING_OVERHEAD = 1.3  # batches pad to their longest example
QLORA_SLOWDOWN = 1.4  # dequantising the 4-bit weights on every step
CPU_FLOPS_PER_CORE = 40e9  # measured with fp32 LoRA training on x86 cores
# Usable bf16/fp16 throughput (about a third of the datasheet peak) by compute capability.
GPU_FLOPS_BY_CAPABILITY = ((9.0, 250e12), (8.0, 60e12), (7.0, 20e12), (0.0, 5e12))


@dataclass(frozen=True)
class DatasetStats:
    num_examples: int
    max_tokens: int
    mean_tokens: float
    p95_tokens: int

    @classmethod
    def from_lengths(cls, lengths: Sequence[int]) -> DatasetStats:
        if not lengths:
            return cls(0, 0, 0.0, 0)
        ordered = sorted(lengths)
        p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
        return cls(len(ordered), ordered[-1], sum(ordered) / len(ordered), p95)


@dataclass(frozen=True)
class Recommendation:
    method: str
    per_device_batch_size: int
    gradient_accumulation_steps: int
    max_seq_length: int
    activation_checkpointing: bool
    device: str  # cuda | mps | cpu
    fits: bool
    reason: str
    estimate: MemoryEstimate
    budget_bytes: int
    gpu_index: int | None = None
    estimated_seconds: float | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def apply(self, config: TrainingConfig) -> TrainingConfig:
        return config.replace(
            method=self.method, per_device_batch_size=self.per_device_batch_size,
            gradient_accumulation_steps=self.gradient_accumulation_steps,
            max_seq_length=self.max_seq_length,
            activation_checkpointing=self.activation_checkpointing)


def recommend(probe: ProbeEvent | Mapping[str, Any], model_config: Mapping[str, Any],
              dataset: DatasetStats, config: TrainingConfig | None = None) -> Recommendation:
    probe = _as_probe(probe)
    config = _fit_sequence(config or TrainingConfig(), model_config, dataset)
    if probe.gpus:
        return _recommend_cuda(probe, model_config, dataset, config)
    if probe.mps:
        return _recommend_local(probe, model_config, dataset, config, device="mps")
    return _recommend_local(probe, model_config, dataset, config, device="cpu")


def next_smaller(config: TrainingConfig, *, allow_qlora: bool = True) -> TrainingConfig | None:
    """The next setting to try after running out of memory, keeping the effective batch; None
    when nothing is left to shrink."""
    if not config.activation_checkpointing:
        return config.replace(activation_checkpointing=True)
    if config.per_device_batch_size > 1:
        return _halve_batch(config)
    if config.method == "lora" and allow_qlora:
        return config.replace(method="qlora")
    if config.max_seq_length > MIN_SEQ_LENGTH:
        return config.replace(max_seq_length=max(MIN_SEQ_LENGTH, config.max_seq_length // 2))
    return None


def describe_change(before: TrainingConfig, after: TrainingConfig) -> str:
    """A sentence for the log and the GUI: what `next_smaller` changed."""
    changes = []
    if after.activation_checkpointing and not before.activation_checkpointing:
        changes.append("turned on activation checkpointing")
    if after.per_device_batch_size != before.per_device_batch_size:
        changes.append(f"batch {before.per_device_batch_size} → {after.per_device_batch_size} "
                       f"with gradient accumulation {after.gradient_accumulation_steps}")
    if after.method != before.method:
        changes.append(f"switched to {METHOD_LABELS[after.method]}")
    if after.max_seq_length != before.max_seq_length:
        changes.append(f"sequences cut to {after.max_seq_length} tokens")
    if not changes:
        return "No change."
    sentence = "; ".join(changes)
    return sentence[0].upper() + sentence[1:] + "."


# --- GPU --------------------------------------------------------------------------------------

def _recommend_cuda(probe: ProbeEvent, model_config: Mapping[str, Any], dataset: DatasetStats,
                    config: TrainingConfig) -> Recommendation:
    gpu = max(probe.gpus, key=lambda device: device.get("free_bytes") or 0)
    budget = int((gpu.get("free_bytes") or 0) * (1 - MARGIN))
    name = gpu.get("name") or "GPU"
    wanted = config.replace(method="lora")
    lora_estimate = estimate_memory(model_config, wanted, device="cuda")
    for candidate in _gpu_candidates(config):
        estimate = estimate_memory(model_config, candidate, device="cuda")
        if estimate.total <= budget:
            reason = _fit_reason(candidate, config, estimate, lora_estimate, budget, name)
            return _result(candidate, "cuda", True, reason, estimate, budget, dataset,
                           model_config, probe, gpu=gpu)
    smallest = list(_gpu_candidates(config))[-1]
    estimate = estimate_memory(model_config, smallest, device="cuda")
    reason = (f"This model does not fit your {name}: even QLoRA with batch 1, activation "
              f"checkpointing and {smallest.max_seq_length}-token sequences needs "
              f"{format_bytes(estimate.total)}, and {format_bytes(budget)} is usable. Pick a "
              "smaller model or close other programs that use the GPU.")
    return _result(smallest, "cuda", False, reason, estimate, budget, dataset, model_config,
                   probe, gpu=gpu)


def _gpu_candidates(config: TrainingConfig) -> Iterator[TrainingConfig]:
    """Settings to try, best first."""
    for method in ("lora", "qlora"):
        for checkpointing in (False, True):
            base = config.replace(method=method, activation_checkpointing=checkpointing)
            yield from _batches_down_to(base, USEFUL_BATCH)
    for method in ("lora", "qlora"):
        yield from _batches_down_to(
            config.replace(method=method, activation_checkpointing=True), 1)
    yield from _shorter_sequences(_smallest(config, allow_qlora=True))


def _fit_reason(chosen: TrainingConfig, wanted: TrainingConfig, estimate: MemoryEstimate,
                lora_estimate: MemoryEstimate, budget: int, device_name: str) -> str:
    fits = (f"fits your {device_name} with batch {chosen.per_device_batch_size} "
            f"({estimate.summary()}; {format_bytes(budget)} usable)")
    tweaks = _tweaks(chosen, wanted)
    if chosen.method == "qlora":
        return (f"LoRA would need {format_bytes(lora_estimate.total)}; QLoRA (the model in "
                f"4-bit) {fits}{tweaks}.")
    return f"LoRA {fits}{tweaks}."


def _tweaks(chosen: TrainingConfig, wanted: TrainingConfig) -> str:
    notes = []
    if chosen.activation_checkpointing and not wanted.activation_checkpointing:
        notes.append("activation checkpointing on")
    if chosen.max_seq_length < wanted.max_seq_length:
        notes.append(f"sequences cut to {chosen.max_seq_length} tokens, so longer examples "
                     "are truncated")
    if chosen.per_device_batch_size < wanted.per_device_batch_size:
        notes.append(f"gradient accumulation {chosen.gradient_accumulation_steps} keeps the "
                     f"effective batch at {chosen.effective_batch_size}")
    return (", with " + ", ".join(notes)) if notes else ""


# --- CPU and Apple GPUs -----------------------------------------------------------------------

def _recommend_local(probe: ProbeEvent, model_config: Mapping[str, Any], dataset: DatasetStats,
                     config: TrainingConfig, *, device: str) -> Recommendation:
    ram_free = probe.ram_free_bytes or 0
    if device == "mps":
        ram_free = min(ram_free, int((probe.ram_total_bytes or 0) * MPS_SHARE_OF_RAM))
    budget = int(ram_free * (1 - MARGIN))
    params = model_shape(model_config).total_params
    where = "the Apple GPU" if device == "mps" else "the CPU"
    base = config.replace(method="lora")  # bitsandbytes 4-bit needs CUDA
    if device == "cpu" and params > CPU_MAX_PARAMS:
        estimate = estimate_memory(model_config, base, device=device)
        reason = (f"No GPU found, and a model of {params / 1e9:.1f} billion parameters would "
                  "take weeks to train on the CPU. Use a computer with an NVIDIA GPU, or pick a "
                  f"model under {CPU_MAX_PARAMS / 1e9:.0f} billion parameters.")
        return _result(base, device, False, reason, estimate, budget, dataset, model_config,
                       probe)
    candidates = [*_batches_down_to(base, 1),
                  *_batches_down_to(base.replace(activation_checkpointing=True), 1),
                  *_shorter_sequences(_smallest(base, allow_qlora=False))]
    for candidate in candidates:
        estimate = estimate_memory(model_config, candidate, device=device)
        if estimate.total <= budget:
            reason = (f"No NVIDIA GPU found: LoRA trains on {where} with batch "
                      f"{candidate.per_device_batch_size} ({estimate.summary()}; "
                      f"{format_bytes(budget)} of memory usable){_tweaks(candidate, config)}.")
            return _result(candidate, device, True, reason, estimate, budget, dataset,
                           model_config, probe)
    smallest = candidates[-1]
    estimate = estimate_memory(model_config, smallest, device=device)
    reason = (f"This model does not fit in memory on {where}: it needs "
              f"{format_bytes(estimate.total)} and {format_bytes(budget)} is usable. Pick a "
              "smaller model or close other programs.")
    return _result(smallest, device, False, reason, estimate, budget, dataset, model_config,
                   probe)


# --- shared -----------------------------------------------------------------------------------

def _result(config: TrainingConfig, device: str, fits: bool, reason: str,
            estimate: MemoryEstimate, budget: int, dataset: DatasetStats,
            model_config: Mapping[str, Any], probe: ProbeEvent,
            gpu: Mapping[str, Any] | None = None) -> Recommendation:
    seconds = estimate_seconds(model_config, config, dataset, device=device, gpu=gpu,
                               cpu_cores=probe.cpu_cores)
    warnings = []
    if device != "cuda" and fits:
        # No time here: this one is a guess from FLOPs; the time shown is measured.
        warnings.append(f"Training on {'the Apple GPU' if device == 'mps' else 'the CPU'} is "
                        "slow: an NVIDIA GPU is typically 20–100× faster.")
    if dataset.max_tokens > config.max_seq_length:
        warnings.append(f"Some examples are longer than {config.max_seq_length} tokens "
                        f"(the longest has {dataset.max_tokens}); their ends are cut off.")
    return Recommendation(
        method=config.method, per_device_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        max_seq_length=config.max_seq_length,
        activation_checkpointing=config.activation_checkpointing, device=device, fits=fits,
        reason=reason, estimate=estimate, budget_bytes=budget,
        gpu_index=None if gpu is None else gpu.get("index"), estimated_seconds=seconds,
        warnings=tuple(warnings))


def estimate_seconds(model_config: Mapping[str, Any], config: TrainingConfig,
                     dataset: DatasetStats, *, device: str,
                     gpu: Mapping[str, Any] | None = None, cpu_cores: int = 0) -> float:
    """Rough wall time: training FLOPs (4 × params per token for LoRA: forward plus the
    backward through the frozen weights; 6 × with checkpointing) over the device's usable
    throughput."""
    tokens = _training_tokens(config, dataset)
    shape = model_shape(model_config)
    # The input embedding is a lookup, not a matmul; a tied lm_head is counted once, as the matmul.
    matmul_params = shape.total_params - (0 if shape.tied_embeddings else
                                          shape.vocab_size * shape.hidden_size)
    flops_per_token = (6 if config.activation_checkpointing else 4) * matmul_params
    if device == "cuda":
        throughput = _gpu_flops(gpu or {})
    else:
        throughput = CPU_FLOPS_PER_CORE * max(1, cpu_cores or 4)
    slowdown = QLORA_SLOWDOWN if config.method == "qlora" else 1.0
    return tokens * flops_per_token * slowdown / throughput


def _training_tokens(config: TrainingConfig, dataset: DatasetStats) -> float:
    per_example = min(dataset.mean_tokens, config.max_seq_length)
    per_example *= 1.0 if config.packing else PADDING_OVERHEAD
    if config.max_steps:
        return config.max_steps * config.effective_batch_size * per_example
    return dataset.num_examples * config.num_epochs * per_example


def _gpu_flops(gpu: Mapping[str, Any]) -> float:
    try:
        capability = float(gpu.get("compute_capability") or 0)
    except ValueError:
        capability = 0.0
    return next(flops for minimum, flops in GPU_FLOPS_BY_CAPABILITY if capability >= minimum)


def _as_probe(probe: ProbeEvent | Mapping[str, Any]) -> ProbeEvent:
    if isinstance(probe, ProbeEvent):
        return probe
    known = ProbeEvent.__dataclass_fields__
    return ProbeEvent(**{key: value for key, value in probe.items() if key in known})


def _fit_sequence(config: TrainingConfig, model_config: Mapping[str, Any],
                  dataset: DatasetStats) -> TrainingConfig:
    """No longer than the longest example (rounded up) or the model's context window."""
    limit = config.max_seq_length
    if dataset.max_tokens:
        limit = min(limit, _round_up(dataset.max_tokens, SEQ_MULTIPLE))
    context = model_config.get("max_position_embeddings")
    if isinstance(context, int) and context > 0:
        limit = min(limit, context)
    return config.replace(max_seq_length=max(limit, min(config.max_seq_length, SEQ_MULTIPLE)))


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _halve_batch(config: TrainingConfig) -> TrainingConfig:
    batch = config.per_device_batch_size // 2
    accumulation = math.ceil(config.effective_batch_size / batch)
    return config.replace(per_device_batch_size=batch, gradient_accumulation_steps=accumulation)


def _batches_down_to(config: TrainingConfig, smallest: int) -> Iterator[TrainingConfig]:
    current = config
    while True:
        yield current
        if current.per_device_batch_size <= smallest:
            return
        current = _halve_batch(current)


def _smallest(config: TrainingConfig, *, allow_qlora: bool) -> TrainingConfig:
    smallest = config.replace(activation_checkpointing=True)
    while smallest.per_device_batch_size > 1:
        smallest = _halve_batch(smallest)
    return smallest.replace(method="qlora") if allow_qlora else smallest


def _shorter_sequences(config: TrainingConfig) -> Iterator[TrainingConfig]:
    length = config.max_seq_length
    while length > MIN_SEQ_LENGTH:
        length = max(MIN_SEQ_LENGTH, length // 2 // SEQ_MULTIPLE * SEQ_MULTIPLE)
        yield config.replace(max_seq_length=length)
