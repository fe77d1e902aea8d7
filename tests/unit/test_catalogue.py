"""The curated catalogue: the families people fine-tune, each with consistent facts, and the
note that says before training what a model cannot be turned into."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from finetuneflow.core.export.modelfile import FORMATS
from finetuneflow.core.model_catalogue import (
    GGUF_ARCHITECTURES,
    OLLAMA_MERGED_ARCHITECTURES,
    CuratedModel,
    curated_model,
    curated_models,
    export_note,
    read_model_facts,
)

# Ollama imports a LoRA adapter alone only onto a base whose GGUF architecture is llama or
# gemma2 (OLLAMA.md §20); Mistral's library GGUF is llama.
ADAPTER_ARCHITECTURES = {"LlamaForCausalLM", "MistralForCausalLM", "Gemma2ForCausalLM"}


def test_the_catalogue_has_the_current_families() -> None:
    ids = {model.id for model in curated_models()}
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in ids  # the tests and the sample rely on it
    assert {"google/gemma-3-1b-it", "google/gemma-3-4b-it", "HuggingFaceTB/SmolLM3-3B",
            "meta-llama/Llama-3.2-1B-Instruct", "meta-llama/Llama-3.2-3B-Instruct",
            "meta-llama/Llama-3.1-8B-Instruct", "microsoft/Phi-4-mini-instruct",
            "mistralai/Mistral-7B-Instruct-v0.3"} <= ids
    assert len([i for i in ids if i.startswith("Qwen/Qwen3-")]) >= 3


@pytest.mark.parametrize("model", curated_models(), ids=lambda model: model.id)
def test_each_entry_has_consistent_facts(model: CuratedModel) -> None:
    assert model.params > 0 and model.context > 0 and model.licence and model.model_type
    assert model.chat_format in {chat_format.name for chat_format in FORMATS}
    assert model.ollama_merged == (model.architecture in OLLAMA_MERGED_ARCHITECTURES)
    assert model.gguf == (model.architecture in GGUF_ARCHITECTURES)
    assert model.ollama_adapter == (model.architecture in ADAPTER_ARCHITECTURES)
    names = {field.name for field in fields(CuratedModel)}
    assert set(model.unchecked) <= names - {"id", "family", "note", "unchecked"}
    assert model.gated == ("Gated" in model.note)


def test_old_catalogue_entries_still_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    """An entry written before the new fields existed (model_type, gguf, thinking, unchecked)
    still reads, with defaults."""
    old = {"id": "org/old", "family": "Old", "params": 1, "licence": "mit", "gated": False,
           "context": 2048, "architecture": "LlamaForCausalLM", "chat_format": "chatml",
           "ollama_merged": True, "ollama_adapter": True, "note": ""}
    (tmp_path / "models.json").write_text(json.dumps({"models": [old]}), encoding="utf-8")
    monkeypatch.setattr("finetuneflow.core.model_catalogue.resource_path",
                        lambda name: tmp_path / name)
    model = curated_model("org/old")
    assert model is not None and model.gguf and model.unchecked == () and not model.thinking


def test_the_export_note_says_what_is_missing() -> None:
    assert export_note("LlamaForCausalLM", ollama_merged=True, gguf=True) == ""
    qwen3 = export_note("Qwen3ForCausalLM", ollama_merged=False, gguf=True)
    assert "Ollama cannot import a Qwen3ForCausalLM model" in qwen3 and "GGUF" in qwen3
    odd = export_note("OddForCausalLM", ollama_merged=False, gguf=False)
    assert "Neither Ollama nor llama.cpp" in odd and "another family" in odd
    no_gguf = export_note("OddForCausalLM", ollama_merged=True, gguf=False)
    assert "LM Studio" in no_gguf and "imports into Ollama" in no_gguf
    phi4 = curated_model("microsoft/Phi-4-mini-instruct")
    assert phi4 is not None and phi4.export_note == ""


def _folder(tmp_path: Path, architecture: str) -> Path:
    (tmp_path / "config.json").write_text(json.dumps({
        "architectures": [architecture], "model_type": "llama", "hidden_size": 64,
        "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "vocab_size": 100}), encoding="utf-8")
    return tmp_path


def test_facts_of_any_folder_carry_the_note(tmp_path: Path) -> None:
    facts = read_model_facts(_folder(tmp_path, "SmolLM3ForCausalLM"))
    assert facts.gguf and not facts.ollama_merged
    assert facts.to_json()["export_note"] == facts.export_note != ""
    unknown = read_model_facts(_folder(tmp_path, "BrandNewForCausalLM"))
    assert "Neither Ollama nor llama.cpp" in unknown.to_json()["export_note"]
