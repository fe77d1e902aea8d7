"""The GGUF writer on the tiny model folder: what llama.cpp reads back (metadata, tokens,
special ids, chat template, tensor layout and values), what it refuses, and that nothing is left
under the final name when it stops."""

from __future__ import annotations

import json
import shutil
from importlib.util import find_spec
from pathlib import Path

import gguf
import numpy as np
import pytest
from safetensors.numpy import load_file

from finetuneflow.core.export.gguf import (
    F16,
    Q4_K_M,
    Q8_0,
    GgufError,
    quantiser_missing,
    unsupported_reason,
    write_gguf,
)
from finetuneflow.core.progress import Cancelled, CancelToken, ignore_progress
from finetuneflow.services.export import write_gguf_files
from tests.helpers.families import cached_family_model


def _field(reader: gguf.GGUFReader, key: str) -> object:
    return reader.fields[key].contents()


def _llama_permuted(weights: np.ndarray, heads: int) -> np.ndarray:
    """The rows in llama.cpp's rope order: for each head, even then odd halves interleaved."""
    rows = weights.shape[0] // heads
    order = np.concatenate([h * rows + np.stack([np.arange(rows // 2),
                                                 np.arange(rows // 2) + rows // 2], 1).ravel()
                            for h in range(heads)])
    return weights[order]


@pytest.fixture(scope="module")
def written(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> dict[str, gguf.GGUFReader]:
    folder = tmp_path_factory.mktemp("gguf")
    return {quantisation: gguf.GGUFReader(write_gguf(
        tiny_model_dir, folder / f"{quantisation}.gguf", quantisation, name="tiny").path)
        for quantisation in (F16, Q8_0)}


@pytest.mark.parametrize("quantisation", [F16, Q8_0])
def test_metadata_tokens_and_template_match_the_model(
        written: dict[str, gguf.GGUFReader], tiny_model_dir: Path, quantisation: str) -> None:
    reader = written[quantisation]
    config = json.loads((tiny_model_dir / "config.json").read_text())
    tokenizer = json.loads((tiny_model_dir / "tokenizer.json").read_text())
    assert _field(reader, "general.architecture") == "llama"
    assert _field(reader, "llama.block_count") == config["num_hidden_layers"]
    assert _field(reader, "llama.attention.head_count_kv") == config["num_key_value_heads"]
    assert _field(reader, "general.file_type") == (1 if quantisation == F16 else 7)
    assert _field(reader, "tokenizer.ggml.model") == "gpt2"
    assert _field(reader, "tokenizer.ggml.pre") == "gpt-2"
    vocab = {index: token for token, index in tokenizer["model"]["vocab"].items()}
    vocab |= {entry["id"]: entry["content"] for entry in tokenizer["added_tokens"]}
    assert _field(reader, "tokenizer.ggml.tokens") == [vocab[i] for i in range(len(vocab))]
    assert len(_field(reader, "tokenizer.ggml.merges")) == len(tokenizer["model"]["merges"])
    ids = {entry["content"]: entry["id"] for entry in tokenizer["added_tokens"]}
    assert _field(reader, "tokenizer.ggml.eos_token_id") == ids["<|im_end|>"]
    assert _field(reader, "tokenizer.ggml.eot_token_id") == ids["<|im_end|>"]
    assert _field(reader, "tokenizer.ggml.padding_token_id") == ids["<|pad|>"]
    assert "tokenizer.ggml.bos_token_id" not in reader.fields  # the model has no BOS
    assert _field(reader, "tokenizer.ggml.add_bos_token") is False
    assert _field(reader, "tokenizer.chat_template") == (
        tiny_model_dir / "chat_template.jinja").read_text()


def test_f16_tensors_hold_the_weights_in_llama_cpps_layout(
        written: dict[str, gguf.GGUFReader], tiny_model_dir: Path) -> None:
    config = json.loads((tiny_model_dir / "config.json").read_text())
    weights = load_file(tiny_model_dir / "model.safetensors")
    tensors = {tensor.name: tensor for tensor in written[F16].tensors}
    assert len(tensors) == len(weights)  # untied: output.weight is written too
    for name, hf_name, heads in (
            ("blk.1.attn_q.weight", "model.layers.1.self_attn.q_proj.weight",
             config["num_attention_heads"]),
            ("blk.1.attn_k.weight", "model.layers.1.self_attn.k_proj.weight",
             config["num_key_value_heads"]),
            ("blk.1.attn_v.weight", "model.layers.1.self_attn.v_proj.weight", None),
            ("output.weight", "lm_head.weight", None)):
        tensor = tensors[name]
        expected = weights[hf_name] if heads is None else _llama_permuted(weights[hf_name], heads)
        assert tuple(tensor.shape) == tuple(reversed(expected.shape))
        assert tensor.tensor_type == gguf.GGMLQuantizationType.F16
        np.testing.assert_allclose(np.asarray(tensor.data, dtype=np.float32), expected,
                                   atol=1e-3)
    norm = tensors["blk.0.attn_norm.weight"]
    assert norm.tensor_type == gguf.GGMLQuantizationType.F32


def test_q8_0_matrices_are_quantised_and_close_to_the_weights(
        written: dict[str, gguf.GGUFReader], tiny_model_dir: Path) -> None:
    weights = load_file(tiny_model_dir / "model.safetensors")
    tensors = {tensor.name: tensor for tensor in written[Q8_0].tensors}
    down = tensors["blk.0.ffn_down.weight"]
    assert down.tensor_type == gguf.GGMLQuantizationType.Q8_0
    values = gguf.quants.dequantize(down.data, down.tensor_type)
    expected = weights["model.layers.0.mlp.down_proj.weight"]
    assert np.abs(values - expected).max() <= np.abs(expected).max() / 127 + 1e-6
    assert tensors["blk.0.ffn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32


def test_bfloat16_weights_are_read_without_torch(tiny_model_dir: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file as load_torch
    from safetensors.torch import save_file

    model = tmp_path / "bf16"
    shutil.copytree(tiny_model_dir, model)
    weights = load_torch(model / "model.safetensors")
    save_file({name: value.to(torch.bfloat16) for name, value in weights.items()},
              model / "model.safetensors", metadata={"format": "pt"})
    reader = gguf.GGUFReader(write_gguf(model, tmp_path / "m.gguf", F16, name="m").path)
    tensor = next(t for t in reader.tensors if t.name == "token_embd.weight")
    expected = weights["model.embed_tokens.weight"].to(torch.bfloat16).float().numpy()
    np.testing.assert_allclose(np.asarray(tensor.data, dtype=np.float32), expected, atol=2e-3)


def test_a_stopped_write_leaves_no_file(tiny_model_dir: Path, tmp_path: Path) -> None:
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        write_gguf(tiny_model_dir, tmp_path / "model.gguf", Q8_0, name="m", cancel=cancel)
    assert list(tmp_path.iterdir()) == []


def _edited(tiny_model_dir: Path, tmp_path: Path, name: str, change: dict[str, object]) -> Path:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    data = json.loads((model / name).read_text())
    data.update(change)
    (model / name).write_text(json.dumps(data))
    return model


def test_other_architectures_are_refused_before_any_work(tiny_model_dir: Path,
                                                         tmp_path: Path) -> None:
    model = _edited(tiny_model_dir, tmp_path, "config.json",
                    {"architectures": ["Olmo2ForCausalLM"]})
    reason = unsupported_reason(model)
    assert reason is not None and "Olmo2ForCausalLM" in reason
    assert "convert_hf_to_gguf.py" in reason
    with pytest.raises(GgufError, match="Olmo2ForCausalLM"):
        write_gguf(model, tmp_path / "out.gguf", F16, name="m")
    assert not (tmp_path / "out.gguf").exists()
    assert unsupported_reason(tiny_model_dir) is None


def test_unknown_tokenizers_and_rope_scaling_are_refused(tiny_model_dir: Path,
                                                         tmp_path: Path) -> None:
    model = _edited(tiny_model_dir, tmp_path, "tokenizer.json",
                    {"pre_tokenizer": {"type": "Metaspace", "replacement": "▁"}})
    assert "tokenizer" in (unsupported_reason(model) or "")
    yarn = _edited(tiny_model_dir, tmp_path / "yarn", "config.json",
                   {"rope_parameters": {"rope_type": "yarn", "factor": 4.0,
                                        "rope_theta": 10000.0}})
    assert "yarn" in (unsupported_reason(yarn) or "")


def test_q4_k_m_names_what_to_install_when_llama_cpp_is_missing() -> None:
    reason = quantiser_missing(Q4_K_M)
    if find_spec("llama_cpp") is None:
        assert reason is not None and "llama-cpp-python" in reason
    else:
        assert reason is None
    assert quantiser_missing(F16) is None and quantiser_missing(Q8_0) is None
    assert "q4_k_m" in (quantiser_missing("q2_k") or "")


@pytest.mark.skipif(find_spec("llama_cpp") is None,
                    reason="llama-cpp-python is not installed (pip install "
                           "'finetuneflow[gguf-q4]'; it compiles llama.cpp)")
def test_q4_k_m_comes_from_llama_cpps_quantiser_and_loads(tiny_model_dir: Path,
                                                          tmp_path: Path) -> None:
    from llama_cpp import Llama

    written = write_gguf_files({"merged": str(tiny_model_dir), "folder": str(tmp_path),
                                "quantisations": [Q4_K_M], "name": "tiny"},
                               ignore_progress, CancelToken())
    target = tmp_path / "model-q4_k_m.gguf"
    assert written == [{"file": target.name, "quantisation": Q4_K_M,
                        "bytes": target.stat().st_size}]
    assert [path.name for path in tmp_path.iterdir()] == [target.name]  # the F16 step is gone
    reader = gguf.GGUFReader(target)
    assert _field(reader, "general.file_type") == 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    assert _field(reader, "tokenizer.chat_template") == (
        tiny_model_dir / "chat_template.jinja").read_text()
    llama = Llama(str(target), verbose=False, n_threads=1)
    try:
        assert llama.n_vocab() == len(_field(reader, "tokenizer.ggml.tokens"))
    finally:
        llama.close()


# The pre-tokenizers of SmolLM2, Llama 3 and Qwen2.5 as their tokenizer.json files write them
# (the split regexes as llama.cpp's llama-vocab.cpp quotes them from those files).
_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
           r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def _split(regex: str) -> dict[str, object]:
    return {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]}


@pytest.mark.parametrize(("pre_tokenizer", "name"), [
    ({"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}]}, "smollm"),
    (_split(_LLAMA3), "llama-bpe"),
    (_split(_LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")), "qwen2"),
])
def test_the_pre_tokenizer_gets_llama_cpps_name_for_it(
        tiny_model_dir: Path, tmp_path: Path, pre_tokenizer: dict[str, object],
        name: str) -> None:
    model = _edited(tiny_model_dir, tmp_path, "tokenizer.json", {"pre_tokenizer": pre_tokenizer})
    assert unsupported_reason(model) is None
    reader = gguf.GGUFReader(write_gguf(model, tmp_path / "m.gguf", F16, name="m").path)
    assert _field(reader, "tokenizer.ggml.pre") == name
    inverted = _edited(tiny_model_dir, tmp_path / "inverted", "tokenizer.json", {
        "pre_tokenizer": {**_split(_LLAMA3), "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": _LLAMA3}, "behavior": "Removed",
             "invert": True}, {"type": "ByteLevel", "use_regex": False}]}})
    assert "tokenizer" in (unsupported_reason(inverted) or "")


def _family_model(tiny_model_dir: Path, folder: Path, architecture: str) -> Path:
    """A random tiny model of another supported shape, with the tiny model's tokenizer:
    Qwen2 (q/k/v biases, tied embeddings, no rope permutation) or Llama 3.2 (llama3 rope
    scaling, tied embeddings)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(1)
    shape = {"vocab_size": json.loads((tiny_model_dir / "config.json").read_text())[
        "vocab_size"], "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": True,
             "max_position_embeddings": 2048}
    if architecture == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**shape))
    else:
        model = LlamaForCausalLM(LlamaConfig(**shape, rope_parameters={
            "rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192}))
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(tiny_model_dir / name, folder / name)
    return folder


@pytest.mark.skipif(find_spec("llama_cpp") is None,
                    reason="llama-cpp-python is not installed (pip install "
                           "'finetuneflow[gguf-q4]'; it compiles llama.cpp)")
@pytest.mark.parametrize("architecture", ["qwen2", "llama3-rope"])
def test_llama_cpp_runs_the_other_supported_shapes_as_transformers_does(
        tiny_model_dir: Path, tmp_path: Path, architecture: str) -> None:
    import torch
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM

    model = _family_model(tiny_model_dir, tmp_path / "model", architecture)
    target = write_gguf(model, tmp_path / "m.gguf", F16, name="m").path
    factors = [t for t in gguf.GGUFReader(target).tensors if t.name == "rope_freqs.weight"]
    if architecture == "qwen2":
        assert not factors
    else:  # the long wavelengths stretched by the factor, the short ones kept
        assert factors and factors[0].data.max() == 32.0 and factors[0].data.min() == 1.0
    ids = list(range(5, 45))
    with torch.inference_mode():
        expected = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)(
            torch.tensor([ids])).logits[0].numpy()
    llama = Llama(str(target), logits_all=True, n_ctx=64, verbose=False, n_threads=1)
    try:
        llama.eval(ids)
        logits = np.array(llama.scores[:len(ids)])
    finally:
        llama.close()
    print(f"{architecture} F16: max |logit difference| {np.abs(logits - expected).max():.3g}")
    assert np.abs(logits - expected).max() < 2e-3


# --- the other families (tests/helpers/families.py; llama.cpp runs them in
# tests/integration/test_gguf_families.py) ----------------------------------------------------

def test_gemma3_norms_get_their_plus_one_and_the_sliding_layers_their_metadata(
        tmp_path: Path) -> None:
    model = cached_family_model("gemma3")
    reader = gguf.GGUFReader(write_gguf(model, tmp_path / "m.gguf", F16, name="m").path)
    assert _field(reader, "general.architecture") == "gemma3"
    assert _field(reader, "gemma3.attention.sliding_window") == 16
    assert _field(reader, "gemma3.attention.sliding_window_pattern") == [True, False]
    # Gemma 3's own 5:1 pattern is left to llama.cpp's default, as its converter does
    released = _edited(model, tmp_path / "released", "config.json", {
        "num_hidden_layers": 6, "layer_types": ["sliding_attention"] * 5 + ["full_attention"]})
    path = write_gguf(released, tmp_path / "released.gguf", F16, name="m").path
    assert "gemma3.attention.sliding_window_pattern" not in gguf.GGUFReader(path).fields
    assert _field(reader, "gemma3.rope.freq_base") == 1_000_000.0
    assert _field(reader, "gemma3.rope.freq_base_swa") == 10_000.0
    assert _field(reader, "gemma3.attention.key_length") == 32
    weights = load_file(model / "model.safetensors")
    tensors = {tensor.name: tensor.data for tensor in reader.tensors}
    for gguf_name, hf_name in (("blk.1.post_ffw_norm.weight",
                                "model.layers.1.post_feedforward_layernorm.weight"),
                               ("blk.0.attn_q_norm.weight",
                                "model.layers.0.self_attn.q_norm.weight"),
                               ("output_norm.weight", "model.norm.weight")):
        np.testing.assert_array_equal(tensors[gguf_name], weights[hf_name] + 1.0)
    np.testing.assert_array_equal(tensors["blk.0.ffn_up.weight"].astype(np.float32),
                                  weights["model.layers.0.mlp.up_proj.weight"].astype(np.float16))


def test_phi3_keeps_its_fused_tensors_and_rotates_part_of_each_head(tmp_path: Path) -> None:
    model = cached_family_model("phi3")
    reader = gguf.GGUFReader(write_gguf(model, tmp_path / "m.gguf", Q8_0, name="m").path)
    assert _field(reader, "phi3.rope.dimension_count") == 12  # 0.75 of 16
    assert _field(reader, "phi3.attention.sliding_window") == 0
    assert _field(reader, "phi3.rope.scaling.original_context_length") == 4096
    shapes = {tensor.name: tuple(tensor.shape) for tensor in reader.tensors}
    assert shapes["blk.0.attn_qkv.weight"] == (64, 64 + 2 * 2 * 16)
    assert shapes["blk.0.ffn_up.weight"] == (64, 2 * 128)  # gate and up, as Phi-3 stores them
    assert "output.weight" not in shapes  # tied: llama.cpp reuses token_embd


@pytest.mark.parametrize(("family", "change", "words"), [
    ("smollm3", {"no_rope_layers": [0, 1]}, "every 4th layer"),
    ("gemma3", {"query_pre_attn_scalar": 256}, "query_pre_attn_scalar"),
    ("mistral", {"sliding_window": 4096}, "sliding attention window"),
])
def test_settings_llama_cpp_fixes_per_architecture_are_refused_when_they_differ(
        tmp_path: Path, family: str, change: dict[str, object], words: str) -> None:
    model = _edited(cached_family_model(family), tmp_path, "config.json", change)
    reason = unsupported_reason(model)
    assert reason is not None and words in reason and "Export it without GGUF" in reason
    with pytest.raises(GgufError, match=words):
        write_gguf(model, tmp_path / "out.gguf", F16, name="m")
    assert not (tmp_path / "out.gguf").exists()


@pytest.mark.skipif(find_spec("llama_cpp") is None,
                    reason="llama-cpp-python is not installed (pip install "
                           "'finetuneflow[gguf-q4]'; it compiles llama.cpp)")
def test_a_name_with_phi3_in_it_does_not_stop_llama_cpp_loading_the_file(
        tmp_path: Path) -> None:
    """llama.cpp gives a file whose name holds "phi3" Phi-3's SentencePiece token rules, which
    need a "</s>" token that a byte-level vocabulary lacks: loading then fails."""
    from llama_cpp import Llama

    path = write_gguf(cached_family_model("phi3"), tmp_path / "m.gguf", F16,
                      name="My Phi3 and PHI-3 notes").path
    assert _field(gguf.GGUFReader(path), "general.name") == "My Phi 3 and PHI 3 notes"
    Llama(str(path), n_ctx=32, verbose=False, n_threads=1).close()
