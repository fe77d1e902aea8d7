"""GGUF export end to end: a short real training run on the tiny model, exported with F16 and
Q8_0 GGUF files by the real service (trainer child + GGUF worker), the CLI in a child process,
and, where llama-cpp-python is installed, llama.cpp itself loading the files. The tests share
one export and go in order: those that export again come last."""

from __future__ import annotations

import json
import sys
import zipfile
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

import gguf
import numpy as np
import pytest

from finetuneflow.core.export.gguf import Q4_K_M
from finetuneflow.core.progress import Cancelled, CancelToken
from finetuneflow.services.context import AppContext
from finetuneflow.services.errors import UserError
from finetuneflow.services.export import ExportOptions, ExportService
from finetuneflow.services.jobs import JobService
from finetuneflow.services.ollama import OllamaService
from finetuneflow.storage.home import Home
from finetuneflow.storage.tables import JobKind, JobStatus
from tests.helpers.cli import run_cli, run_cli_json
from tests.helpers.fake_ollama import fake_ollama as installed_fake_ollama
from tests.helpers.finished_run import ExportedRun, trained_and_exported

pytestmark = pytest.mark.slow
PROMPT = [{"role": "system", "content": "You answer arithmetic questions with one number."},
          {"role": "user", "content": "What is 7 plus 7?"},
          {"role": "assistant", "content": "14"},
          {"role": "user", "content": "What is 3 plus 3?"}]


class Exported(ExportedRun):

    @property
    def merged(self) -> Path:
        return self.result.folder / "merged"

    def gguf(self, quantisation: str) -> Path:
        return self.result.folder / "gguf" / f"model-{quantisation}.gguf"


@pytest.fixture(scope="module")
def exported(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Exported]:
    root = tmp_path_factory.mktemp("gguf-export")
    options = ExportOptions(gguf=("f16", "q8_0"), sample_prompts=1, sample_max_tokens=4)
    with trained_and_exported(root, tiny_model_dir, "GGUF demo", options) as made:
        yield Exported(**vars(made))


def _field(reader: gguf.GGUFReader, key: str) -> object:
    return reader.fields[key].contents()


def test_the_export_holds_both_gguf_files_and_a_modelfile_from_the_smallest(
        exported: Exported) -> None:
    result = exported.result
    assert [(entry.file, entry.quantisation) for entry in result.gguf] == [
        ("gguf/model-f16.gguf", "f16"), ("gguf/model-q8_0.gguf", "q8_0")]
    for entry in result.gguf:
        assert (result.folder / entry.file).stat().st_size == entry.bytes
    sizes = {entry.quantisation: entry.bytes for entry in result.gguf}
    assert sizes["q8_0"] < sizes["f16"]
    modelfile = (result.folder / "gguf" / "Modelfile").read_text()
    assert "\nFROM ./model-q8_0.gguf\n" in modelfile
    assert "TEMPLATE" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    assert "\nFROM .\n" in (exported.merged / "Modelfile").read_text()
    with zipfile.ZipFile(result.zip_path) as archive:
        names = {name.split("/", 1)[1] for name in archive.namelist()}
    assert {"gguf/model-f16.gguf", "gguf/model-q8_0.gguf", "gguf/Modelfile"} <= names
    assert not [p for p in result.folder.rglob("*") if p.name.endswith(".partial")]
    assert result.to_json()["gguf"] == [
        {"file": "gguf/model-f16.gguf", "quantisation": "f16", "bytes": sizes["f16"],
         "kind": "model"},
        {"file": "gguf/model-q8_0.gguf", "quantisation": "q8_0", "bytes": sizes["q8_0"],
         "kind": "model"}]


def test_the_report_and_config_list_the_gguf_files(exported: Exported) -> None:
    report = (exported.result.folder / "report.md").read_text()
    assert "| `gguf/model-q8_0.gguf` | Q8_0 |" in report
    assert "| `gguf/model-f16.gguf` | F16 |" in report
    assert "llama-server -m gguf/model-f16.gguf" in report and "cd gguf" in report
    config = json.loads((exported.result.folder / "config.json").read_text())
    assert [entry["quantisation"] for entry in config["export"]["gguf"]] == ["f16", "q8_0"]
    again = ExportService(AppContext.open(Home(exported.home))).last_export(exported.project_id)
    assert again is not None and again.gguf == exported.result.gguf


