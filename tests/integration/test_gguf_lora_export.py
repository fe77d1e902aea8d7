"""The adapter-only GGUF path end to end: a short real training run on the tiny model, exported
with --gguf-adapter by the real service (trainer child + GGUF worker), llama.cpp applying the
LoRA GGUF on the base's F16 GGUF, the CLI in a child process, Ollama registration still using
the merged model, and a refused architecture. The tests share one export and go in order: those
that export again come last."""

from __future__ import annotations

import json
import re
import sys
import zipfile
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

import gguf
import numpy as np
import pytest

from finetuneflow.core.export.gguf import F16, write_gguf
from finetuneflow.services.context import AppContext
from finetuneflow.services.errors import UserError
from finetuneflow.services.export import ExportOptions, ExportService
from finetuneflow.services.ollama import OllamaService
from finetuneflow.storage.home import Home
from tests.helpers.cli import run_cli, run_cli_json
from tests.helpers.fake_ollama import fake_ollama as installed_fake_ollama
from tests.helpers.finished_run import ExportedRun, trained_and_exported

pytestmark = pytest.mark.slow
PROMPT = [{"role": "system", "content": "You answer arithmetic questions with one number."},
          {"role": "user", "content": "What is 7 plus 7?"}]


class Exported(ExportedRun):

    @property
    def gguf(self) -> Path:
        return self.result.folder / "gguf"


@pytest.fixture(scope="module")
def exported(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Exported]:
    root = tmp_path_factory.mktemp("gguf-lora-export")
    options = ExportOptions(gguf_adapter=True, sample_prompts=1, sample_max_tokens=4)
    with trained_and_exported(root, tiny_model_dir, "Adapter demo", options) as made:
        yield Exported(**vars(made))


def _from_line(modelfile: str) -> str:
    match = re.search(r"^FROM \./(\S+)$", modelfile, re.MULTILINE)
    assert match, modelfile
    return match.group(1)


def test_the_export_holds_the_lora_gguf_and_a_modelfile_from_the_base(
        exported: Exported) -> None:
    result = exported.result
    [entry] = result.gguf
    assert (entry.file, entry.quantisation, entry.kind) == ("gguf/adapter-f16.gguf", "f16",
                                                            "adapter")
    assert (result.folder / entry.file).stat().st_size == entry.bytes
    assert result.gguf_models == []
    modelfile = (exported.gguf / "Modelfile.adapter").read_text()
    assert _from_line(modelfile) == "base-f16.gguf"  # the base was the local folder "base"
    assert "\nADAPTER ./adapter-f16.gguf\n" in modelfile
    assert "ollama create MODEL-NAME -f Modelfile.adapter" in modelfile
    merged_modelfile = (result.folder / "merged" / "Modelfile").read_text()
    template = re.search(r"^TEMPLATE .*?\"\"\"$", merged_modelfile, re.MULTILINE | re.DOTALL)
    assert template and template.group(0) in modelfile  # the same fitted TEMPLATE
    assert 'PARAMETER stop "<|im_end|>"' in modelfile
    assert not (exported.gguf / "Modelfile").exists()  # no GGUF model file to point at
    with zipfile.ZipFile(result.zip_path) as archive:
        names = {name.split("/", 1)[1] for name in archive.namelist()}
    assert {"gguf/adapter-f16.gguf", "gguf/Modelfile.adapter", "merged/Modelfile"} <= names
    assert result.to_json()["gguf"] == [{"file": "gguf/adapter-f16.gguf", "quantisation": "f16",
                                         "bytes": entry.bytes, "kind": "adapter"}]
    reader = gguf.GGUFReader(result.folder / entry.file)
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.lora.alpha"].contents() == 16  # the run's lora_alpha


def test_the_report_and_config_say_what_base_it_needs(exported: Exported) -> None:
    report = (exported.result.folder / "report.md").read_text()
    assert "| `gguf/adapter-f16.gguf` | F16 LoRA adapter |" in report
    assert "--lora gguf/adapter-f16.gguf" in report and "Modelfile.adapter" in report
    assert "llama-server -m" not in report  # no GGUF model file was made
    assert "cd merged" in report  # Ollama's plain import still uses the merged model
    config = json.loads((exported.result.folder / "config.json").read_text())
    assert config["export"]["gguf"][0]["kind"] == "adapter"
    again = ExportService(AppContext.open(Home(exported.home))).last_export(exported.project_id)
    assert again is not None and again.gguf == exported.result.gguf


@pytest.mark.skipif(find_spec("llama_cpp") is None,
                    reason="llama-cpp-python is not installed (pip install "
                           "'finetuneflow[gguf-q4]'; it compiles llama.cpp)")
