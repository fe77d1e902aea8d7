"""Every model family the app trains, written as GGUF (F16 and Q8_0) and run by llama.cpp: its
logits match transformers' for a system + two-turn chat, and the chat template embedded in the
file, rendered by llama-cpp-python, gives HF's text. The models are the tiny random-init ones of
tests/helpers/families.py; SmolLM3 is rebuilt with 4 layers so its rope-less layer falls where
llama.cpp puts it (every 4th), as in SmolLM3-3B."""

from __future__ import annotations

import dataclasses
import json
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

from finetuneflow.core.export.gguf import F16, Q8_0, GgufError, unsupported_reason, write_gguf
from tests.helpers.families import (
    FAMILIES,
    SENTENCEPIECE_FAMILIES,
    build_family_model,
    cached_family_model,
)

pytestmark = pytest.mark.slow
needs_llama_cpp = pytest.mark.skipif(
    find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed (pip install "
    "'finetuneflow[gguf-q4]'; it compiles llama.cpp)")
ALL_FAMILIES = {**FAMILIES, **SENTENCEPIECE_FAMILIES}
PROMPT = [{"role": "system", "content": "You answer arithmetic questions with one number."},
          {"role": "user", "content": "What is 7 plus 7?"},
          {"role": "assistant", "content": "14"},
          {"role": "user", "content": "What is 3 plus 3?"}]
F16_TOLERANCE = 2e-3  # max |logit difference|; the logits themselves reach about 1
Q8_0_AGREEMENT = 0.8  # share of positions whose top token matches transformers'
# SmolLM3-3B's pattern at 4 layers: rope on layers 0-2, none on layer 3.
SMOLLM3_AS_RELEASED = {"num_hidden_layers": 4, "no_rope_layers": [1, 1, 1, 0],
                       "no_rope_layer_interval": 4}


# Phi-4-mini's long-context rope at a toy size: 6 factors (12 rotated dims / 2), 4x context.
PHI4_MINI_ROPE = {"max_position_embeddings": 1024, "original_max_position_embeddings": 256,
                  "rope_parameters": {"rope_type": "longrope", "rope_theta": 10000.0,
                                      "partial_rotary_factor": 0.75,
                                      "short_factor": [1.0, 1.2, 1.5, 2.0, 3.0, 5.0],
                                      "long_factor": [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]}}
# Phi-4-mini's pre-tokenizer (GPT-4o's o200k split), as its tokenizer.json writes it.
GPT4O_PRE_TOKENIZER = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "behavior": "Isolated", "invert": False, "pattern": {"Regex": (
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+"
        r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}|"
        r" ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")}},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}


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


@needs_llama_cpp
@pytest.mark.parametrize("name", ["qwen3", "phi3", "gemma3", "smollm3", "mistral",
                                  *SENTENCEPIECE_FAMILIES])
def test_llama_cpp_runs_each_family_as_transformers_does(name: str, tmp_path: Path) -> None:
    import torch
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    from transformers import AutoModelForCausalLM, AutoTokenizer

    family = ALL_FAMILIES[name]
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


@needs_llama_cpp
def test_smollm3_with_rope_less_layers_llama_cpp_does_not_skip_is_refused(tmp_path: Path
                                                                          ) -> None:
    model = cached_family_model("smollm3")  # 2 layers, the second without rope
    reason = unsupported_reason(model)
    assert reason is not None and "every 4th layer" in reason and "without GGUF" in reason
    with pytest.raises(GgufError, match="every 4th layer"):
        write_gguf(model, tmp_path / "m.gguf", F16, name="m")
    assert not list(tmp_path.iterdir())


@needs_llama_cpp
def test_phi4_minis_long_context_rope_and_gpt4o_tokenizer_run_in_llama_cpp(tmp_path: Path
                                                                           ) -> None:
    """Phi-4-mini as released: longrope scaling (the short factors below the original context,
    cos and sin scaled by the attention factor) and GPT-4o's pre-tokenizer."""
    import gguf
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    family = FAMILIES["phi3"]
    model = build_family_model(dataclasses.replace(
        family, config={**family.config, **PHI4_MINI_ROPE}), tmp_path / "phi4-mini")
    tokenizer_path = model / "tokenizer.json"
    data = json.loads(tokenizer_path.read_text())
    tokenizer_path.write_text(json.dumps({**data, "pre_tokenizer": GPT4O_PRE_TOKENIZER}))
    assert unsupported_reason(model) is None
    tokenizer = AutoTokenizer.from_pretrained(model)
    text = tokenizer.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    text += "They'LL say DON'T, isn't it? 12345 apples\n\n  spaced\tTAB CamelCase."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        expected = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)(
            torch.tensor([ids])).logits[0].numpy()
    path = write_gguf(model, tmp_path / "m.gguf", F16, name="phi-4-mini tuned").path
    reader = gguf.GGUFReader(path)
    assert reader.fields["tokenizer.ggml.pre"].contents() == "gpt-4o"
    assert reader.fields["phi3.rope.scaling.attn_factor"].contents() == pytest.approx(
        (1 + np.log(4) / np.log(256)) ** 0.5)
    tokens, logits, _ = _llama_cpp_run(path, text)
    assert tokens == ids
    difference = float(np.abs(logits - expected).max())
    print(f"phi-4-mini longrope F16: max |logit difference| {difference:.3g} over {len(ids)}")
    assert difference < F16_TOLERANCE


