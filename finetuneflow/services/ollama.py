"""Register an exported model in the local Ollama: `ollama create`, then ask it a sample prompt,
so a broken chat template shows at once.

The export's GGUF folder is used when the export made one (Ollama then imports any architecture
llama.cpp runs, already quantised); otherwise the merged safetensors folder, which Ollama can
quantise while importing (`--quantize`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetuneflow.core.chat_template import load_special_tokens
from finetuneflow.core.export import bundle
from finetuneflow.core.export.modelfile import ollama_model_name
from finetuneflow.core.export.report import Sample
from finetuneflow.core.generation import LLMClient, LLMError, LLMSettings
from finetuneflow.core.progress import Cancelled, CancelToken, ProgressSink, ignore_progress
from finetuneflow.services.errors import UserError
from finetuneflow.services.export import ExportResult, ExportService, model_chat_format
from finetuneflow.services.finished_runs import Chat, FinishedRun, FinishedRuns, last_user_text

if TYPE_CHECKING:
    from finetuneflow.services.context import AppContext

OLLAMA_DEFAULT_HOST = "http://127.0.0.1:11434"
# What `ollama create --quantize` takes from an F16/F32 model (Ollama's import docs).
OLLAMA_QUANTIZE = ("q8_0", "q4_K_M", "q4_K_S")


@dataclass(frozen=True)
class OllamaRegistration:
    model_name: str
    prompt: str  # the sample prompt both models answered
    reference: str
    ollama_answer: str
    hf_answer: str  # the fine-tuned model's answer in transformers (from the export)
    warning: str | None  # set when the answer suggests a broken chat template

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def ollama_available() -> bool:
    """Whether the `ollama` command is installed (on PATH)."""
    return shutil.which("ollama") is not None


def ollama_host() -> str:
    """Where the local Ollama listens: OLLAMA_HOST as the ollama command reads it."""
    host = os.environ.get("OLLAMA_HOST", "").strip() or OLLAMA_DEFAULT_HOST
    if "://" not in host:
        host = f"http://{host}"
    return host.replace("://0.0.0.0", "://127.0.0.1").rstrip("/")


class OllamaService:
    def __init__(self, context: AppContext) -> None:
        self._runs = FinishedRuns(context)
        self._exports = ExportService(context)

    def register(self, project_ref: str, run_id: int | None = None, *,
                 name: str | None = None, quantize: str | None = None,
                 progress: ProgressSink = ignore_progress,
                 cancel: CancelToken | None = None) -> OllamaRegistration:
        """`ollama create` the exported GGUF (else merged) model, then ask it the first sample
        prompt and return its answer beside the transformers model's answer to it.

        quantize: `ollama create --quantize` (merged models only: a GGUF is already made in
        the quantisation the export chose)."""
        if not ollama_available():
            raise UserError("Ollama is not installed (there is no `ollama` command): install "
                            "it from https://ollama.com/download, then try again.")
        run = self._runs.get(project_ref, run_id)
        exported = self._exports.last_export(run.project_id, run.id)
        folder = _model_folder(exported)
        if exported is None or folder is None:
            raise UserError("Export this run with the merged model first (the merged model is "
                            "what Ollama imports).")
        if quantize is not None and (exported.gguf_models or quantize not in OLLAMA_QUANTIZE):
            raise UserError(_quantize_problem(quantize, bool(exported.gguf_models)))
        ollama = exported.ollama
        if not exported.gguf_models and ollama is not None and not ollama.importable:
            raise UserError(ollama.note)
        model_name = ollama_model_name(name) if name else (
            exported.ollama.model_name if exported.ollama else ollama_model_name(run.project_name))
        progress(0.1, f"ollama create {model_name}…")
        _ollama_create(model_name, folder, quantize, cancel)
        chat, sample = _first_sample(run, exported)
        progress(0.7, f"Asking {model_name} a sample prompt…")
        answer = _ask_ollama(model_name, chat, exported.sample_max_tokens, cancel)
        progress(1.0, f"{model_name} is ready in Ollama")
        return OllamaRegistration(model_name, sample.prompt, sample.reference, answer,
                                  sample.finetuned,
                                  _template_warning(answer, exported.folder / bundle.MERGED))


def _model_folder(exported: ExportResult | None) -> Path | None:
    """The export's folder Ollama imports: gguf/ when made, else merged/; None without one."""
    if exported is None:
        return None
    folders = [exported.folder / bundle.GGUF] if exported.gguf_models else []
    folders.append(exported.folder / bundle.MERGED)
    return next((f for f in folders if (f / bundle.MODELFILE).is_file()), None)


def _quantize_problem(quantize: str, gguf: bool) -> str:
    if gguf:
        return (f"This export's GGUF is already quantised ({quantize} is for merged models): "
                "register without quantising, or export again with the GGUF quantisation "
                "you want.")
    return f"Ollama cannot quantise to {quantize!r}: choose {', '.join(OLLAMA_QUANTIZE)}."


def _first_sample(run: FinishedRun, exported: ExportResult) -> tuple[Chat, Sample]:
    """The export's first sample, with the chat (system prompt included) it was asked in."""
    samples = json.loads((exported.folder / bundle.SAMPLES).read_text(encoding="utf-8"))
    if not samples:
        raise UserError("The export has no sample prompt to ask (the dataset had none).")
    first = Sample(**samples[0])
    chat = next((c for c, _ in run.sample_pairs if last_user_text(c) == first.prompt),
                [{"role": "user", "content": first.prompt}])
    return chat, first


def _ollama_create(model_name: str, folder: Path, quantize: str | None,
                   cancel: CancelToken | None) -> None:
    command = ["ollama", "create", model_name, "-f", bundle.MODELFILE]
    if quantize:
        command += ["--quantize", quantize]
    child = subprocess.Popen(command, cwd=folder, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, encoding="utf-8",
                             errors="replace")
    output, _ = _communicate(child, cancel)
    if child.returncode != 0:
        last = output.strip().splitlines()[-1:] or [f"exit code {child.returncode}"]
        raise UserError(f"`ollama create` failed: {last[0]}")


def _communicate(child: subprocess.Popen[str], cancel: CancelToken | None) -> tuple[str, str]:
    while True:
        try:
            return child.communicate(timeout=0.2)
        except subprocess.TimeoutExpired:
            if cancel is not None and cancel.cancelled:
                child.terminate()
                child.wait()
                raise Cancelled() from None


def _ask_ollama(model_name: str, chat: Chat, max_tokens: int,
                cancel: CancelToken | None) -> str:
    settings = LLMSettings(provider="ollama", base_url=ollama_host(), model=model_name,
                           stream=False, structured_output=False, temperature=0.0,
                           max_tokens=max_tokens)
    try:
        with LLMClient(settings) as client:
            return client.chat(chat, cancel=cancel).content
    except LLMError as error:
        raise UserError(f"Ollama created {model_name} but did not answer: {error}") from None


def _template_warning(answer: str, merged: Path) -> str | None:
    if not answer.strip():
        return ("Ollama's answer is empty: the chat template or the stop strings in the "
                "Modelfile may not match the model. Compare them with chat_template.jinja.")
    found = model_chat_format(merged)
    eos = load_special_tokens(merged).get("eos_token")
    markers = found.with_eos(eos).stops if found else (eos,) if eos else ()
    leaked = [marker for marker in markers if marker.strip() and marker in answer]
    if leaked:
        return (f"Ollama's answer contains {leaked[0]!r}, a chat-format marker: the Modelfile's "
                "TEMPLATE does not match how the model was trained.")
    return None