def test_llama_cpp_applies_the_adapter_on_the_base_like_the_merged_model(
        exported: Exported) -> None:
    """The base as the F16 GGUF Modelfile.adapter names, plus the LoRA GGUF, gives the logits
    of the exported merged model in transformers."""
    import torch
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged = exported.result.folder / "merged"
    name = _from_line((exported.gguf / "Modelfile.adapter").read_text())
    base = write_gguf(exported.base, exported.base.parent / name, F16, name="base").path
    tokenizer = AutoTokenizer.from_pretrained(merged)
    text = tokenizer.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        expected = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32)(
            torch.tensor([ids])).logits[0].numpy()
    scores = {}
    for lora in (None, exported.gguf / "adapter-f16.gguf"):
        llama = Llama(str(base), lora_path=str(lora) if lora else None, logits_all=True,
                      n_ctx=256, verbose=False, n_threads=1)
        try:
            llama.eval(ids)
            scores[lora is not None] = np.array(llama.scores[:len(ids)])
        finally:
            llama.close()
    difference = float(np.abs(scores[True] - expected).max())
    without = float(np.abs(scores[False] - expected).max())
    print(f"llama.cpp base F16 + LoRA F16 vs transformers merged: max |logit difference| "
          f"{difference:.3g} ({without:.3g} without the adapter), {len(ids)} positions")
    assert difference < 2e-3
    assert without > 5 * difference  # the trained adapter changed the answer and was applied


# --- exporting again (the tests below replace exports/run-1) ---------------------------------

def test_the_cli_writes_the_adapter_gguf_and_reports_it(exported: Exported,
                                                        tmp_path: Path) -> None:
    data = run_cli_json(exported.home, "export", exported.project_id, "--gguf-adapter",
                        "--no-merged", "--sample-tokens", "1", "--out",
                        str(tmp_path / "a.zip"), "--json")
    assert data["gguf"] == [{"file": "gguf/adapter-f16.gguf", "quantisation": "f16",
                             "bytes": exported.result.gguf[0].bytes, "kind": "adapter"}]
    assert data["merged"] is False and data["ollama"] is None
    words = run_cli(exported.home, "export", exported.project_id, "--gguf-adapter", "--gguf",
                    "q8_0", "--sample-tokens", "1", "--out", str(tmp_path / "b.zip"))
    assert words.returncode == 0, words.stderr
    assert "gguf/adapter-f16.gguf" in words.stdout and "gguf/Modelfile.adapter" in words.stdout
    assert "GGUF LoRA adapter F16:" in words.stderr and "GGUF Q8_0:" in words.stderr
    assert "ollama create adapter-demo -f Modelfile.adapter" in words.stderr
    assert "/gguf && ollama create adapter-demo -f Modelfile\n" in words.stderr
    folder = exported.result.folder / "gguf"  # replaced by this export
    assert "\nFROM ./model-q8_0.gguf\n" in (folder / "Modelfile").read_text()
    assert _from_line((folder / "Modelfile.adapter").read_text()) == "base-f16.gguf"


@pytest.mark.skipif(sys.platform == "win32", reason="the fake ollama is a POSIX script")
def test_register_in_ollama_uses_the_merged_model_beside_an_adapter_gguf(
        exported: Exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    context = AppContext.open(Home(exported.home))
    try:
        ExportService(context).export(exported.project_id, ExportOptions(
            gguf_adapter=True, sample_prompts=1, sample_max_tokens=1, out=tmp_path / "m.zip"))
        with installed_fake_ollama(tmp_path, monkeypatch, models=["adapter-demo"]) as server:
            server.set_responder(lambda request, api: "6")
            OllamaService(context).register(exported.project_id, quantize="q4_K_M")
            call = json.loads(server.log.read_text())
        assert Path(call["cwd"]).name == "merged" and "\nFROM .\n" in call["modelfile"]
        assert call["argv"][-2:] == ["--quantize", "q4_K_M"]
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
        assert "Olmo2ForCausalLM" in (service.gguf_problems(exported.project_id)["adapter"]
                                       or "")
        with pytest.raises(UserError, match="does not support Olmo2ForCausalLM"):
            service.export(exported.project_id, ExportOptions(gguf_adapter=True))
        assert service.last_export(exported.project_id) == before
        words = run_cli(exported.home, "export", exported.project_id, "--gguf-adapter")
        assert words.returncode == 1
        assert "does not support Olmo2ForCausalLM" in words.stderr
        assert service.last_export(exported.project_id) == before
    finally:
        config_path.write_text(original)
        context.close()
