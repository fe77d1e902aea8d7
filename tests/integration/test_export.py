"""The export and "try your model", end to end: a short real training run on the tiny model,
the real trainer child for the export and the chat, the real zip.

One module-scoped fixture trains and exports once (with secrets planted in the environment
and the keychain); most tests read what it produced. The tests that export again (CLI, cancel)
come last and write their zips elsewhere.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from finetuneflow.cli.export import print_result
from finetuneflow.core.child_protocol import BASE, FINETUNED
from finetuneflow.core.export.archive import MANIFEST, verify_archive
from finetuneflow.core.export.tokenizer_config import LOADING_KEYS
from finetuneflow.core.progress import CancelToken
from finetuneflow.services.base_model import ModelService
from finetuneflow.services.chat import ChatService
from finetuneflow.services.context import AppContext
from finetuneflow.services.datasets import DatasetService
from finetuneflow.services.errors import UserError
from finetuneflow.services.export import ExportOptions, ExportResult, ExportService
from finetuneflow.services.jobs import JobService
from finetuneflow.services.ollama import OllamaService
from finetuneflow.services.projects import ProjectService
from finetuneflow.services.secrets import Secret, set_secret
from finetuneflow.storage.home import Home
from finetuneflow.storage.tables import JobKind, JobStatus
from tests.helpers.cli import REPO_ROOT, cli_env, run_cli
from tests.helpers.fake_ollama import fake_ollama as installed_fake_ollama
from tests.helpers.finished_run import SYSTEM, arithmetic_chats, train
from tests.helpers.gotemplate import go_renderer
from tests.helpers.memory_keyring import MemoryKeyring
from tests.helpers.modelfile import parse_modelfile

pytestmark = pytest.mark.slow

PLANTED = {"OLLAMA_API_KEY": "planted-env-ollama-key-5b1e",
           "HF_TOKEN": "hf_plantedEnvTokenAbCdEf123456"}
KEYCHAIN = {Secret.LLM_API_KEY: "planted-keychain-llm-key-77c2",
            Secret.HF_TOKEN: "hf_plantedKeychainTokenXyZ987654"}


@dataclass
class Exported:
    home: Path
    project_id: str
    result: ExportResult
    unpacked: Path  # the zip, extracted: the tests read the export from here
    run_adapter: Path  # the adapter as the trainer saved it
    preview: str
    last: ExportResult | None
    job_status: JobStatus

    @property
    def root(self) -> Path:
        return self.unpacked / self.result.zip_path.stem


@pytest.fixture(scope="module")
def exported(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Exported]:
    root = tmp_path_factory.mktemp("export")
    home = root / "home"
    import keyring

    previous_keyring = keyring.get_keyring()
    keyring.set_keyring(MemoryKeyring())
    patch = pytest.MonkeyPatch()
    for name, value in PLANTED.items():
        patch.setenv(name, value)
    # The tiny model gains nothing from threads; on a busy machine they only slow it down.
    patch.setenv("OMP_NUM_THREADS", "1")
    context = AppContext.open(Home(home))
    try:
        for secret, value in KEYCHAIN.items():
            set_secret(secret, value)
        project_id = ProjectService(context).create("Export demo").id
        ModelService(context).choose(project_id, str(tiny_model_dir))
        DatasetService(context).import_file(project_id, arithmetic_chats(root / "chats.jsonl"))
        run_adapter = train(context, project_id)
        service = ExportService(context)
        preview = service.report_preview(project_id)  # before any export: no answers yet
        assert "## Dataset" in preview and "## Before and after" not in preview
        result = service.export(project_id, ExportOptions(include_dataset=True,
                                                          sample_max_tokens=16))
        unpacked = root / "unpacked"
        with zipfile.ZipFile(result.zip_path) as archive:
            archive.extractall(unpacked)
        job = JobService(context).latest(project_id, JobKind.EXPORT)
        assert job is not None
        yield Exported(home, project_id, result, unpacked, run_adapter,
                       service.report_preview(project_id), service.last_export(project_id),
                       job.status)
    finally:
        patch.undo()
        keyring.set_keyring(previous_keyring)
        context.close()


@pytest.fixture
def context_of(exported: Exported) -> Iterator[AppContext]:
    context = AppContext.open(Home(exported.home))
    yield context
    context.close()


# --- the zip ----------------------------------------------------------------------------------

def test_the_zip_holds_everything_and_its_manifest_verifies(exported: Exported) -> None:
    result = exported.result
    assert result.zip_path.name == "finetuneflow-export-demo-run-1.zip"
    assert result.zip_path.parent.name == "exports" and verify_archive(result.zip_path) == []
    names = {path for path, _ in result.files}
    assert {"adapter/adapter_model.safetensors", "adapter/adapter_config.json",
            "adapter/tokenizer.json", "adapter/tokenizer_config.json",
            "adapter/chat_template.jinja", "merged/model.safetensors", "merged/config.json",
            "merged/generation_config.json", "merged/tokenizer.json",
            "merged/tokenizer_config.json", "merged/chat_template.jinja",
            "merged/Modelfile", "dataset/train.jsonl", "dataset/eval.jsonl", "config.json",
            "metrics.json", "samples.json", "report.md", "loss_curve.svg", MANIFEST} == names
    with zipfile.ZipFile(result.zip_path) as archive:
        assert {name.split("/", 1)[1] for name in archive.namelist()} == names
    assert exported.job_status == JobStatus.SUCCEEDED
    assert exported.last is not None and exported.last.zip_path == result.zip_path
    assert not list(result.zip_path.parent.glob("*.partial"))


# --- the adapter and the merged model ---------------------------------------------------------

def _logits(model: Any, tokenizer: Any) -> Any:
    import torch

    chat = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What is 7 plus 7?"}]
    inputs = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)
    with torch.no_grad():
        return model(**inputs).logits


def test_the_adapter_reloads_with_peft_and_gives_the_trainers_logits(
        exported: Exported, tiny_model_dir: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = exported.root / "adapter"
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    shipped = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                        adapter)
    trained = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                        exported.run_adapter)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    logits = _logits(shipped, tokenizer)
    assert torch.equal(logits, _logits(trained, tokenizer))
    assert not torch.allclose(logits, _logits(base, tokenizer))  # the fine-tuning is in it


def test_the_merged_model_matches_the_adapter(exported: Exported, tiny_model_dir: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged_dir = exported.root / "merged"
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                        exported.root / "adapter")
    assert torch.allclose(_logits(merged, tokenizer), _logits(adapter, tokenizer), atol=1e-4)
    assert exported.result.merge_max_abs_diff is not None
    assert exported.result.merge_max_abs_diff < 1e-4


# --- the Modelfile ----------------------------------------------------------------------------

def test_the_modelfile_renders_chats_as_the_hf_chat_template_does(exported: Exported) -> None:
    """The Go template executed by Go's text/template (tests/helpers/gotemplate.py), not
    compared as text: what Ollama would feed the model is compared with what transformers
    feeds it, so a wrong newline or trim marker fails here."""
    from transformers import AutoTokenizer

    merged_dir = exported.root / "merged"
    commands = parse_modelfile((merged_dir / "Modelfile").read_text(encoding="utf-8"))
    assert commands[0] == ("from", ".")
    values = dict(commands)
    assert values["system"] == SYSTEM  # the system prompt the model was trained with
    assert [v for name, v in commands if name == "stop"] == ["<|im_start|>", "<|im_end|>"]
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    chat = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What is 1 plus 1?"},
            {"role": "assistant", "content": "2"}, {"role": "user", "content": "And 2 plus 2?"}]
    expected = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert exported.result.ollama is not None
    assert exported.result.ollama.importable and exported.result.ollama.chat_format == "ChatML"
    render, reason = go_renderer()
    if render is None:
        pytest.skip(reason)
    assert render(values["template"], chat) == expected


# --- report, metrics, config ------------------------------------------------------------------

def test_the_report_holds_the_real_metrics(exported: Exported) -> None:
    import xml.etree.ElementTree as ElementTree

    root = exported.root
    metrics = json.loads((root / "metrics.json").read_text())
    report = (root / "report.md").read_text()
    assert metrics["steps"] == 6 and metrics["run_id"] == 1
    # What the run did, from the trainer (not the settings, nor the dataset files as now).
    assert metrics["epochs"] > 0 and metrics["train_examples"] > 0
    assert f"| Epochs | {metrics['epochs']:.1f}" in report
    assert f"| Examples | {metrics['train_examples']} for training" in report
    assert [e["step"] for e in metrics["loss_history"]] == [1, 2, 3, 4, 5, 6]
    for number in (f"{metrics['final_eval_loss']:.4f}", f"{metrics['perplexity']:.2f}",
                   f"{metrics['train_loss']:.4f}", f"{metrics['tokens_seen']:,}"):
        assert number in report, number
    for entry in metrics["eval_history"]:
        assert f"| {entry['step']} | {entry['eval_loss']:.4f} |" in report
    svg = ElementTree.fromstring((root / "loss_curve.svg").read_text())
    assert len(svg.findall("{http://www.w3.org/2000/svg}polyline")) == 2
    assert report.count("### Prompt ") == 5 and report.count("### Example ") == 5
    samples = json.loads((root / "samples.json").read_text())
    assert len(samples) == 5 and all(s["reference"] and s["prompt"] for s in samples)
    assert exported.preview == report  # the Export page shows the exported report


def test_config_json_holds_what_reproduces_the_run(exported: Exported,
                                                   tiny_model_dir: Path) -> None:
    config = json.loads((exported.root / "config.json").read_text())
    assert config["base_model"]["id"] == str(tiny_model_dir)
    assert config["base_model"]["architecture"] == "LlamaForCausalLM"
    assert config["training"]["max_steps"] == 6 and config["seed"] == 42
    assert config["task"]["system_prompt_used"] == SYSTEM
    assert config["generation"]["provider"] == "ollama-cloud"
    assert config["dataset"]["train_examples"] + config["dataset"]["eval_examples"] == 100
    assert config["dataset"]["token_lengths"]["count"] == 100
    assert {"torch", "transformers", "peft", "trl", "python"} <= set(config["packages"])


def test_files_other_tools_read_name_a_known_class_and_the_local_base(
        exported: Exported, tiny_model_dir: Path) -> None:
    """transformers 4.x reads the tokenizer configs (tests/unit/test_export_tokenizer_config.py
    loads one there); the adapter names the local base, and the report says it is local."""
    for folder in ("adapter", "merged"):
        config = json.loads((exported.root / folder / "tokenizer_config.json").read_text())
        assert config["tokenizer_class"] == "PreTrainedTokenizerFast", folder
        assert not set(LOADING_KEYS) & set(config), folder
    adapter = json.loads((exported.root / "adapter" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(tiny_model_dir)
    assert "(a local folder, not a Hub id)" in (exported.root / "report.md").read_text()


def test_what_the_export_page_shows_before_exporting(exported: Exported,
                                                    context_of: AppContext,
                                                    tmp_path: Path) -> None:
    service = ExportService(context_of)
    options = service.default_options(exported.project_id)
    assert options.out == exported.result.zip_path and options.merged is True
    assert ChatService(context_of).trained_system_prompt(exported.project_id) == SYSTEM
    assert service.loss_curve(exported.project_id) == (
        exported.root / "loss_curve.svg").read_text()
    copy = service.save_zip_as(exported.project_id, tmp_path / "copy.zip")
    assert copy.read_bytes() == exported.result.zip_path.read_bytes()
    with pytest.raises(UserError, match=r"as a \.zip file"):
        service.save_zip_as(exported.project_id, tmp_path / "copy.tar")


def test_no_secret_appears_in_any_exported_byte(exported: Exported) -> None:
    secrets = [value.encode() for value in (*PLANTED.values(), *KEYCHAIN.values())]
    files = [exported.result.zip_path, *sorted(p for p in exported.unpacked.rglob("*")
                                               if p.is_file()),
             *sorted(p for p in exported.result.folder.rglob("*") if p.is_file())]
    assert len(files) > 30
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            assert secret not in data, f"{secret!r} in {path}"


# --- try it -----------------------------------------------------------------------------------

def test_compare_streams_the_base_and_the_fine_tuned_answer(exported: Exported,
                                                            context_of: AppContext) -> None:
    pieces: dict[str, list[str]] = {BASE: [], FINETUNED: []}
    answers = ChatService(context_of).compare(
        exported.project_id, "What is 3 plus 3?", temperature=0.0, max_tokens=8,
        on_token=lambda variant, text: pieces[variant].append(text))
    assert set(answers) == {BASE, FINETUNED}
    for variant in (BASE, FINETUNED):
        assert pieces[variant], variant
        assert "".join(pieces[variant]).strip() == answers[variant]


def test_a_cancelled_chat_stops_within_a_token_or_two(exported: Exported,
                                                     context_of: AppContext) -> None:
    cancel, pieces = CancelToken(), []

    def on_token(text: str) -> None:
        pieces.append(text)
        cancel.cancel()

    answer = ChatService(context_of).chat(exported.project_id, "What is 8 plus 8?",
                                          temperature=0.0, max_tokens=200,
                                          on_token=on_token, cancel=cancel)
    assert 1 <= len(pieces) < 20 and answer == "".join(pieces).strip()


def test_chat_needs_a_prompt_and_a_finished_run(exported: Exported,
                                                context_of: AppContext) -> None:
    chat = ChatService(context_of)
    with pytest.raises(UserError, match="Type a prompt"):
        chat.chat(exported.project_id, "  ")
    with pytest.raises(UserError, match="Run 9 is not a finished run"):
        chat.chat(exported.project_id, "Hi", run_id=9)
    empty = ProjectService(context_of).create("Nothing trained").id
    with pytest.raises(UserError, match="no finished training run"):
        ExportService(context_of).export(empty)


# --- Ollama -----------------------------------------------------------------------------------

@pytest.fixture
def fake_ollama(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with installed_fake_ollama(tmp_path, monkeypatch, models=["export-demo"]) as server:
        yield server


@pytest.mark.skipif(sys.platform == "win32", reason="the fake ollama is a POSIX script")
def test_register_in_ollama_creates_the_model_and_asks_a_sample_prompt(
        exported: Exported, context_of: AppContext, fake_ollama: Any) -> None:
    fake_ollama.set_responder(lambda request, api: "4")
    registration = OllamaService(context_of).register(exported.project_id)
    call = json.loads(fake_ollama.log.read_text())
    assert call["argv"] == ["create", "export-demo", "-f", "Modelfile"]
    assert Path(call["cwd"]) == exported.result.folder / "merged"
    assert "TEMPLATE" in call["modelfile"]
    request = fake_ollama.last_request
    assert request.path == "/api/chat" and request.payload["model"] == "export-demo"
    messages = request.payload["messages"]
    assert messages[0] == {"role": "system", "content": SYSTEM}
    assert messages[-1]["content"] == registration.prompt
    first = exported.result.samples[0]
    assert (registration.prompt, registration.hf_answer) == (first.prompt, first.finetuned)
    assert registration.ollama_answer == "4" and registration.warning is None

    fake_ollama.set_responder(lambda request, api: "4<|im_end|>\n<|im_start|>user")
    leaked = OllamaService(context_of).register(exported.project_id)
    assert leaked.warning is not None and "'<|im_start|>'" in leaked.warning


def test_without_ollama_registering_says_how_to_get_it(
        exported: Exported, context_of: AppContext, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match=r"https://ollama\.com/download"):
        OllamaService(context_of).register(exported.project_id)


# --- exporting again: cancel and the CLI (last: they change the latest export) ----------------

def test_ctrl_c_stops_a_cli_export_and_keeps_nothing(exported: Exported,
                                                     context_of: AppContext,
                                                     tmp_path: Path) -> None:
    out = tmp_path / "stopped.zip"
    child = subprocess.Popen(
        [sys.executable, "-m", "finetuneflow", "export", exported.project_id, "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
        env=cli_env(exported.home))
    assert child.stderr is not None
    for line in child.stderr:
        if "prompt 2 of" in line:
            child.send_signal(signal.SIGINT)
            break
    _, err = child.communicate(timeout=300)
    assert child.returncode == 130, err
    assert "export stopped; no zip was written" in err and "Traceback" not in err
    exports = exported.result.folder.parent
    assert not out.exists() and not list(tmp_path.glob("*.partial"))
    assert not (exports / "run-1.partial").exists()
    assert verify_archive(exported.result.zip_path) == []  # the earlier export is intact
    job = JobService(context_of).latest(exported.project_id, JobKind.EXPORT)
    assert job is not None and job.status == JobStatus.CANCELLED


def test_cli_export_prints_the_zip_and_its_contents(exported: Exported, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.zip"
    result = run_cli(exported.home, "export", exported.project_id, "--no-merged", "--out",
                     str(out), "--sample-tokens", "8", "--json", timeout=300)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["zip"] == str(out) and data["merged"] is False and data["ollama"] is None
    assert data["sample_max_tokens"] == 8
    assert not any(f["path"].startswith(("merged/", "dataset/")) for f in data["files"])
    assert "Zipping" in result.stderr and verify_archive(out) == []
    bad = run_cli(exported.home, "export", exported.project_id, "--out", "x.tar")
    assert bad.returncode == 1 and "--out must name a .zip file" in bad.stderr

    print_result(exported.result)  # what the command prints without --json
    printed = capsys.readouterr()
    lines = printed.out.splitlines()
    assert lines[0] == str(exported.result.zip_path)
    assert any(line.startswith("  merged/model.safetensors  (") for line in lines)
    assert f"  {MANIFEST}" in printed.out and "ollama create export-demo" in printed.err


def test_cli_chat_streams_the_answer(exported: Exported) -> None:
    result = run_cli(exported.home, "chat", exported.project_id, "What is 5 plus 5?", "--base",
                     "--max-tokens", "6", "--temperature", "0", timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n") and result.stdout.strip()


def test_a_base_from_the_hub_cache_is_named_by_its_hub_id(exported: Exported,
                                                          context_of: AppContext,
                                                          tiny_model_dir: Path,
                                                          tmp_path: Path) -> None:
    """The run's base read from a Hugging Face cache folder: the adapter names the Hub id and
    revision (so PEFT finds the base on another computer) and the report calls it no folder."""
    import shutil

    snapshot = tmp_path / "hub" / "models--finetuneflow--tiny-llama" / "snapshots" / "abc123"
    shutil.copytree(tiny_model_dir, snapshot)
    job_path = Home(exported.home).project_file(exported.project_id, "artifacts", "run-1",
                                                "job.json")
    original = job_path.read_text(encoding="utf-8")
    job = json.loads(original)
    job_path.write_text(json.dumps({**job, "model_path": str(snapshot)}), encoding="utf-8")
    try:
        result = ExportService(context_of).export(exported.project_id, ExportOptions(
            merged=False, out=tmp_path / "hub.zip", sample_prompts=1, sample_max_tokens=4))
    finally:
        job_path.write_text(original, encoding="utf-8")
    adapter = json.loads((result.folder / "adapter" / "adapter_config.json").read_text())
    assert (adapter["base_model_name_or_path"], adapter["revision"]) == (
        "finetuneflow/tiny-llama", "abc123")
    report = (result.folder / "report.md").read_text()
    assert "| Base model | `finetuneflow/tiny-llama` (revision `abc123`) |" in report
    assert "local folder" not in report
