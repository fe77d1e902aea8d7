"""Export a finished run: adapter, merged model for Ollama, config, metrics, report, one zip.

The trainer child does what needs torch (`trainer export`: before/after answers, the merge);
this service writes the rest. Everything is built in `exports/run-N.partial/`, renamed to
`exports/run-N/` when complete, then zipped to `exports/finetuneflow-PROJECT-run-N.zip` under a
temporary name (see core/export/archive.py), and the zip is checked against its manifest.

No secret is read here: config.json is assembled from settings that never hold one (the LLM
settings have no key field) and the adapter's files are copied from a fixed list.

`chat` and `compare` answer a prompt with the base and the fine-tuned model (`trainer chat`,
tokens streamed back as they come); `register_in_ollama` runs `ollama create` on the merged
model and asks it a sample prompt, so a broken chat template shows at once.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from finetuneflow import __version__
from finetuneflow.core.atomic import atomic_copy, atomic_write_text
from finetuneflow.core.chat_template import (
    chat_token_counter,
    load_chat_template,
    load_special_tokens,
)
from finetuneflow.core.child_protocol import (
    BASE,
    FINETUNED,
    AnswerEvent,
    ChatJob,
    ErrorEvent,
    Event,
    ExportedEvent,
    ExportJob,
    ProtocolError,
    StatusEvent,
    StoppedEvent,
    TokenEvent,
    TrainJob,
    decode,
)
from finetuneflow.core.dataset.split import DEFAULT_EVAL_FRACTION, DEFAULT_SEED
from finetuneflow.core.export import bundle
from finetuneflow.core.export.archive import (
    MANIFEST,
    folder_files,
    manifest_text,
    verify_archive,
    write_archive,
)
from finetuneflow.core.export.modelfile import (
    ChatFormat,
    OllamaSupport,
    create_command,
    detect_chat_format,
    ollama_model_name,
    ollama_support,
    render_modelfile,
)
from finetuneflow.core.export.report import (
    LOSS_CURVE,
    OllamaInfo,
    ReportInput,
    Sample,
    export_metrics,
    loss_curve_svg,
    render_report,
    token_length_stats,
)
from finetuneflow.core.generation import LLMClient, LLMError, LLMSettings
from finetuneflow.core.generation.tasks import Task
from finetuneflow.core.progress import (
    Cancelled,
    CancelToken,
    ProgressSink,
    both,
    ignore_progress,
    scaled,
)
from finetuneflow.services.errors import UserError
from finetuneflow.services.generation import GenerationService
from finetuneflow.services.jobs import JobService, ThrottledProgress
from finetuneflow.services.projects import ProjectService
from finetuneflow.services.review import ReviewService
from finetuneflow.services.trainer_process import run_trainer
from finetuneflow.storage.tables import Job, JobKind, JobStatus, Run

if TYPE_CHECKING:
    from finetuneflow.services.context import AppContext

log = logging.getLogger(__name__)

SAMPLE_PROMPTS = 5
SAMPLE_TOKENS = 128  # the longest before/after answer, by default
EXAMPLE_PAIRS = 5
PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "tokenizers",
            "safetensors", "bitsandbytes")
OLLAMA_DEFAULT_HOST = "http://127.0.0.1:11434"
# The child's status phases, mapped onto the export's progress (the zip takes the last 20%).
PHASES = {"loading_model": 0.02, "merging": 0.55, "saving": 0.65}
SAMPLES_START, SAMPLES_END, CHILD_END, ZIP_START = 0.05, 0.5, 0.75, 0.8

TokenCallback = Callable[[str, str], None]  # (variant, text)


@dataclass(frozen=True)
class ExportOptions:
    run_id: int | None = None  # None: the latest finished run
    merged: bool | None = None  # None: yes when Ollama can import the architecture
    include_dataset: bool = False
    out: Path | None = None  # the zip; None: exports/finetuneflow-PROJECT-run-N.zip
    sample_prompts: int = SAMPLE_PROMPTS
    sample_max_tokens: int = SAMPLE_TOKENS
    ollama_name: str | None = None  # None: from the project's name


@dataclass(frozen=True)
class ExportResult:
    job_id: int
    run_id: int
    folder: Path
    zip_path: Path
    zip_bytes: int
    files: list[tuple[str, int]]  # (path inside the zip's top folder, bytes)
    merged: bool
    ollama: OllamaInfo | None  # None without a merged model
    samples: list[Sample]
    merge_max_abs_diff: float | None
    sample_max_tokens: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id, "run_id": self.run_id, "folder": str(self.folder),
            "zip": str(self.zip_path), "zip_bytes": self.zip_bytes,
            "files": [{"path": path, "bytes": size} for path, size in self.files],
            "merged": self.merged, "ollama": asdict(self.ollama) if self.ollama else None,
            "samples": [asdict(sample) for sample in self.samples],
            "merge_max_abs_diff": self.merge_max_abs_diff,
            "sample_max_tokens": self.sample_max_tokens, "seconds": round(self.seconds, 2)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExportResult:
        ollama = data.get("ollama")
        return cls(
            data["job_id"], data["run_id"], Path(data["folder"]), Path(data["zip"]),
            data["zip_bytes"], [(f["path"], f["bytes"]) for f in data["files"]], data["merged"],
            OllamaInfo(**ollama) if ollama else None,
            [Sample(**sample) for sample in data["samples"]], data["merge_max_abs_diff"],
            data["sample_max_tokens"], data["seconds"])


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


@dataclass
class _RunInfo:
    """A finished run, as the export needs it."""

    id: int
    project_id: str
    project_name: str
    config: dict[str, Any]
    record_metrics: dict[str, Any]  # the Run row's (the finished event's fields)
    job: TrainJob  # paths: base model, datasets, adapter
    folder: Path  # artifacts/run-N

    @property
    def model_dir(self) -> Path:
        return Path(self.job.model_path)

    @property
    def adapter_dir(self) -> Path:
        return Path(self.job.adapter_dir)

    @property
    def train_chats(self) -> list[list[dict[str, str]]]:
        return _read_chats(self.job.train_path)

    @property
    def eval_chats(self) -> list[list[dict[str, str]]]:
        return _read_chats(self.job.eval_path)


@dataclass
class _Contents:
    """What the report and config.json are made from."""

    run: _RunInfo
    options: ExportOptions
    merged: bool
    support: OllamaSupport
    system_prompt: str
    dataset: dict[str, Any]
    examples: list[list[dict[str, str]]]
    prompts: list[tuple[list[dict[str, str]], str]]  # (chat, reference)
    held_out: bool
    samples: list[Sample] = field(default_factory=list)
    chat_format: str | None = None


def _base_model(run: _RunInfo) -> dict[str, Any]:
    """The base model as config.json records it: Hub id and revision when known."""
    config = json.loads((run.model_dir / "config.json").read_text(encoding="utf-8"))
    reference = bundle.hub_reference(run.model_dir)
    return {"id": reference[0] if reference else str(run.model_dir),
            "revision": reference[1] if reference else None,
            "source": "hub" if reference else "local",
            "architecture": (config.get("architectures") or ["unknown"])[0],
            "model_type": config.get("model_type")}


def _support(run: _RunInfo) -> OllamaSupport:
    return ollama_support(_base_model(run)["architecture"])


def ollama_available() -> bool:
    """Whether the `ollama` command is installed (on PATH)."""
    return shutil.which("ollama") is not None


class ExportService:
    def __init__(self, context: AppContext) -> None:
        self._context = context
        self._projects = ProjectService(context)
        self._jobs = JobService(context)

    # --- what can be exported, and how --------------------------------------------------------

    def exportable_runs(self, project_ref: str) -> list[int]:
        """The project's finished runs (with an adapter), newest first."""
        project_id = self._projects.get(project_ref).id
        with self._context.session() as session:
            runs = session.scalars(select(Run).where(
                Run.project_id == project_id, Run.status == JobStatus.SUCCEEDED)
                .order_by(Run.id.desc())).all()
            return [run.id for run in runs if run.artifacts.get("adapter")]

    ollama_available = staticmethod(ollama_available)  # for callers holding the service

    def ollama_support(self, project_ref: str, run_id: int | None = None) -> OllamaSupport:
        """Whether Ollama can import the merged model of this run's base architecture."""
        return ollama_support(_base_model(self._run(project_ref, run_id))["architecture"])

    def default_options(self, project_ref: str, run_id: int | None = None) -> ExportOptions:
        """The latest (or given) run, merged when Ollama can import the architecture, the zip
        in the project's exports/ folder."""
        run = self._run(project_ref, run_id)
        return ExportOptions(run_id=run.id, merged=_support(run).importable,
                             out=self._default_zip(run))

    def trained_system_prompt(self, project_ref: str, run_id: int | None = None) -> str:
        """The system prompt the run's model learnt with (what `chat` uses by default)."""
        run = self._run(project_ref, run_id)
        return self._trained_system_prompt(run.project_id, run.train_chats)

    def last_export(self, project_ref: str, run_id: int | None = None) -> ExportResult | None:
        """The newest successful export (of that run), as it was reported."""
        project_id = self._projects.get(project_ref).id
        with self._context.session() as session:
            jobs = session.scalars(select(Job).where(
                Job.project_id == project_id, Job.kind == JobKind.EXPORT,
                Job.status == JobStatus.SUCCEEDED).order_by(Job.id.desc())).all()
            results = [dict(job.result) for job in jobs]
        for result in results:
            if run_id is None or result.get("run_id") == run_id:
                exported = ExportResult.from_json(result)
                return exported if exported.folder.is_dir() else None
        return None

    def report_preview(self, project_ref: str, run_id: int | None = None) -> str:
        """report.md of the run's last export; without one, the report so far (no answers)."""
        run = self._run(project_ref, run_id)
        exported = self._context.home.project_file(run.project_id, "exports", f"run-{run.id}",
                                                   bundle.REPORT)
        if exported.is_file():
            return exported.read_text(encoding="utf-8")
        options = self.default_options(project_ref, run.id)
        contents = self._contents(run, options, bool(options.merged))
        return render_report(self._report_input(contents, files=[]))

    def loss_curve(self, project_ref: str, run_id: int | None = None) -> str:
        """The SVG loss curve that report.md shows: the exported one, else drawn now."""
        run = self._run(project_ref, run_id)
        exported = self._context.home.project_file(run.project_id, "exports", f"run-{run.id}",
                                                   LOSS_CURVE)
        if exported.is_file():
            return exported.read_text(encoding="utf-8")
        metrics = self._metrics(run)
        return loss_curve_svg(metrics["loss_history"], metrics["eval_history"])

    # --- exporting ----------------------------------------------------------------------------

    def export(self, project_ref: str, options: ExportOptions | None = None, *,
               progress: ProgressSink = ignore_progress,
               cancel: CancelToken | None = None) -> ExportResult:
        """Write exports/run-N/ and its zip; Cancelled when stopped (nothing half-made kept)."""
        started = time.monotonic()
        options = options or ExportOptions()
        if options.sample_max_tokens < 1 or options.sample_prompts < 0:
            raise UserError("The sample answers need at least 1 token.")
        run = self._run(project_ref, options.run_id)
        merged = _support(run).importable if options.merged is None else options.merged
        job_id = self._jobs.create(run.project_id, JobKind.EXPORT, {
            "run_id": run.id, "merged": merged, "include_dataset": options.include_dataset})
        self._jobs.start(job_id)
        sink = both(ThrottledProgress(self._jobs, job_id), progress)
        try:
            result = self._export(run, replace(options, merged=merged), job_id, sink, cancel)
        except Cancelled:
            self._jobs.cancel(job_id, "Export stopped; nothing was kept.")
            raise
        except UserError as error:
            self._jobs.fail(job_id, str(error))
            raise
        except Exception as error:
            self._jobs.fail(job_id, f"The export failed unexpectedly ({type(error).__name__}); "
                                    f"the log file {self._context.log_file} has the details.")
            raise
        result = replace(result, seconds=time.monotonic() - started)
        self._jobs.succeed(job_id, result.to_json(), f"Exported {result.zip_path.name}")
        return result

    def save_zip_as(self, project_ref: str, target: Path, run_id: int | None = None, *,
                    progress: ProgressSink = ignore_progress,
                    cancel: CancelToken | None = None) -> Path:
        """Copy the run's last export zip to `target` (complete or not at all)."""
        if target.suffix.lower() != ".zip":
            raise UserError(f"Save the export as a .zip file, not {target.name!r}.")
        exported = self.last_export(project_ref, run_id)
        if exported is None or not exported.zip_path.is_file():
            raise UserError("There is no export zip to save yet: export the run first.")
        if target.resolve() != exported.zip_path.resolve():
            atomic_copy(exported.zip_path, target, progress=progress, cancel=cancel)
        return target

    def _export(self, run: _RunInfo, options: ExportOptions, job_id: int, progress: ProgressSink,
                cancel: CancelToken | None) -> ExportResult:
        exports = self._context.home.project_subdir(run.project_id, "exports")
        folder, staging = exports / f"run-{run.id}", exports / f"run-{run.id}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            contents, event = self._build(run, options, staging, progress, cancel)
            shutil.rmtree(folder, ignore_errors=True)
            staging.rename(folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        zip_path = options.out or self._default_zip(run)
        entries = write_archive(folder, zip_path, top=zip_path.stem, cancel=cancel,
                                progress=scaled(progress, ZIP_START, 1.0))
        if problems := verify_archive(zip_path):
            raise RuntimeError(f"{zip_path.name} does not match its manifest: {problems[:3]}")
        manifest = (MANIFEST, len(manifest_text(entries).encode("utf-8")))
        return ExportResult(
            job_id, run.id, folder, zip_path, zip_path.stat().st_size,
            [(entry.path, entry.size) for entry in entries] + [manifest], contents.merged,
            self._ollama_info(contents), contents.samples, event.merge_max_abs_diff,
            options.sample_max_tokens, 0.0)

    def _build(self, run: _RunInfo, options: ExportOptions, staging: Path,
               progress: ProgressSink, cancel: CancelToken | None
               ) -> tuple[_Contents, ExportedEvent]:
        adapter = staging / bundle.ADAPTER
        self._copy_adapter(run, adapter)
        contents = self._contents(run, options, bool(options.merged), adapter_dir=adapter)
        progress(0.01, "Starting the export process…")
        event = self._run_child(run, contents, staging, progress, cancel)
        contents.samples = [Sample(_last_user_text(chat), reference, answers.get(BASE, ""),
                                   answers.get(FINETUNED, ""))
                            for (chat, reference), answers in zip(contents.prompts,
                                                                  event.samples, strict=True)]
        progress(CHILD_END, "Writing the report…")
        if contents.merged:
            self._write_modelfile(contents, adapter, staging / bundle.MERGED)
        if options.include_dataset:
            self._copy_dataset(run, staging / bundle.DATASET)
        self._write_documents(contents, staging)
        return contents, event

    def _copy_adapter(self, run: _RunInfo, target: Path) -> None:
        """The adapter's files, its config pointing at the Hub id when the base came from
        there (so AutoPeftModelForCausalLM finds it on another computer)."""
        if not (run.adapter_dir / "adapter_model.safetensors").is_file():
            raise UserError(f"Run {run.id}'s adapter is missing ({run.adapter_dir}): train "
                            "again, or export another run.")
        target.mkdir(parents=True)
        for name in bundle.ADAPTER_FILES:
            if (run.adapter_dir / name).is_file():
                shutil.copy2(run.adapter_dir / name, target / name)
        reference = bundle.hub_reference(run.model_dir)
        if reference is not None:
            config_path = target / "adapter_config.json"
            config = json.loads(config_path.read_text(encoding="utf-8"))
            config["base_model_name_or_path"], config["revision"] = reference
            atomic_write_text(config_path, json.dumps(config, indent=2) + "\n")

    def _run_child(self, run: _RunInfo, contents: _Contents, staging: Path,
                   progress: ProgressSink, cancel: CancelToken | None) -> ExportedEvent:
        job = ExportJob(run_id=str(run.id), model_path=str(run.model_dir),
                        adapter_dir=str(staging / bundle.ADAPTER),
                        merged_dir=str(staging / bundle.MERGED) if contents.merged else None,
                        prompts=[chat for chat, _ in contents.prompts],
                        max_new_tokens=contents.options.sample_max_tokens)
        job_path = job.write(run.folder / "export-job.json")
        log_path = self._context.home.project_file(run.project_id, "logs",
                                                   f"export-{run.id}.log")
        events = _EventReader(progress, len(contents.prompts))
        code = run_trainer(["export", str(job_path)], log_path, events.handle, cancel)
        final = events.final
        if isinstance(final, ExportedEvent):
            return final
        if isinstance(final, StoppedEvent) or (cancel is not None and cancel.cancelled):
            raise Cancelled()
        if isinstance(final, ErrorEvent):
            raise UserError(final.message + (f" (log: {log_path})" if final.detail else ""))
        raise UserError(f"The export process ended unexpectedly (exit code {code}); "
                        f"its log is {log_path}.")

    def _write_modelfile(self, contents: _Contents, adapter: Path, merged: Path) -> None:
        chat_format = _chat_format(adapter)
        contents.chat_format = chat_format.label if chat_format else None
        text = render_modelfile(chat_format, system=contents.system_prompt,
                                eos_token=load_special_tokens(adapter).get("eos_token"))
        atomic_write_text(merged / bundle.MODELFILE, text)

    def _copy_dataset(self, run: _RunInfo, target: Path) -> None:
        target.mkdir(parents=True)
        for path in (run.job.train_path, run.job.eval_path):
            if path and Path(path).is_file():
                shutil.copy2(path, target / Path(path).name)

    def _write_documents(self, contents: _Contents, staging: Path) -> None:
        run = contents.run
        metrics = self._metrics(run)
        atomic_write_text(staging / bundle.METRICS, _json(metrics))
        atomic_write_text(staging / bundle.CONFIG, _json(self._config_document(contents)))
        atomic_write_text(staging / bundle.SAMPLES,
                          _json([asdict(sample) for sample in contents.samples]))
        atomic_write_text(staging / LOSS_CURVE, loss_curve_svg(metrics["loss_history"],
                                                               metrics["eval_history"]))
        written = [path.relative_to(staging).as_posix() for path in folder_files(staging)]
        files = sorted([*written, bundle.REPORT, MANIFEST])
        atomic_write_text(staging / bundle.REPORT,
                          render_report(self._report_input(contents, files)))

    # --- the documents ------------------------------------------------------------------------

    def _contents(self, run: _RunInfo, options: ExportOptions, merged: bool,
                  adapter_dir: Path | None = None) -> _Contents:
        train, evaluation = run.train_chats, run.eval_chats
        pairs = [pair for chat in (evaluation or train)
                 if (pair := bundle.prompt_and_reference(chat)) is not None]
        count = chat_token_counter(adapter_dir or run.adapter_dir)
        stats = ReviewService(self._context).stats(run.project_id)
        return _Contents(
            run=run, options=options, merged=merged,
            support=_support(run),
            system_prompt=self._trained_system_prompt(run.project_id, train),
            dataset={"train_examples": len(train), "eval_examples": len(evaluation),
                     "rejected": stats.rejected, "rejected_by_reason": stats.rejected_by_reason,
                     "duplicates_removed": stats.duplicates_removed,
                     "token_lengths": token_length_stats([count(c) for c in train + evaluation]),
                     "split": {"seed": DEFAULT_SEED, "eval_fraction": DEFAULT_EVAL_FRACTION}},
            examples=bundle.spread(train, EXAMPLE_PAIRS),
            prompts=bundle.spread(pairs, options.sample_prompts),
            held_out=bool(evaluation))

    def _trained_system_prompt(self, project_id: str,
                               train: list[list[dict[str, str]]]) -> str:
        """The system prompt the model learnt with: the training chats' most common one (the
        task's, for generated examples), else the task's."""
        prompts = Counter(chat[0]["content"] for chat in train
                          if chat and chat[0]["role"] == "system")
        if prompts:
            return prompts.most_common(1)[0][0]
        return Task(GenerationService(self._context).task_settings(project_id)).system_prompt

    def _metrics(self, run: _RunInfo) -> dict[str, Any]:
        path = run.job.metrics_path
        trainer_metrics = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        metrics = export_metrics(trainer_metrics, str(run.record_metrics.get("message") or ""))
        return {**metrics, "run_id": run.id}

    def _config_document(self, contents: _Contents) -> dict[str, Any]:
        run = contents.run
        generation = GenerationService(self._context)
        task = generation.task_settings(run.project_id)
        return {
            "finetuneflow_version": __version__,
            "exported_at": _now(),
            "project": run.project_name,
            "run_id": run.id,
            "base_model": _base_model(run),
            "task": {**task.to_dict(), "system_prompt_used": contents.system_prompt},
            "generation": generation.llm_settings(run.project_id).to_dict(),
            "training": run.config,
            "seed": run.config.get("seed"),
            "dataset": contents.dataset,
            "packages": _packages(),
            "export": {"merged": contents.merged, "include_dataset":
                       contents.options.include_dataset,
                       "sample_max_tokens": contents.options.sample_max_tokens},
        }


    def _report_input(self, contents: _Contents, files: list[str]) -> ReportInput:
        run = contents.run
        base = _base_model(run)
        task = GenerationService(self._context).task_settings(run.project_id)
        return ReportInput(
            project=run.project_name, run_id=run.id, base_model=base["id"],
            revision=base["revision"], exported_at=_now(), task_type=task.type.value,
            system_prompt=contents.system_prompt, metrics=self._metrics(run),
            config=run.config, dataset=contents.dataset, examples=contents.examples,
            samples=contents.samples, samples_held_out=contents.held_out,
            sample_max_tokens=contents.options.sample_max_tokens, packages=_packages(),
            ollama=self._ollama_info(contents), files=files)

    def _ollama_info(self, contents: _Contents) -> OllamaInfo | None:
        if not contents.merged:
            return None
        name = contents.options.ollama_name or ollama_model_name(contents.run.project_name)
        return OllamaInfo(name, create_command(name), contents.support.importable,
                          contents.support.note, contents.chat_format)

    def _default_zip(self, run: _RunInfo) -> Path:
        return self._context.home.project_file(run.project_id, "exports",
                                               bundle.zip_name(run.project_name, run.id))

    # --- finding the run ----------------------------------------------------------------------

    def _run(self, project_ref: str, run_id: int | None) -> _RunInfo:
        project = self._projects.get(project_ref)
        runs = self.exportable_runs(project.id)
        if not runs:
            raise UserError("There is no finished training run to export: train the model "
                            "first (the Train step).")
        if run_id is not None and run_id not in runs:
            raise UserError(f"Run {run_id} is not a finished run of this project; finished "
                            f"runs: {', '.join(map(str, runs))}.")
        chosen = run_id if run_id is not None else runs[0]
        with self._context.session() as session:
            row = session.get(Run, chosen)
            assert row is not None
            config, record_metrics = dict(row.config), dict(row.metrics)
        folder = self._context.home.project_file(project.id, "artifacts", f"run-{chosen}")
        try:
            job = TrainJob.read(folder / "job.json")
        except ProtocolError as error:
            raise UserError(f"Run {chosen}'s job file cannot be read ({error}).") from None
        return _RunInfo(chosen, project.id, project.name, config, record_metrics, job, folder)

    # --- chat ---------------------------------------------------------------------------------

    def chat(self, project_ref: str, prompt: str, *, run_id: int | None = None,
             base: bool = False, system_prompt: str | None = None, temperature: float = 0.7,
             max_tokens: int = 256, on_token: Callable[[str], None] | None = None,
             cancel: CancelToken | None = None) -> str:
        """One answer, from the fine-tuned model (or the base model), streamed to `on_token`
        (called on this thread). The system prompt defaults to the one the model learnt with;
        a cancel ends the answer after the current token and returns what was written."""
        variant = BASE if base else FINETUNED
        answers = self._chat(project_ref, prompt, [variant], run_id=run_id,
                             system_prompt=system_prompt, temperature=temperature,
                             max_tokens=max_tokens, cancel=cancel,
                             on_token=(lambda _variant, text: on_token(text)) if on_token
                             else None)
        return answers.get(variant, "")

    def compare(self, project_ref: str, prompt: str, *, run_id: int | None = None,
                system_prompt: str | None = None, temperature: float = 0.7,
                max_tokens: int = 256, on_token: TokenCallback | None = None,
                cancel: CancelToken | None = None) -> dict[str, str]:
        """The base model's answer, then the fine-tuned one's ({"base": …, "finetuned": …});
        `on_token(variant, text)` hears each piece as it comes."""
        return self._chat(project_ref, prompt, [BASE, FINETUNED], run_id=run_id,
                          system_prompt=system_prompt, temperature=temperature,
                          max_tokens=max_tokens, on_token=on_token, cancel=cancel)

    def _chat(self, project_ref: str, prompt: str, variants: list[str], *, run_id: int | None,
              system_prompt: str | None, temperature: float, max_tokens: int,
              on_token: TokenCallback | None, cancel: CancelToken | None) -> dict[str, str]:
        if not prompt.strip():
            raise UserError("Type a prompt first.")
        if not 0 <= temperature <= 2 or max_tokens < 1:
            raise UserError("Temperature must be between 0 and 2 and max tokens at least 1.")
        run = self._run(project_ref, run_id)
        system = (self._trained_system_prompt(run.project_id, run.train_chats)
                  if system_prompt is None else system_prompt)
        messages = ([{"role": "system", "content": system}] if system.strip() else []) + [
            {"role": "user", "content": prompt}]
        job = ChatJob(model_path=str(run.model_dir), adapter_dir=str(run.adapter_dir),
                      messages=messages, variants=variants, temperature=temperature,
                      max_new_tokens=max_tokens, seed=int(run.config.get("seed") or 0))
        answers: dict[str, str] = {}
        failure: list[ErrorEvent] = []

        def on_line(line: str) -> None:
            event = _decode(line)
            if isinstance(event, TokenEvent) and on_token is not None:
                on_token(event.variant, event.text)
            elif isinstance(event, AnswerEvent):
                answers[event.variant] = event.text
            elif isinstance(event, ErrorEvent):
                failure.append(event)

        log_path = self._context.home.project_file(run.project_id, "logs", f"chat-{run.id}.log")
        with tempfile.TemporaryDirectory(dir=run.folder) as folder:
            job_path = job.write(Path(folder) / "chat-job.json")
            code = run_trainer(["chat", str(job_path)], log_path, on_line, cancel)
        if failure:
            raise UserError(failure[0].message)
        if code != 0 and not (cancel is not None and cancel.cancelled):
            raise UserError(f"The chat process ended unexpectedly (exit code {code}); its log "
                            f"is {log_path}.")
        return answers

    # --- Ollama -------------------------------------------------------------------------------

    def register_in_ollama(self, project_ref: str, run_id: int | None = None, *,
                           name: str | None = None, progress: ProgressSink = ignore_progress,
                           cancel: CancelToken | None = None) -> OllamaRegistration:
        """`ollama create` the exported merged model, then ask it the first sample prompt and
        return its answer beside the transformers model's answer to the same prompt."""
        if not ollama_available():
            raise UserError("Ollama is not installed (there is no `ollama` command): install "
                            "it from https://ollama.com/download, then try again.")
        run = self._run(project_ref, run_id)
        exported = self.last_export(run.project_id, run.id)
        merged = exported.folder / bundle.MERGED if exported else None
        if exported is None or merged is None or not (merged / bundle.MODELFILE).is_file():
            raise UserError("Export this run with the merged model first (the merged model is "
                            "what Ollama imports).")
        if exported.ollama is not None and not exported.ollama.importable:
            raise UserError(exported.ollama.note)
        model_name = ollama_model_name(name) if name else (
            exported.ollama.model_name if exported.ollama else ollama_model_name(run.project_name))
        progress(0.1, f"ollama create {model_name}…")
        _ollama_create(model_name, merged, cancel)
        chat, sample = self._first_sample(run, exported)
        progress(0.7, f"Asking {model_name} a sample prompt…")
        answer = _ask_ollama(model_name, chat, exported.sample_max_tokens, cancel)
        progress(1.0, f"{model_name} is ready in Ollama")
        return OllamaRegistration(model_name, sample.prompt, sample.reference, answer,
                                  sample.finetuned, _template_warning(answer, merged))

    def _first_sample(self, run: _RunInfo, exported: ExportResult
                      ) -> tuple[list[dict[str, str]], Sample]:
        samples = json.loads((exported.folder / bundle.SAMPLES).read_text(encoding="utf-8"))
        if not samples:
            raise UserError("The export has no sample prompt to ask (the dataset had none).")
        pairs = [pair for chat in (run.eval_chats or run.train_chats)
                 if (pair := bundle.prompt_and_reference(chat)) is not None]
        first = Sample(**samples[0])
        chat = next((c for c, _ in pairs if _last_user_text(c) == first.prompt),
                    [{"role": "user", "content": first.prompt}])
        return chat, first


# --- helpers ----------------------------------------------------------------------------------

class _EventReader:
    """The export child's events: status phases become progress, the last event is kept."""

    def __init__(self, progress: ProgressSink, prompts: int) -> None:
        self._progress = progress
        self._prompts = max(prompts, 1)
        self._answered = 0
        self.final: Event | None = None

    def handle(self, line: str) -> None:
        event = _decode(line)
        if isinstance(event, StatusEvent):
            self._progress(self._fraction(event.phase), event.message)
        elif isinstance(event, ExportedEvent | StoppedEvent | ErrorEvent):
            self.final = event

    def _fraction(self, phase: str) -> float:
        if phase == "samples":
            self._answered += 1
            return SAMPLES_START + (SAMPLES_END - SAMPLES_START) * (
                self._answered - 1) / self._prompts
        return PHASES.get(phase, SAMPLES_START)


def _decode(line: str) -> Event | None:
    try:
        return decode(line)
    except ProtocolError:
        log.warning("trainer printed a non-event line: %.200s", line)
        return None


def _read_chats(path: str | None) -> list[list[dict[str, str]]]:
    """The chats of a dataset file the trainer read (it checked every line)."""
    if not path or not Path(path).is_file():
        return []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["messages"] for line in lines if line.strip()]


