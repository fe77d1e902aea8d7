"""Every model family the app trains, written as GGUF (F16 and Q8_0) and run by llama.cpp: its
logits match transformers' for a system + two-turn chat, and the chat template embedded in the
file, rendered by llama-cpp-python, gives HF's text. The models are the tiny random-init ones of
tests/helpers/families.py; SmolLM3 is rebuilt with 4 layers so its rope-less layer falls where
llama.cpp puts it (every 4th), as in SmolLM3-3B."""

from __future__ import annotations

import dataclasses
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

from finetuneflow.core.export.gguf import F16, Q8_0, GgufError, unsupported_reason, write_gguf
from tests.helpers.families import FAMILIES, build_family_model, cached_family_model

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed (pip install "
    "'finetuneflow[gguf-q4]'; it compiles llama.cpp)")]
PROMPT = [{"role": "system", "content": "You answer arithmetic questions with one number."},
          {"role": "user", "content": "What is 7 plus 7?"},
          {"role": "assistant", "content": "14"},
          {"role": "user", "content": "What is 3 plus 3?"}]
F16_TOLERANCE = 2e-3  # max |logit difference|; the logits themselves reach about 1
Q8_0_AGREEMENT = 0.8  # share of positions whose top token matches transformers'
# SmolLM3-3B's pattern at 4 layers: rope on layers 0-2, none on layer 3.
SMOLLM3_AS_RELEASED = {"num_hidden_layers": 4, "no_rope_layers": [1, 1, 1, 0],
                       "no_rope_layer_interval": 4}


def _model(name: str, tmp_path: Path) -> Path:
    if name != "smollm3":
        return cached_family_model(name)
    family = FAMILIES[name]
    family = dataclasses.replace(family, config={**family.config, **SMOLLM3_AS_RELEASED})
    return build_family_model(family, tmp_path / "smollm3")


def _llama_cpp_run(path: Path, text: str) -> tuple[list[int], np.ndarray, str]:
    """llama.cpp's tokens for `text`, its logits at every position and the file's template."""
    from llama_cpp import Llama

    llama = Llama(str(path), logits_all=True, n_ctx=256, verbose=False, n_threads=1)
    try:
        ids = llama.tokenize(text.encode(), add_bos=False, special=True)
        llama.eval(ids)
        return ids, np.array(llama.scores[:len(ids)]), llama.metadata["tokenizer.chat_template"]
    finally:
        llama.close()


@pytest.mark.parametrize("name", ["qwen3", "phi3", "gemma3", "smollm3", "mistral"])
def test_llama_cpp_runs_each_family_as_transformers_does(name: str, tmp_path: Path) -> None:
    import torch
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    from transformers import AutoModelForCausalLM, AutoTokenizer

    family = FAMILIES[name]
    model = _model(name, tmp_path)
    assert unsupported_reason(model) is None
    tokenizer = AutoTokenizer.from_pretrained(model)
    text = tokenizer.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        hf = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
        expected = hf(torch.tensor([ids])).logits[0].numpy()
    for quantisation in (F16, Q8_0):
        # a name with "phi3" in it would give the file Phi-3's SentencePiece token rules
        path = write_gguf(model, tmp_path / f"{quantisation}.gguf", quantisation,
                          name=f"{name} tuned").path
        tokens, logits, template = _llama_cpp_run(path, text)
        assert tokens == ids
        difference = float(np.abs(logits - expected).max())
        agreement = float((logits.argmax(-1) == expected.argmax(-1)).mean())
        print(f"{name} {quantisation}: max |logit difference| {difference:.3g}, top-1 "
              f"agreement {agreement:.0%} of {len(ids)} positions")
        if quantisation == F16:
            assert difference < F16_TOLERANCE
        assert agreement >= Q8_0_AGREEMENT
        formatter = Jinja2ChatFormatter(template, eos_token=family.eos,
                                        bos_token=family.bos or "")
        assert formatter(messages=PROMPT).prompt == text


def test_smollm3_with_rope_less_layers_llama_cpp_does_not_skip_is_refused(tmp_path: Path
                                                                          ) -> None:
    model = cached_family_model("smollm3")  # 2 layers, the second without rope
    reason = unsupported_reason(model)
    assert reason is not None and "every 4th layer" in reason and "without GGUF" in reason
    with pytest.raises(GgufError, match="every 4th layer"):
        write_gguf(model, tmp_path / "m.gguf", F16, name="m")
    assert not list(tmp_path.iterdir())
