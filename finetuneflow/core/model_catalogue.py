"""Base models: the curated list, Hub ids, local folders, and the facts read from config.json."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from finetuneflow.core.resources import resource_path

# Hub ids are "name" or "namespace/name": letters, digits, '-', '_', '.'; no '--' or '..'.
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")
# Architectures whose merged safetensors Ollama imports with `FROM <dir>`.
OLLAMA_MERGED_ARCHITECTURES = frozenset({
    "LlamaForCausalLM", "GemmaForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM",
    "Gemma3ForConditionalGeneration", "Phi3ForCausalLM", "Qwen2ForCausalLM",
    "MixtralForCausalLM",
})
# Architectures llama.cpp's convert_hf_to_gguf.py converts (the ones FineTuneFlow knows of).
GGUF_ARCHITECTURES = frozenset({
    "LlamaForCausalLM", "MistralForCausalLM", "MixtralForCausalLM", "Qwen2ForCausalLM",
    "Qwen3ForCausalLM", "Qwen3MoeForCausalLM", "GemmaForCausalLM", "Gemma2ForCausalLM",
    "Gemma3ForCausalLM", "Gemma3ForConditionalGeneration", "Phi3ForCausalLM",
    "SmolLM3ForCausalLM",
})


@dataclass(frozen=True)
class CuratedModel:
    id: str
    family: str
    params: int
    licence: str
    gated: bool
    context: int
    architecture: str
    chat_format: str
    ollama_merged: bool
    ollama_adapter: bool
    note: str = ""
    model_type: str = ""
    gguf: bool = True  # llama.cpp converts it
    thinking: bool = False  # its replies carry <think> blocks
    unchecked: tuple[str, ...] = ()  # facts not confirmed against the config or Hub page

    @property
    def export_note(self) -> str:
        return export_note(self.architecture, ollama_merged=self.ollama_merged, gguf=self.gguf)


def curated_models() -> list[CuratedModel]:
    data = json.loads(resource_path("models.json").read_text(encoding="utf-8"))
    return [CuratedModel(**{**entry, "unchecked": tuple(entry.get("unchecked", ()))})
            for entry in data["models"]]


def curated_model(model_id: str) -> CuratedModel | None:
    return next((m for m in curated_models() if m.id == model_id), None)


def hub_id_problem(text: str) -> str | None:
    """None if `text` is a well-formed Hub id, else what is wrong with it."""
    if not _HUB_ID.match(text):
        return (f"“{text}” is not a Hugging Face model id: use the form "
                "organisation/model, e.g. Qwen/Qwen3-0.6B.")
    if "--" in text or ".." in text or text.endswith(".git"):
        return f"“{text}” is not a valid model id ('--', '..' and '.git' are not allowed)."
    return None


def model_dir_problem(folder: Path) -> str | None:
    """None if `folder` holds a model's config and tokenizer, else what is missing."""
    if not folder.is_dir():
        return f"{folder} is not a folder."
    if not (folder / "config.json").is_file():
        return f"{folder} has no config.json: choose the folder that holds the model's files."
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        return (f"{folder} has no tokenizer (tokenizer.json or tokenizer.model): "
                "copy the tokenizer files into it.")
    return None


def format_params(count: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.1f}{unit}".replace(".0", "")
    return str(count)


@dataclass(frozen=True)
class ModelFacts:
    """What the app knows about a model from its config and tokenizer files, without weights."""

    architecture: str
    model_type: str
    parameters: int
    context_length: int | None
    has_chat_template: bool
    vocab_size: int | None
    ollama_merged: bool
    gguf: bool  # llama.cpp converts it

    @property
    def export_note(self) -> str:
        return export_note(self.architecture, ollama_merged=self.ollama_merged, gguf=self.gguf)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "export_note": self.export_note}

    def describe(self) -> str:
        context = f"{self.context_length:,} tokens" if self.context_length else "unknown"
        template = ("yes" if self.has_chat_template
                    else "no (a plain User/Assistant template will be used)")
        return (f"{self.architecture} · {format_params(self.parameters)} parameters · "
                f"context {context} · chat template: {template}")


def _has_chat_template(folder: Path) -> bool:
    if any((folder / name).is_file() for name in CHAT_TEMPLATE_FILES):
        return True
    config_path = folder / "tokenizer_config.json"
    if not config_path.is_file():
        return False
    return bool(json.loads(config_path.read_text(encoding="utf-8")).get("chat_template"))


def read_model_facts(folder: Path) -> ModelFacts:
    """Facts from `config.json` (+ tokenizer files); the parameter count is computed, not read."""
    from finetuneflow.core.training.estimate import count_parameters

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    text_config = config.get("text_config", config)  # multimodal wrappers nest the LM config
    architecture = (config.get("architectures") or ["unknown"])[0]
    return ModelFacts(
        architecture=architecture,
        model_type=str(config.get("model_type", "unknown")),
        parameters=count_parameters(config),
        context_length=text_config.get("max_position_embeddings"),
        has_chat_template=_has_chat_template(folder),
        vocab_size=text_config.get("vocab_size"),
        ollama_merged=architecture in OLLAMA_MERGED_ARCHITECTURES,
        gguf=architecture in GGUF_ARCHITECTURES,
    )


def export_note(architecture: str, *, ollama_merged: bool, gguf: bool) -> str:
    """What the fine-tuned model of this architecture cannot be turned into; "" when both
    Ollama and llama.cpp take it. Shown before training, so nobody finds out at the end."""
    if ollama_merged and gguf:
        return ""
    if gguf:
        return (f"Ollama cannot import a {architecture} model as it is: after training, "
                "convert the merged model to GGUF to run it in Ollama.")
    if ollama_merged:
        return (f"llama.cpp is not known to convert {architecture} to GGUF: the fine-tuned "
                "model imports into Ollama, but may not run in LM Studio or llama.cpp.")
    return (f"Neither Ollama nor llama.cpp is known to take {architecture}: the fine-tuned "
            "model will run with transformers (Python) only. To run it in Ollama or LM "
            "Studio, choose a model of another family.")