def _last_user_text(chat: list[dict[str, str]]) -> str:
    return next((m["content"] for m in reversed(chat) if m["role"] == "user"), "")


def _chat_format(folder: Path) -> ChatFormat | None:
    """The chat family of a model folder's template (of its added tokens, without one)."""
    path = folder / "tokenizer.json"
    added = json.loads(path.read_text(encoding="utf-8")).get("added_tokens", []) \
        if path.is_file() else []
    return detect_chat_format(load_chat_template(folder),
                              [entry.get("content", "") for entry in added])


def _packages() -> dict[str, str]:
    found = {"python": platform.python_version(), "finetuneflow": __version__}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def ollama_host() -> str:
    """Where the local Ollama listens: OLLAMA_HOST as the ollama command reads it."""
    host = os.environ.get("OLLAMA_HOST", "").strip() or OLLAMA_DEFAULT_HOST
    if "://" not in host:
        host = f"http://{host}"
    return host.replace("://0.0.0.0", "://127.0.0.1").rstrip("/")


def _ollama_create(model_name: str, merged: Path, cancel: CancelToken | None) -> None:
    command = ["ollama", "create", model_name, "-f", bundle.MODELFILE]
    child = subprocess.Popen(command, cwd=merged, stdout=subprocess.PIPE,
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


def _ask_ollama(model_name: str, chat: list[dict[str, str]], max_tokens: int,
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
    chat_format = _chat_format(merged)
    eos = load_special_tokens(merged).get("eos_token")
    markers = chat_format.with_eos(eos).stops if chat_format else (eos,) if eos else ()
    leaked = [marker for marker in markers if marker.strip() and marker in answer]
    if leaked:
        return (f"Ollama's answer contains {leaked[0]!r}, a chat-format marker: the Modelfile's "
                "TEMPLATE does not match how the model was trained.")
    return None
