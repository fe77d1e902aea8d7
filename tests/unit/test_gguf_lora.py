"""The LoRA GGUF writer on a PEFT adapter of the tiny model: the layout llama.cpp reads (type,
alpha, tensor names and shapes, q/k rows permuted like the base's), llama.cpp applying it on the
base's F16 GGUF as transformers' merged model does, and what it refuses before any work."""

from __future__ import annotations

import json
import math
import shutil
from importlib.util import find_spec
from pathlib import Path

import gguf
import numpy as np
import pytest
from safetensors.numpy import load_file

from finetuneflow.core.export.gguf import F16, GgufError, write_gguf
from finetuneflow.core.export.gguf_lora import (
    F32,
    unsupported_reason,
    write_lora_gguf,
)
from finetuneflow.core.progress import Cancelled, CancelToken
from tests.unit.test_gguf import _family_model, _llama_permuted

RANK, ALPHA = 4, 8
IDS = [5, 17, 42, 99, 3, 11, 64, 7]


def _field(reader: gguf.GGUFReader, key: str) -> object:
    return reader.fields[key].contents()


def _random_adapter(base: Path, folder: Path) -> Path:
    """A PEFT adapter on every linear layer of `base` with random (non-zero) B matrices, as
    training leaves them; saved the way the trainer saves it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    peft = get_peft_model(model, LoraConfig(r=RANK, lora_alpha=ALPHA,
                                            target_modules="all-linear"))
    with torch.no_grad():
        for name, parameter in peft.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.05)
    peft.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def adapter(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _random_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapter"))


def _edited_config(adapter: Path, folder: Path, change: dict[str, object]) -> Path:
    shutil.copytree(adapter, folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, **change}))
    return folder


def test_the_file_has_llama_cpps_adapter_layout(adapter: Path, tiny_model_dir: Path,
                                                tmp_path: Path) -> None:
    written = write_lora_gguf(adapter, tiny_model_dir, tmp_path / "a.gguf", name="tiny")
    assert written.bytes == (tmp_path / "a.gguf").stat().st_size
    reader = gguf.GGUFReader(written.path)
    assert _field(reader, "general.type") == "adapter"
    assert _field(reader, "general.architecture") == "llama"
    assert _field(reader, "adapter.type") == "lora"
    assert _field(reader, "adapter.lora.alpha") == ALPHA
    config = json.loads((tiny_model_dir / "config.json").read_text())
    weights = load_file(adapter / "adapter_model.safetensors")
    tensors = {tensor.name: tensor for tensor in reader.tensors}
    assert len(tensors) == len(weights) == 2 * 7 * config["num_hidden_layers"]
    prefix = "base_model.model.model.layers.1."
    for name, module, heads in (("attn_q", "self_attn.q_proj", config["num_attention_heads"]),
                                ("attn_k", "self_attn.k_proj", config["num_key_value_heads"]),
                                ("ffn_down", "mlp.down_proj", None)):
        lora_a, lora_b = weights[f"{prefix}{module}.lora_A.weight"], \
            weights[f"{prefix}{module}.lora_B.weight"]
        expected_b = lora_b if heads is None else _llama_permuted(lora_b, heads)
        for part, expected in (("lora_a", lora_a), ("lora_b", expected_b)):
            tensor = tensors[f"blk.1.{name}.weight.{part}"]
            assert tuple(tensor.shape) == tuple(reversed(expected.shape))
            assert tensor.tensor_type == gguf.GGMLQuantizationType.F16
            np.testing.assert_allclose(np.asarray(tensor.data, dtype=np.float32), expected,
                                       atol=1e-3)


def test_f32_and_rslora_alpha(adapter: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    rslora = _edited_config(adapter, tmp_path / "rslora", {"use_rslora": True})
    reader = gguf.GGUFReader(write_lora_gguf(rslora, tiny_model_dir, tmp_path / "a.gguf", F32,
                                             name="tiny").path)
    # llama.cpp scales by alpha / rank; rsLoRA by alpha / sqrt(rank)
    assert _field(reader, "adapter.lora.alpha") == pytest.approx(ALPHA * math.sqrt(RANK))
    assert {tensor.tensor_type for tensor in reader.tensors} == {gguf.GGMLQuantizationType.F32}


@pytest.mark.skipif(find_spec("llama_cpp") is None,
                    reason="llama-cpp-python is not installed (pip install "
                           "'finetuneflow[gguf-q4]'; it compiles llama.cpp)")
@pytest.mark.parametrize("architecture", ["llama", "qwen2"])
def test_llama_cpp_applies_it_like_the_merged_model(adapter: Path, tiny_model_dir: Path,
                                                    tmp_path: Path, architecture: str) -> None:
    """Llama (q/k rows permuted) and Qwen2 (not permuted; q/k/v biases the adapter leaves)."""
    import torch
    from llama_cpp import Llama
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    if architecture == "qwen2":
        tiny_model_dir = _family_model(tiny_model_dir, tmp_path / "qwen2", "qwen2")
        adapter = _random_adapter(tiny_model_dir, tmp_path / "adapter")
    base = write_gguf(tiny_model_dir, tmp_path / "base.gguf", F16, name="tiny").path
    lora = write_lora_gguf(adapter, tiny_model_dir, tmp_path / "a.gguf", name="tiny").path
    with torch.inference_mode():
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        base_logits = model(torch.tensor([IDS])).logits[0].numpy()
        merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
        expected = merged(torch.tensor([IDS])).logits[0].numpy()
    llama = Llama(str(base), lora_path=str(lora), logits_all=True, n_ctx=64, verbose=False,
                  n_threads=1)
    try:
        llama.eval(IDS)
        logits = np.array(llama.scores[:len(IDS)])
    finally:
        llama.close()
    difference = float(np.abs(logits - expected).max())
    print(f"{architecture}: base F16 + LoRA F16 in llama.cpp vs merged in transformers: max "
          f"|logit difference| {difference:.3g}; the adapter moves the logits by up to "
          f"{float(np.abs(expected - base_logits).max()):.3g}")
    assert difference < 2e-3
    assert float(np.abs(expected - base_logits).max()) > 50 * difference  # it was applied


def test_other_architectures_and_adapter_kinds_are_refused(adapter: Path, tiny_model_dir: Path,
                                                           tmp_path: Path) -> None:
    base = tmp_path / "base"
    shutil.copytree(tiny_model_dir, base)
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**config,
                                                  "architectures": ["Olmo2ForCausalLM"]}))
    reason = unsupported_reason(adapter, base)
    assert reason is not None and "Olmo2ForCausalLM" in reason
    with pytest.raises(GgufError, match="Olmo2ForCausalLM"):
        write_lora_gguf(adapter, base, tmp_path / "out.gguf", name="m")
    assert not (tmp_path / "out.gguf").exists()
    dora = _edited_config(adapter, tmp_path / "dora", {"use_dora": True})
    assert "DoRA" in (unsupported_reason(dora, tiny_model_dir) or "")
    saved = _edited_config(adapter, tmp_path / "saved", {"modules_to_save": ["lm_head"]})
    assert "convert_lora_to_gguf.py" in (unsupported_reason(saved, tiny_model_dir) or "")
    assert unsupported_reason(adapter, tiny_model_dir) is None


def test_a_stopped_write_leaves_no_file(adapter: Path, tiny_model_dir: Path,
                                        tmp_path: Path) -> None:
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        write_lora_gguf(adapter, tiny_model_dir, tmp_path / "a.gguf", name="m", cancel=cancel)
    assert list(tmp_path.iterdir()) == []
