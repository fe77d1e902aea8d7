"""Every architecture of the catalogue, end to end on tiny models: shape, loss masks, training,
merge and Modelfile.

The tiny models come from tests/helpers/families.py (real config shapes, the families' chat
layouts). The masks are read from TRL's own tokenisation of the datasets the trainer builds,
through its collator: the labels the loss is computed on.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from finetuneflow.core.chat_template import ChatRenderer, load_chat_template, load_special_tokens
from finetuneflow.core.child_protocol import ExportJob, FinishedEvent, StartedEvent
from finetuneflow.core.export.modelfile import detect_chat_format, render_modelfile
from finetuneflow.core.model_catalogue import curated_models, read_model_facts
from finetuneflow.services.export import model_chat_format
from finetuneflow.trainer.data import Conversation, prefix_consistent
from tests.helpers.cli import run_cli, run_cli_json
from tests.helpers.families import FAMILIES, Family, cached_family_model
from tests.integration.test_trainer import make_job, run_to_end

NAMES = list(FAMILIES)
SYSTEM = "Answer briefly."
REPLIES = ("2 plus 2 is 4.", "3 plus 3 is 6.")
CHAT: Conversation = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "What is 2 plus 2?"},
    {"role": "assistant", "content": REPLIES[0]},
    {"role": "user", "content": "And 3 plus 3?"},
    {"role": "assistant", "content": REPLIES[1]},
]
# A tensor each architecture has and a look-alike would not (Qwen3's qk-norm, Gemma 3's four
# norms per layer, Phi-3's fused projections), and whether the output layer is its own tensor.
SIGNATURE = {
    "llama": ("model.layers.0.mlp.gate_proj.weight", False),
    "qwen3": ("model.layers.0.self_attn.q_norm.weight", False),
    "gemma3": ("model.layers.0.pre_feedforward_layernorm.weight", False),
    "smollm3": ("model.layers.1.self_attn.k_proj.weight", False),
    "phi3": ("model.layers.0.self_attn.qkv_proj.weight", False),
    "mistral": ("model.layers.0.self_attn.v_proj.weight", True),
}


@pytest.fixture(scope="module", params=NAMES)
def family(request: pytest.FixtureRequest) -> tuple[Family, Path]:
    return FAMILIES[request.param], cached_family_model(request.param)


def _tensor_names(folder: Path) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "np") as weights:
        return set(weights.keys())


def test_each_tiny_model_has_its_family_shape(family: tuple[Family, Path]) -> None:
    spec, folder = family
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert config["architectures"] == [spec.architecture]
    signature, own_output = SIGNATURE[spec.name]
    names = _tensor_names(folder)
    assert signature in names
    assert ("lm_head.weight" in names) == own_output
    if spec.name == "gemma3":
        assert config["sliding_window"] == 16
        assert config["layer_types"] == ["sliding_attention", "full_attention"]
    facts = read_model_facts(folder)
    assert facts.architecture == spec.architecture and facts.has_chat_template


def test_the_llama_family_does_not_take_the_tiny_models_cache_folder(tiny_model_dir: Path
                                                                    ) -> None:
    assert cached_family_model("llama") != tiny_model_dir
    assert json.loads((tiny_model_dir / "config.json").read_text())["tie_word_embeddings"] is False


def test_each_family_is_in_the_catalogue() -> None:
    architectures = {model.architecture for model in curated_models()}
    assert {spec.architecture for spec in FAMILIES.values()} <= architectures


def test_model_set_says_before_training_what_a_family_cannot_become(home: Path) -> None:
    project = run_cli_json(home, "project", "create", "Families")["id"]
    qwen3 = str(cached_family_model("qwen3"))
    plain = run_cli(home, "model", "set", project, qwen3)
    assert plain.returncode == 0, plain.stderr
    assert "Ollama cannot import a Qwen3ForCausalLM model as it is" in plain.stdout
    chosen = run_cli_json(home, "model", "set", project, str(cached_family_model("gemma3")))
    assert chosen["architecture"] == "Gemma3ForCausalLM" and chosen["gguf"]
    assert chosen["export_note"] == ""
    again = run_cli_json(home, "model", "set", project, qwen3)
    assert "GGUF" in again["export_note"] and not again["ollama_merged"]


@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_the_app_renders_each_template_as_transformers_does(
        family: tuple[Family, Path], add_generation_prompt: bool) -> None:
    """The GUI counts an example's tokens with its own renderer (no transformers there)."""
    from transformers import AutoTokenizer

    _spec, folder = family
    chat = CHAT[:4] if add_generation_prompt else CHAT
    expected = AutoTokenizer.from_pretrained(folder).apply_chat_template(
        chat, tokenize=False, add_generation_prompt=add_generation_prompt)
    rendered = ChatRenderer.for_model(folder).render(
        chat, add_generation_prompt=add_generation_prompt)
    assert rendered == expected


