from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from finetuneflow.core.model_catalogue import curated_models, hub_id_problem, model_dir_problem
from finetuneflow.services.base_model import ModelService
from finetuneflow.services.context import AppContext
from finetuneflow.services.errors import UserError
from finetuneflow.services.projects import ProjectService


@pytest.fixture
def project_id(context: AppContext) -> str:
    return ProjectService(context).create("Model").id


def test_local_folder_gives_facts_and_is_stored(context: AppContext, project_id: str,
                                                tiny_model_dir: Path) -> None:
    models = ModelService(context)
    choice = models.choose(project_id, str(tiny_model_dir))
    assert choice.source == "local" and choice.weights_ready
    facts = choice.facts
    assert facts.architecture == "LlamaForCausalLM" and facts.has_chat_template
    assert facts.context_length == 2048
    from transformers import AutoModelForCausalLM

    real = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(tiny_model_dir).parameters())
    assert facts.parameters == real
    assert ProjectService(context).get(project_id).base_model == str(tiny_model_dir.resolve())
    assert models.current(project_id) == choice


@pytest.mark.parametrize(("remove", "message"), [("config.json", "config.json"),
                                                  ("tokenizer.json", "tokenizer")])
def test_incomplete_folder_says_what_is_missing(context: AppContext, project_id: str,
                                                tiny_model_dir: Path, tmp_path: Path,
                                                remove: str, message: str) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / remove).unlink()
    with pytest.raises(UserError, match=message):
        ModelService(context).choose(project_id, str(folder))


def test_hub_ids_are_checked_before_any_download(context: AppContext, project_id: str) -> None:
    assert hub_id_problem("Qwen/Qwen2.5-0.5B-Instruct") is None
    assert hub_id_problem("gpt2") is None
    for bad in ("has space/model", "a/b/c", "org/model--x", "-lead/x", "org/"):
        assert hub_id_problem(bad), bad
    with pytest.raises(UserError, match="not a Hugging Face model id"):
        ModelService(context).choose(project_id, "has space/model")


def test_offline_hub_model_gives_a_clear_message(context: AppContext, project_id: str) -> None:
    with pytest.raises(UserError, match="offline") as raised:
        ModelService(context).choose(project_id, "someorg/not-downloaded-model")
    assert "model folder on this computer" in str(raised.value)


def test_gated_model_without_token_asks_for_one(context: AppContext, project_id: str) -> None:
    with pytest.raises(UserError, match=r"gated.*token"):
        ModelService(context).choose(project_id, "meta-llama/Llama-3.2-1B-Instruct")


def test_curated_list_is_complete() -> None:
    models = curated_models()
    families = {m.family for m in models}
    assert {"Qwen3", "Llama 3.2", "SmolLM2", "Gemma 3", "Phi-4", "Mistral"} <= families
    assert all(m.params > 0 and m.licence and m.context > 0 for m in models)
    assert [m for m in models if not m.ollama_merged] == [
        m for m in models
        if m.architecture in {"MistralForCausalLM", "Qwen3ForCausalLM", "SmolLM3ForCausalLM"}]


def test_model_dir_problem_for_files(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({}))
    assert "tokenizer" in (model_dir_problem(tmp_path) or "")
    assert "not a folder" in (model_dir_problem(tmp_path / "nope") or "")