@pytest.mark.parametrize("quantisation", ["f16", "q8_0"])
def test_the_gguf_carries_the_fine_tuned_weights_tokens_and_template(
        exported: Exported, quantisation: str) -> None:
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer

    reader = gguf.GGUFReader(exported.gguf(quantisation))
    tokenizer = AutoTokenizer.from_pretrained(exported.merged)
    weights = load_file(exported.merged / "model.safetensors")
    assert _field(reader, "general.architecture") == "llama"
    assert len(reader.tensors) == len(weights)
    tokens = _field(reader, "tokenizer.ggml.tokens")
    assert tokens == tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    assert _field(reader, "tokenizer.ggml.eos_token_id") == tokenizer.eos_token_id
    assert _field(reader, "tokenizer.ggml.eot_token_id") == tokenizer.convert_tokens_to_ids(
        "<|im_end|>")
    assert _field(reader, "tokenizer.ggml.padding_token_id") == tokenizer.pad_token_id
    assert _field(reader, "tokenizer.chat_template") == tokenizer.chat_template
    tensor = next(t for t in reader.tensors if t.name == "blk.0.ffn_up.weight")
    expected = weights["model.layers.0.mlp.up_proj.weight"]
    assert tuple(tensor.shape) == tuple(reversed(expected.shape))
    values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    assert np.abs(values - expected).max() < 0.01 * np.abs(expected).max()


# --- llama.cpp itself -------------------------------------------------------------------------

@pytest.mark.skipif(find_spec("llama_cpp") is None,
                    reason="llama-cpp-python is not installed (pip install "
                           "'finetuneflow[gguf-q4]'; it compiles llama.cpp)")
def test_llama_cpp_gives_the_transformers_logits_and_the_same_chat_text(
        exported: Exported) -> None:
    """llama.cpp loads each file, tokenizes the chat as HF does, and its logits match the
    transformers model's. The chat text: the template as llama.cpp reads it from the file,
    rendered as llama-cpp-python's chat handler renders it, equals HF's."""
    import torch
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(exported.merged)
    text = tokenizer.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        hf = AutoModelForCausalLM.from_pretrained(exported.merged, dtype=torch.float32)
        expected = hf(torch.tensor([ids])).logits[0].numpy()
    for quantisation, tolerance in (("f16", 2e-3), ("q8_0", None)):
        llama = Llama(str(exported.gguf(quantisation)), logits_all=True, n_ctx=256,
                      verbose=False, n_threads=1)
        try:
            assert llama.tokenize(text.encode(), add_bos=False, special=True) == ids
            llama.eval(ids)
            logits = np.array(llama.scores[:len(ids)])
            template = llama.metadata["tokenizer.chat_template"]
        finally:
            llama.close()
        difference = float(np.abs(logits - expected).max())
        agreement = float((logits.argmax(-1) == expected.argmax(-1)).mean())
        print(f"{quantisation}: max |logit difference| {difference:.3g}, "
              f"top-1 agreement {agreement:.0%} of {len(ids)} positions")
        if tolerance is not None:
            assert difference < tolerance
        assert agreement >= 0.9
        formatter = Jinja2ChatFormatter(template, eos_token="<|im_end|>", bos_token="")
        assert formatter(messages=PROMPT).prompt == text


# --- exporting again (the tests below replace exports/run-1) ---------------------------------

def test_the_cli_writes_gguf_and_reports_it_in_json_and_words(exported: Exported,
                                                              tmp_path: Path) -> None:
    data = run_cli_json(exported.home, "export", exported.project_id, "--gguf", "q8_0",
                        "--sample-tokens", "1", "--out", str(tmp_path / "a.zip"), "--json")
    assert [(g["file"], g["quantisation"]) for g in data["gguf"]] == [
        ("gguf/model-q8_0.gguf", "q8_0")]
    assert data["gguf"][0]["bytes"] == exported.result.gguf[1].bytes
    assert {"zip", "files", "merged", "ollama", "samples"} <= set(data) and data["merged"]
    words = run_cli(exported.home, "export", exported.project_id, "--gguf", "f16", "--gguf",
                    "f16", "--sample-tokens", "1", "--out", str(tmp_path / "b.zip"))
    assert words.returncode == 0, words.stderr
    assert "gguf/model-f16.gguf" in words.stdout
    assert "GGUF F16:" in words.stderr and "model-f16.gguf" in words.stderr
    assert "/gguf && ollama create gguf-demo -f Modelfile" in words.stderr


