"""Turn an exception into an error event the user can act on.

Matching is by type name, errno and message, not by importing torch, so this module also
classifies failures that happen before (or while) the ML stack imports.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path

from finetuneflow.core import child_protocol as protocol
from finetuneflow.core.child_protocol import ErrorEvent
from finetuneflow.core.write_errors import error_chain, is_disk_full
from finetuneflow.trainer.data import DatasetError

DETAIL_LINES = 30


class ModelNotFoundError(Exception):
    """The model folder or Hub id cannot be loaded; the message is for the user."""


class ConfigError(Exception):
    """A job file or setting the trainer cannot use; the message is for the user."""


@dataclass(frozen=True)
class RunContext:
    """Where the run was when it failed, for the message."""

    step: int | None = None
    batch: int | None = None
    seq_len: int | None = None
    device: str = "cuda"
    output_dir: str = ""
    activity: str = "Training"  # what failed, for the message: Training, Export, Chat


def error_event(error: BaseException, context: RunContext) -> ErrorEvent:
    kind, message = classify(error, context)
    detail = "".join(traceback.format_exception(error)[-DETAIL_LINES:])
    return ErrorEvent(kind=kind, message=message, step=context.step,
                      detail=None if kind in (protocol.DATASET, protocol.CONFIG) else detail)


def classify(error: BaseException, context: RunContext) -> tuple[str, str]:
    for link in error_chain(error):
        if isinstance(link, DatasetError):
            return protocol.DATASET, str(link)
        if isinstance(link, ModelNotFoundError):
            return protocol.MODEL_NOT_FOUND, str(link)
        if isinstance(link, ConfigError):
            return protocol.CONFIG, str(link)
        if is_disk_full(link):
            return protocol.DISK_FULL, _disk_full_message(context)
        if _is_out_of_memory(link):
            return protocol.OOM, _oom_message(link, context)
    return protocol.INTERNAL, (
        f"{context.activity} failed unexpectedly ({type(error).__name__}: {_first_line(error)}). "
        "The log file has the details.")


def _is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    text = str(error)
    return any(marker in text for marker in (
        "CUDA out of memory", "out of memory", "DefaultCPUAllocator: can't allocate memory",
        "CUBLAS_STATUS_ALLOC_FAILED"))


def _oom_message(error: BaseException, context: RunContext) -> str:
    where = "" if context.step is None else f" at step {context.step}"
    shape = ""
    if context.batch is not None and context.seq_len is not None:
        shape = f" (batch {context.batch}, sequence {context.seq_len})"
    gpu = context.device.startswith(("cuda", "mps")) and not isinstance(error, MemoryError)
    if gpu:
        return (f"Out of GPU memory{where}{shape}: try QLoRA, a smaller batch or a shorter "
                "sequence.")
    return (f"Out of memory (RAM){where}{shape}: try a smaller batch, a shorter sequence or a "
            "smaller model, and close other programs.")


def _disk_full_message(context: RunContext) -> str:
    where = f" ({context.output_dir})" if context.output_dir else ""
    return (f"The disk is full{where}. Free some space and resume: checkpoints already saved "
            "are kept.")


def is_local_path(model_path: str) -> bool:
    """A folder path rather than a Hub id ("org/name" is both, and is tried as an id)."""
    path = Path(model_path).expanduser()
    return path.is_absolute() or model_path.startswith((".", "~")) or path.is_dir()


def model_not_found_message(model_path: str, error: BaseException | None = None) -> str:
    if Path(model_path).expanduser().is_dir():
        why = f" ({_first_line(error)})" if error else ""
        return (f"The model folder {model_path} cannot be loaded{why}. It needs config.json, "
                "the tokenizer files and the weights (*.safetensors).")
    if is_local_path(model_path):
        return f"The model folder {model_path} does not exist. Pick the model again."
    return (f"The model {model_path!r} is not on this computer and cannot be downloaded now "
            "(offline, or no such model on the Hugging Face Hub). Connect to the internet once "
            "to download it, check the name, or pick a local model folder.")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else "no message"