# --- the Modelfile ----------------------------------------------------------------------------

def test_the_modelfile_recognises_each_family(family: tuple[Family, Path]) -> None:
    spec, folder = family
    chat_format = model_chat_format(folder)
    assert chat_format is not None and chat_format.name == spec.chat_format
    text = render_modelfile(chat_format, system=SYSTEM,
                            eos_token=load_special_tokens(folder).get("eos_token"))
    assert "TEMPLATE" in text and f'SYSTEM "{SYSTEM}"' in text
    assert f'PARAMETER stop "{spec.turn_end}"' in text


def test_phi4_mini_is_not_mistaken_for_phi3() -> None:
    phi4 = load_chat_template(cached_family_model("phi3"))
    assert phi4 is not None
    chat_format = detect_chat_format(phi4)
    assert chat_format is not None and chat_format.name == "phi4"
    # Phi-4-mini writes no newline after a role tag: the Modelfile must not add one.
    assert "|>\n" not in chat_format.template


# --- loss masks -------------------------------------------------------------------------------

def test_mistral_gets_its_system_text_folded_into_the_first_user_turn() -> None:
    """Mistral's template writes the system text before the LAST user message: rendered alone a
    prompt has it, the whole chat has it elsewhere, so prompts are not prefixes."""
    mistral = ChatRenderer.for_model(cached_family_model("mistral"))

    def render(messages: Conversation, add_generation_prompt: bool) -> str:
        return mistral.render(messages, add_generation_prompt=add_generation_prompt)

    folded = prefix_consistent(CHAT, render)
    assert [m["role"] for m in folded] == ["user", "assistant", "user", "assistant"]
    assert folded[0]["content"] == f"{SYSTEM}\n\nWhat is 2 plus 2?"
    assert render(folded, False).startswith(render(folded[:1], True))
    llama = ChatRenderer.for_model(cached_family_model("llama"))
    assert prefix_consistent(CHAT, lambda m, g: llama.render(m, add_generation_prompt=g)) is CHAT


def _masked_rows(folder: Path, tmp_path: Path) -> tuple[str, list[tuple[list[int], list[int]]],
                                                         Any]:
    """The trainer's loss plan, and each training row's ids and labels as TRL builds them."""
    import transformers
    from trl import SFTConfig, SFTTrainer

    from finetuneflow.trainer import build
    from finetuneflow.trainer.data import LoadedDataset

    tokenizer = build.load_tokenizer(str(folder))
    plan = build.plan_loss(tokenizer, "on")
    dataset = build.sft_dataset(LoadedDataset(tmp_path / "train.jsonl", [CHAT]), plan, tokenizer)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder)
    args = SFTConfig(output_dir=str(tmp_path / "out"), assistant_only_loss=plan.assistant_only_loss,
                     use_cpu=True, bf16=False, report_to="none", max_length=512)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset,
                         processing_class=tokenizer)
    rows = []
    for row in trainer.train_dataset:
        batch = trainer.data_collator([row])
        rows.append((batch["input_ids"][0].tolist(), batch["labels"][0].tolist()))
    return plan.loss_on, rows, tokenizer


def _spans(ids: list[int], labels: list[int]) -> list[list[int]]:
    spans: list[list[int]] = []
    previous = -100
    for token, label in zip(ids, labels, strict=True):
        if label != -100:
            if previous == -100:
                spans.append([])
            spans[-1].append(token)
        previous = label
    return spans


