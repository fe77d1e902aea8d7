"""What goes where in an export, and the small choices about its contents.

    adapter/       the LoRA adapter with its tokenizer and chat template (PEFT loads it)
    merged/        optional: the adapter folded into the base weights, plus the Modelfile
    gguf/          optional: the merged model as GGUF files, plus a Modelfile FROM one of them
    dataset/       optional: train.jsonl and eval.jsonl as trained on
    config.json    everything needed to train the run again (never a secret)
    metrics.json   loss histories, final numbers, early stopping
    samples.json   the before/after answers shown in the report
    report.md      with loss_curve.svg beside it
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from finetuneflow.core.export.modelfile import ollama_model_name

ADAPTER = "adapter"
MERGED = "merged"
GGUF = "gguf"
DATASET = "dataset"
CONFIG = "config.json"
METRICS = "metrics.json"
SAMPLES = "samples.json"
REPORT = "report.md"
MODELFILE = "Modelfile"

# The adapter folder's files that belong in an export. Left out: training_args.bin (a pickle
# of the trainer's arguments, local paths included) and PEFT's generated README.md.
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json",
                 "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                 "chat_template.jinja", "chat_template.json", "tokenizer.model", "vocab.json",
                 "merges.txt")

T = TypeVar("T")
Message = dict[str, str]


def zip_name(project_name: str, run_id: int) -> str:
    return f"finetuneflow-{ollama_model_name(project_name)}-run-{run_id}.zip"


def hub_reference(folder: Path) -> tuple[str, str] | None:
    """(model id, revision) of a folder in the Hugging Face cache
    (…/models--ORG--NAME/snapshots/REVISION), else None."""
    if folder.parent.name != "snapshots" or not folder.parent.parent.name.startswith("models--"):
        return None
    model_id = folder.parent.parent.name.removeprefix("models--").replace("--", "/")
    return model_id, folder.name


def spread(items: Sequence[T], count: int) -> list[T]:
    """`count` items spaced evenly through the sequence (all of them when there are fewer)."""
    if count <= 0:  # no sample prompts asked for
        return []
    if len(items) <= count:
        return list(items)
    step = len(items) / count
    return [items[int(index * step)] for index in range(count)]


def prompt_and_reference(messages: list[Message]) -> tuple[list[Message], str] | None:
    """The chat up to its last assistant reply, and that reply; None without a reply."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if not last:
        return None
    return messages[:last], messages[last]["content"]