# Spaces (leading, trailing, runs), digits, accents, CJK and emoji (byte fallback), newlines and
# tabs, special tokens inside text, and the chat layouts of both families.
TEXTS = ["Hello world", " leading space", "  two leading spaces", "trailing ", "a  b   c",
         "1234567890 digits 42", "Über café naïve", "é", "敏捷的棕色狐狸跳过了懒狗",
         "emoji 🙂👍🏽 here",
         "tab\there\nnewline\n\nend", "\n", "   ", "x", "don't stop", "fox.jumps",
         "The quick brown fox", "Question: What? Answer: It.", "[INST] hi[/INST]",
         "<s>[INST] What is 2+2?[/INST] 4</s>", "[INST]no space[/INST]",
         "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n",
         "LoRA trains small low-rank matrices", "<bos>text after bos", "ends with special</s>"]


@needs_llama_cpp
@pytest.mark.parametrize("name", list(SENTENCEPIECE_FAMILIES))
def test_sentencepiece_tokenizers_give_hfs_token_ids_in_llama_cpp(name: str, tmp_path: Path
                                                                  ) -> None:
    """Mistral v0.3's and Gemma 3's kind of tokenizer, written as llama.cpp's "llama" vocab:
    the same ids as HF for every text, BOS added as HF adds it, special tokens parsed."""
    import gguf
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    model = cached_family_model(name)
    tokenizer = AutoTokenizer.from_pretrained(model)
    path = write_gguf(model, tmp_path / "m.gguf", F16, name=f"{name} tuned").path
    reader = gguf.GGUFReader(path)
    assert reader.fields["tokenizer.ggml.model"].contents() == "llama"
    assert reader.fields["tokenizer.ggml.add_space_prefix"].contents() is (name == "mistral-spm")
    assert reader.fields["tokenizer.ggml.add_bos_token"].contents() is True
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    assert types[tokens.index("<0x0A>")] == gguf.TokenType.BYTE
    assert types[tokens.index(ALL_FAMILIES[name].eos)] == gguf.TokenType.CONTROL
    llama = Llama(str(path), vocab_only=True, verbose=False)
    try:
        different = [text for text in TEXTS if tokenizer(text)["input_ids"]
                     != llama.tokenize(text.encode(), add_bos=True, special=True)]
    finally:
        llama.close()
    print(f"{name}: {len(TEXTS) - len(different)} of {len(TEXTS)} texts tokenized as HF does")
    assert different == []


def _metaspace_mistral(tmp_path: Path, scheme: str) -> Path:
    """The Mistral-style tiny model, its tokenizer converted the non-legacy way: no normalizer,
    a Metaspace step that puts "▁" before text by `scheme`."""
    model = tmp_path / "model"
    model.mkdir()
    for item in cached_family_model("mistral-spm").iterdir():
        (model / item.name).write_bytes(item.read_bytes())
    data = json.loads((model / "tokenizer.json").read_text(encoding="utf-8"))
    data["normalizer"] = None
    data["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581",
                             "prepend_scheme": scheme, "split": False}
    (model / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    return model


@needs_llama_cpp
def test_a_metaspace_first_tokenizer_gives_hfs_ids_for_every_chat_prompt(tmp_path: Path
                                                                          ) -> None:
    """Mistral v0.3's form ("first"): written without the space prefix, every text that starts
    with a special token or a space tokenizes as in HF, chat prompts included; only a bare text
    at the very start lacks HF's leading "▁"."""
    import gguf
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    model = _metaspace_mistral(tmp_path, "first")
    assert unsupported_reason(model) is None
    tokenizer = AutoTokenizer.from_pretrained(model)
    path = write_gguf(model, tmp_path / "m.gguf", F16, name="m").path
    assert gguf.GGUFReader(path).fields["tokenizer.ggml.add_space_prefix"].contents() is False
    chat = tokenizer.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    starts_marked = [text for text in TEXTS if text.startswith(("<s>", "[INST]"))
                     or text.startswith(" ")]
    llama = Llama(str(path), vocab_only=True, verbose=False)
    try:
        def same(text: str) -> bool:
            return bool(tokenizer(text, add_special_tokens=False)["input_ids"]
                        == llama.tokenize(text.encode(), add_bos=False, special=True))
        assert same(chat)
        assert [text for text in starts_marked if not same(text)] == []
        bare = [text for text in TEXTS if text not in starts_marked]
        print(f"metaspace first: {len(bare) - sum(map(same, bare))} of {len(bare)} bare texts "
              "lack the leading \u2581")
        assert not same("Hello world")  # HF: ▁Hello ▁world; here: Hello ▁world
    finally:
        llama.close()


def test_a_metaspace_always_tokenizer_is_refused(tmp_path: Path) -> None:
    """"always" puts "▁" after each special token unless the text starts with a space: no
    llama.cpp setting reproduces that for "[INST] question", so no GGUF is written."""
    model = _metaspace_mistral(tmp_path, "always")
    reason = unsupported_reason(model)
    assert reason is not None and "prepend_scheme 'always'" in reason
    assert "convert_hf_to_gguf.py" in reason
    with pytest.raises(GgufError, match="SentencePiece-style"):
        write_gguf(model, tmp_path / "out" / "m.gguf", F16, name="m")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