@pytest.mark.slow
def test_the_loss_covers_each_reply_and_nothing_else(family: tuple[Family, Path],
                                                     tmp_path: Path) -> None:
    spec, folder = family
    loss_on, rows, tokenizer = _masked_rows(folder, tmp_path)
    # Qwen3 and Gemma 3: TRL knows their real templates and marks the replies in the whole chat;
    # the others train one prompt/completion pair per reply.
    assert loss_on == ("assistant" if spec.name in {"qwen3", "gemma3"} else "completion")
    spans = [tokenizer.decode(span) for ids, labels in rows for span in _spans(ids, labels)]
    assert len(spans) == len(REPLIES), spans
    for span, reply in zip(spans, REPLIES, strict=True):
        assert spec.turn_end in span, span  # the model learns to stop
        bare = span
        for token in (spec.turn_end, *spec.reply_decorations):
            bare = bare.replace(token, "")
        assert bare.strip() == reply, span
        if spec.name == "qwen3":  # the think block comes before every reply: it is learnt too
            assert span.startswith("<think>\n\n</think>\n\n"), span
    for ids, _labels in rows:  # the system text is trained on, wherever the family puts it
        assert SYSTEM in tokenizer.decode(ids)


# --- training, QLoRA, merge, Modelfile in the real trainer child -------------------------------

QUICK = {"max_steps": 2, "eval_steps": 2, "save_steps": 2, "logging_steps": 1,
         "max_seq_length": 256}


def _chats(count: int, offset: int = 0) -> list[dict[str, Any]]:
    return [{"messages": [{"role": "system", "content": SYSTEM},
                          {"role": "user", "content": f"What is {i} plus {i}?"},
                          {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."}]}
            for i in range(offset, offset + count)]


def _train(root: Path, folder: Path, method: str) -> FinishedEvent:
    job = make_job(root, folder, {**QUICK, "method": method}, train=_chats(8),
                   evaluation=_chats(2, 50))
    run, code = run_to_end(root / "home", "run", str(job))
    assert code == 0, run.log()
    assert run.of(StartedEvent)[0].method == method
    finished = run.events[-1]
    assert isinstance(finished, FinishedEvent) and finished.step == 2, run.log()
    return finished


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_lora_trains_merges_and_gets_a_modelfile(name: str, tmp_path: Path) -> None:
    spec, folder = FAMILIES[name], cached_family_model(name)
    finished = _train(tmp_path / "lora", folder, "lora")
    adapter = Path(finished.adapter_dir)
    merged = tmp_path / "merged"
    job = ExportJob(run_id="export", model_path=str(folder), adapter_dir=str(adapter),
                    merged_dir=str(merged), prompts=[CHAT[:2]], max_new_tokens=4)
    run, code = run_to_end(tmp_path / "home", "export", str(job.write(tmp_path / "export.json")))
    assert code == 0, run.log()
    config = json.loads((merged / "config.json").read_text(encoding="utf-8"))
    assert config["architectures"] == [spec.architecture]
    assert not any("lora" in key for key in _tensor_names_any(merged))
    chat_format = model_chat_format(adapter)
    assert chat_format is not None and chat_format.name == spec.chat_format


def _tensor_names_any(folder: Path) -> set[str]:
    from safetensors import safe_open

    names: set[str] = set()
    for path in folder.glob("model*.safetensors"):
        with safe_open(str(path), "np") as weights:
            names |= set(weights.keys())
    assert names, f"no weights in {folder}"
    return names


@pytest.mark.slow
@pytest.mark.parametrize("name", ["phi3", "gemma3"])
def test_qlora_trains_fused_and_sliding_window_families_on_cpu(name: str, tmp_path: Path
                                                               ) -> None:
    """4-bit layers replace every Linear alike; Phi-3's fused projections and Gemma 3's
    scaled, tied embeddings are the shapes that differ from the Llama QLoRA run of
    test_trainer (the other families passed too when run, at ~30 s each)."""
    finished = _train(tmp_path, cached_family_model(name), "qlora")
    assert (Path(finished.adapter_dir) / "adapter_model.safetensors").exists()
    assert finished.train_loss is not None and math.isfinite(finished.train_loss)