def test_the_cli_refuses_what_it_cannot_make_before_starting(exported: Exported) -> None:
    exports = sorted(p.name for p in (exported.result.folder.parent).iterdir())
    unmerged = run_cli(exported.home, "export", exported.project_id, "--gguf", "f16",
                       "--no-merged")
    assert unmerged.returncode == 1 and "leave out --no-merged" in unmerged.stderr
    unknown = run_cli(exported.home, "export", exported.project_id, "--gguf", "q2_k")
    assert unknown.returncode == 2 and "invalid choice: 'q2_k'" in unknown.stderr
    if find_spec("llama_cpp") is None:
        missing = run_cli(exported.home, "export", exported.project_id, "--gguf", Q4_K_M)
        assert missing.returncode == 1
        assert "llama-cpp-python" in missing.stderr and "F16 and Q8_0" in missing.stderr
    assert sorted(p.name for p in (exported.result.folder.parent).iterdir()) == exports


@pytest.mark.skipif(sys.platform == "win32", reason="the fake ollama is a POSIX script")
def test_register_in_ollama_imports_the_gguf_and_quantises_only_merged_models(
        exported: Exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    context = AppContext.open(Home(exported.home))
    try:
        service = OllamaService(context)
        with installed_fake_ollama(tmp_path, monkeypatch, models=["gguf-demo"]) as server:
            server.set_responder(lambda request, api: "6")
            registration = service.register(exported.project_id)
            call = json.loads(server.log.read_text())
            folder = ExportService(context).last_export(exported.project_id)
            assert folder is not None and Path(call["cwd"]) == folder.folder / "gguf"
            assert call["argv"] == ["create", "gguf-demo", "-f", "Modelfile"]
            assert "\nFROM ./model-" in call["modelfile"]
            assert registration.ollama_answer == "6" and registration.warning is None
            with pytest.raises(UserError, match="already quantised"):
                service.register(exported.project_id, quantize="q4_K_M")
            ExportService(context).export(exported.project_id, ExportOptions(
                sample_prompts=1, sample_max_tokens=1, out=tmp_path / "merged.zip"))
            service.register(exported.project_id, quantize="q4_K_M")
            call = json.loads(server.log.read_text())
            assert call["argv"][-2:] == ["--quantize", "q4_K_M"]
            assert Path(call["cwd"]).name == "merged" and "\nFROM .\n" in call["modelfile"]
            with pytest.raises(UserError, match="cannot quantise to 'q2'"):
                service.register(exported.project_id, quantize="q2")
    finally:
        context.close()


def test_stopping_while_the_gguf_is_written_keeps_nothing_half_made(exported: Exported,
                                                                     tmp_path: Path) -> None:
    context = AppContext.open(Home(exported.home))
    try:
        service = ExportService(context)
        before = service.last_export(exported.project_id)
        cancel = CancelToken()
        seen: list[str] = []

        def progress(_fraction: float, message: str) -> None:
            seen.append(message)
            if message.startswith("Writing model-f16.gguf"):
                cancel.cancel()

        with pytest.raises(Cancelled):
            service.export(exported.project_id, ExportOptions(
                gguf=("f16",), sample_prompts=0, out=tmp_path / "stopped.zip"),
                progress=progress, cancel=cancel)
        assert any(message.startswith("Writing model-f16.gguf") for message in seen)
        job = JobService(context).latest(exported.project_id, JobKind.EXPORT)
        assert job is not None and job.status == JobStatus.CANCELLED
        exports = exported.result.folder.parent
        assert not (tmp_path / "stopped.zip").exists()
        assert not [p for p in exports.rglob("*") if ".partial" in p.name]
        assert service.last_export(exported.project_id) == before
    finally:
        context.close()


def test_an_architecture_the_writer_does_not_know_is_refused_with_nothing_done(
        exported: Exported) -> None:
    config_path = exported.base / "config.json"
    original = config_path.read_text()
    config_path.write_text(original.replace("LlamaForCausalLM", "Olmo2ForCausalLM"))
    context = AppContext.open(Home(exported.home))
    try:
        service = ExportService(context)
        before = service.last_export(exported.project_id)
        with pytest.raises(UserError, match="does not support Olmo2ForCausalLM"):
            service.export(exported.project_id, ExportOptions(gguf=("f16",)))
        assert service.last_export(exported.project_id) == before
        words = run_cli(exported.home, "export", exported.project_id, "--gguf", "f16")
        assert words.returncode == 1
        assert "does not support Olmo2ForCausalLM" in words.stderr
        assert "convert_hf_to_gguf.py" in words.stderr
    finally:
        config_path.write_text(original)
        context.close()
