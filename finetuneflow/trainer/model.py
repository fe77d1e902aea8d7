"""The device, the precision, the tokenizer and the model, loaded the way the estimate assumes.

- CUDA: bf16 where the GPU computes in it (Ampere+), else fp16 with fp32 adapters.
- Apple GPU and CPU: fp32 (mixed precision there is slow or unsupported).
- QLoRA: NF4 with double quantisation; `prepare_model_for_kbit_training` upcasts every
  non-quantised weight to fp32, which is right for the norms but doubles the embeddings and
  lm_head for nothing (they are frozen), so those go back to the 16-bit compute dtype.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch

from finetuneflow.core.training.config import TrainingConfig
from finetuneflow.trainer.errors import ModelNotFoundError, model_not_found_message

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Device:
    kind: str  # cuda | mps | cpu
    index: int | None
    name: str
    bf16: bool

    @property
    def label(self) -> str:
        if self.kind == "cuda":
            return f"cuda:{self.index} ({self.name})"
        return self.kind


def pick_device() -> Device:
    if torch.cuda.is_available():
        index = int(os.environ.get("LOCAL_RANK", "0"))
        major, _ = torch.cuda.get_device_capability(index)
        return Device("cuda", index, torch.cuda.get_device_name(index), bf16=major >= 8)
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return Device("mps", None, "Apple GPU", bf16=False)
    return Device("cpu", None, "CPU", bf16=False)


def weight_dtype(device: Device, method: str) -> torch.dtype:
    """The dtype of the frozen weights (for QLoRA: of everything not in 4-bit, and compute)."""
    if device.kind == "cuda":
        return torch.bfloat16 if device.bf16 else torch.float16
    # bitsandbytes computes 4-bit layers in bf16 on a CPU; plain LoRA there stays in fp32.
    return torch.bfloat16 if method == "qlora" else torch.float32


def precision_arguments(device: Device) -> dict[str, bool]:
    """SFTConfig flags: mixed precision on CUDA only."""
    if device.kind == "cuda":
        return {"bf16": device.bf16, "fp16": not device.bf16, "use_cpu": False}
    return {"bf16": False, "fp16": False, "use_cpu": device.kind == "cpu"}


def load_tokenizer(model_path: str) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
    except (OSError, ValueError) as error:
        raise ModelNotFoundError(model_not_found_message(model_path, error)) from error
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model_path: str, config: TrainingConfig, device: Device) -> Any:
    from transformers import AutoModelForCausalLM

    dtype = weight_dtype(device, config.method)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if config.method == "qlora":
        kwargs["quantization_config"] = _nf4_config(dtype)
        if device.kind == "cuda":
            kwargs["device_map"] = {"": device.index}  # 4-bit weights are placed while loading
    try:
        model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    except OSError as error:
        if _is_missing(error):
            raise ModelNotFoundError(model_not_found_message(model_path, error)) from error
        raise
    if config.method == "qlora":
        model = _prepare_for_qlora(model, config, dtype)
    model.config.use_cache = False  # the KV cache is useless (and warned about) in training
    return model


def _nf4_config(compute_dtype: torch.dtype) -> Any:
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype)


def _prepare_for_qlora(model: Any, config: TrainingConfig, dtype: torch.dtype) -> Any:
    from peft import prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(
        model, use_gradient_checkpointing=config.activation_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False})
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        if module is not None:
            module.to(dtype)
    return model


def _is_missing(error: OSError) -> bool:
    text = str(error)
    return any(marker in text for marker in (
        "does not appear to have", "is not a local folder", "not a valid model identifier",
        "offline mode", "couldn't connect", "Can't load", "No such file"))
