"""Export a finished run: adapter, merged model for Ollama, config, metrics, report, one zip.

The trainer child does what needs torch (`trainer export`: before/after answers, the merge);
this service writes the rest. Everything is built in `exports/run-N.partial/`, renamed to
`exports/run-N/` when complete, then zipped to `exports/finetuneflow-PROJECT-run-N.zip` under a
temporary name (see core/export/archive.py), and the zip is checked against its manifest.

No secret is read here: config.json is assembled from settings that never hold one (the LLM
settings have no key field) and the adapter's files are copied from a fixed list.

GGUF files (gguf/) are written from the merged model in a worker process (the conversion is
numpy-heavy but needs no torch); see core/export/gguf.py.

Trying the model is services/chat.py; registering the merged model in Ollama, services/ollama.py.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    ErrorEvent,
    Event,
    ExportedEvent,
    ExportJob,
    StatusEvent,
    StoppedEvent,
)
from finetuneflow.core.dataset.split import DEFAULT_EVAL_FRACTION, DEFAULT_SEED
from finetuneflow.core.export import bundle, gguf_lora
from finetuneflow.core.export import gguf as gguf_export
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
    GgufInfo,
    OllamaInfo,
    ReportInput,
    Sample,
    evaluation_json,
    export_metrics,
    loss_curve_svg,
    render_report,
    token_length_stats,
)
from finetuneflow.core.export.tokenizer_config import make_tokenizer_config_portable
from finetuneflow.core.progress import (
    Cancelled,
    CancelToken,
    ProgressSink,
    both,
    ignore_progress,
    scaled,
)
from finetuneflow.core.write_errors import write_problem
from finetuneflow.services.errors import UserError
from finetuneflow.services.evaluation import evaluation
from finetuneflow.services.finished_runs import FinishedRun, FinishedRuns, last_user_text
from finetuneflow.services.generation import GenerationService
from finetuneflow.services.jobs import JobService, ThrottledProgress
from finetuneflow.services.projects import ProjectService
from finetuneflow.services.review import ReviewService
from finetuneflow.services.trainer_process import read_event, run_trainer
from finetuneflow.services.worker_process import run_in_worker
from finetuneflow.storage.tables import JobKind

if TYPE_CHECKING:
    from finetuneflow.core.evaluation.results import Evaluation
    from finetuneflow.services.context import AppContext

SAMPLE_PROMPTS = 5
SAMPLE_TOKENS = 128  # the longest before/after answer, by default
EXAMPLE_PAIRS = 5
PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "tokenizers",
            "safetensors", "bitsandbytes")
# The child's status phases, mapped onto the export's progress (the zip takes the last 20%).
PHASES = {"loading_model": 0.02, "merging": 0.55, "saving": 0.65}
SAMPLES_START, SAMPLES_END, CHILD_END, ZIP_START = 0.05, 0.5, 0.75, 0.8
ADAPTER_GGUF = "adapter"  # GgufInfo.kind of the LoRA GGUF
ADAPTER_SUFFIX = ".adapter"  # Modelfile.adapter: FROM the base GGUF, ADAPTER the LoRA GGUF
GGUF_START = 0.66  # after the child's "saving" phase; GGUF files end at CHILD_END


@dataclass(frozen=True)
class ExportOptions:
    run_id: int | None = None  # None: the latest finished run
    merged: bool | None = None  # None: yes when Ollama can import the architecture
    include_dataset: bool = False
    out: Path | None = None  # the zip; None: exports/finetuneflow-PROJECT-run-N.zip
    sample_prompts: int = SAMPLE_PROMPTS
    sample_max_tokens: int = SAMPLE_TOKENS
    ollama_name: str | None = None  # None: from the project's name
    gguf: tuple[str, ...] = ()  # GGUF quantisations to write from the merged model
    gguf_adapter: bool = False  # the LoRA adapter alone as a GGUF, with Modelfile.adapter


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
    gguf: list[GgufInfo] = field(default_factory=list)

    @property
    def gguf_models(self) -> list[GgufInfo]:
        """The GGUF model files (not the LoRA adapter one): what gguf/Modelfile uses."""
        return _models(self.gguf)

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id, "run_id": self.run_id, "folder": str(self.folder),
            "zip": str(self.zip_path), "zip_bytes": self.zip_bytes,
            "files": [{"path": path, "bytes": size} for path, size in self.files],
            "merged": self.merged, "ollama": asdict(self.ollama) if self.ollama else None,
            "samples": [asdict(sample) for sample in self.samples],
            "merge_max_abs_diff": self.merge_max_abs_diff,
            "sample_max_tokens": self.sample_max_tokens, "seconds": round(self.seconds, 2),
            "gguf": [asdict(entry) for entry in self.gguf]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExportResult:
        ollama = data.get("ollama")
        return cls(
            data["job_id"], data["run_id"], Path(data["folder"]), Path(data["zip"]),
            data["zip_bytes"], [(f["path"], f["bytes"]) for f in data["files"]], data["merged"],
            OllamaInfo(**ollama) if ollama else None,
            [Sample(**sample) for sample in data["samples"]], data["merge_max_abs_diff"],
            data["sample_max_tokens"], data["seconds"],
            [GgufInfo(**entry) for entry in data.get("gguf", [])])


@dataclass
class _Contents:
    """What the report and config.json are made from."""

    run: FinishedRun
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
    gguf: list[GgufInfo] = field(default_factory=list)


def _base_model(run: FinishedRun) -> dict[str, Any]:
    """The base model as config.json records it: Hub id and revision when known."""
    config = json.loads((run.model_dir / "config.json").read_text(encoding="utf-8"))
    reference = bundle.hub_reference(run.model_dir)
    return {"id": reference[0] if reference else str(run.model_dir),
            "revision": reference[1] if reference else None,
            "source": "hub" if reference else "local",
            "architecture": (config.get("architectures") or ["unknown"])[0],
            "model_type": config.get("model_type")}


def _support(run: FinishedRun) -> OllamaSupport:
    return ollama_support(_base_model(run)["architecture"])


class ExportService:
    def __init__(self, context: AppContext) -> None:
        self._context = context
        self._projects = ProjectService(context)
        self._jobs = JobService(context)
        self._runs = FinishedRuns(context)

    # --- what can be exported, and how --------------------------------------------------------

    def ollama_support(self, project_ref: str, run_id: int | None = None) -> OllamaSupport:
        """Whether Ollama can import the merged model of this run's base architecture."""
        return _support(self._runs.get(project_ref, run_id))

    def gguf_problems(self, project_ref: str, run_id: int | None = None) -> dict[str, str | None]:
        """Each GGUF quantisation, and ADAPTER_GGUF (the LoRA GGUF), with why it cannot be made
        for this run (None: it can)."""
        run = self._runs.get(project_ref, run_id)
        model = gguf_export.unsupported_reason(run.model_dir)
        problems = {quantisation: model or gguf_export.quantiser_missing(quantisation)
                    for quantisation in gguf_export.QUANTISATIONS}
        problems[ADAPTER_GGUF] = gguf_lora.unsupported_reason(run.adapter_dir, run.model_dir)
        return problems

    def default_options(self, project_ref: str, run_id: int | None = None) -> ExportOptions:
        """The latest (or given) run, merged when Ollama can import the architecture, the zip
        in the project's exports/ folder."""
        run = self._runs.get(project_ref, run_id)
        return ExportOptions(run_id=run.id, merged=_support(run).importable,
                             out=self._default_zip(run))

    def last_export(self, project_ref: str, run_id: int | None = None) -> ExportResult | None:
        """The newest successful export (of that run), as it was reported."""
        project_id = self._projects.get(project_ref).id
        with self._context.transaction() as tx:
            results = tx.jobs.results_of_succeeded(project_id, JobKind.EXPORT)
        for result in results:
            if run_id is None or result.get("run_id") == run_id:
                exported = ExportResult.from_json(result)
                return exported if exported.folder.is_dir() else None
        return None

    def report_preview(self, project_ref: str, run_id: int | None = None) -> str:
        """report.md of the run's last export; without one, the report so far (no answers)."""
        run = self._runs.get(project_ref, run_id)
        exported = self._context.home.project_file(run.project_id, "exports", f"run-{run.id}",
                                                   bundle.REPORT)
        if exported.is_file():
            return exported.read_text(encoding="utf-8")
        options = self.default_options(project_ref, run.id)
        contents = self._contents(run, options, bool(options.merged))
        return render_report(self._report_input(contents, files=[]))

    def loss_curve(self, project_ref: str, run_id: int | None = None) -> str:
        """The SVG loss curve that report.md shows: the exported one, else drawn now."""
        run = self._runs.get(project_ref, run_id)
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
        run = self._runs.get(project_ref, options.run_id)
        _check_gguf(run, options)
        merged = bool(options.gguf) or (
            _support(run).importable if options.merged is None else options.merged)
        job_id = self._jobs.create(run.project_id, JobKind.EXPORT, {
            "run_id": run.id, "merged": merged, "include_dataset": options.include_dataset,
            "gguf": list(options.gguf), "gguf_adapter": options.gguf_adapter})
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

    def _export(self, run: FinishedRun, options: ExportOptions, job_id: int, progress: ProgressSink,
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
            options.sample_max_tokens, 0.0, contents.gguf)

    def _build(self, run: FinishedRun, options: ExportOptions, staging: Path,
               progress: ProgressSink, cancel: CancelToken | None
               ) -> tuple[_Contents, ExportedEvent]:
        adapter = staging / bundle.ADAPTER
        self._copy_adapter(run, adapter)
        contents = self._contents(run, options, bool(options.merged), adapter_dir=adapter)
        progress(0.01, "Starting the export process…")
        event = self._run_child(run, contents, staging, progress, cancel)
        contents.samples = [Sample(last_user_text(chat), reference, answers.get(BASE, ""),
                                   answers.get(FINETUNED, ""))
                            for (chat, reference), answers in zip(contents.prompts,
                                                                  event.samples, strict=True)]
        if options.gguf:
            contents.gguf = self._write_gguf(run, staging, options.gguf,
                                             scaled(progress, GGUF_START, CHILD_END), cancel)
        if options.gguf_adapter:
            contents.gguf.append(self._write_adapter_gguf(run, staging, progress, cancel))
        progress(CHILD_END, "Writing the report…")
        if contents.merged:
            self._write_modelfile(contents, adapter, staging / bundle.MERGED)
        if models := _models(contents.gguf):
            smallest = min(models, key=lambda entry: entry.bytes)
            self._write_modelfile(contents, adapter, staging / bundle.GGUF,
                                  source=f"./{Path(smallest.file).name}")
        if options.gguf_adapter:
            self._write_modelfile(contents, adapter, staging / bundle.GGUF,
                                  source=f"./{base_gguf_name(_base_model(run)['id'])}",
                                  lora=f"./{gguf_lora.adapter_file_name()}")
        if options.include_dataset:
            self._copy_dataset(run, staging / bundle.DATASET)
        self._write_documents(contents, staging)
        return contents, event

    def _copy_adapter(self, run: FinishedRun, target: Path) -> None:
        """The adapter's files, its config pointing at the Hub id when the base came from
        there (so AutoPeftModelForCausalLM finds it on another computer)."""
        if not (run.adapter_dir / "adapter_model.safetensors").is_file():
            raise UserError(f"Run {run.id}'s adapter is missing ({run.adapter_dir}): train "
                            "again, or export another run.")
        target.mkdir(parents=True)
        for name in bundle.ADAPTER_FILES:
            if (run.adapter_dir / name).is_file():
                shutil.copy2(run.adapter_dir / name, target / name)
        make_tokenizer_config_portable(target)
        reference = bundle.hub_reference(run.model_dir)
        if reference is not None:
            config_path = target / "adapter_config.json"
            config = json.loads(config_path.read_text(encoding="utf-8"))
            config["base_model_name_or_path"], config["revision"] = reference
            atomic_write_text(config_path, json.dumps(config, indent=2) + "\n")

    def _run_child(self, run: FinishedRun, contents: _Contents, staging: Path,
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

    def _write_modelfile(self, contents: _Contents, adapter: Path, folder: Path,
                         source: str = ".", lora: str | None = None) -> None:
        """The Modelfile FROM `source`; with `lora` (a LoRA GGUF's path), Modelfile.adapter."""
        chat_format = model_chat_format(adapter)
        contents.chat_format = chat_format.label if chat_format else None
        text = render_modelfile(chat_format, system=contents.system_prompt,
                                eos_token=load_special_tokens(adapter).get("eos_token"),
                                chat_template=load_chat_template(adapter), source=source,
                                adapter=lora)
        name = bundle.MODELFILE + (ADAPTER_SUFFIX if lora else "")
        atomic_write_text(folder / name, text)

    def _write_gguf(self, run: FinishedRun, staging: Path, quantisations: tuple[str, ...],
                    progress: ProgressSink, cancel: CancelToken | None) -> list[GgufInfo]:
        """The GGUF files, written by a worker process from the merged model in staging."""
        arguments = {"merged": str(staging / bundle.MERGED), "folder": str(staging / bundle.GGUF),
                     "quantisations": list(quantisations), "name": run.project_name}
        written = self._in_worker("gguf", arguments, progress, cancel, "Writing the GGUF files")
        return [GgufInfo(f"{bundle.GGUF}/{entry['file']}", entry["quantisation"],
                         entry["bytes"]) for entry in written]

    def _write_adapter_gguf(self, run: FinishedRun, staging: Path, progress: ProgressSink,
                            cancel: CancelToken | None) -> GgufInfo:
        """The adapter as a LoRA GGUF, written by a worker process (the merged files, if any,
        are done by then)."""
        target = staging / bundle.GGUF / gguf_lora.adapter_file_name()
        arguments = {"adapter": str(staging / bundle.ADAPTER), "base": str(run.model_dir),
                     "target": str(target), "name": run.project_name}
        progress(CHILD_END, "Writing the adapter as GGUF…")
        written = self._in_worker("gguf_adapter", arguments, ignore_progress, cancel,
                                  "Writing the adapter GGUF")
        return GgufInfo(f"{bundle.GGUF}/{target.name}", gguf_lora.F16, written, ADAPTER_GGUF)

    def _in_worker(self, operation: str, arguments: dict[str, Any], progress: ProgressSink,
                   cancel: CancelToken | None, what: str) -> Any:
        token = cancel or CancelToken()
        try:
            return run_in_worker(self._context.home, operation, arguments, progress, token, what)
        except RuntimeError:
            if token.cancelled:  # the worker reports a stop as an error
                raise Cancelled() from None
            raise

    def _copy_dataset(self, run: FinishedRun, target: Path) -> None:
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

    def _contents(self, run: FinishedRun, options: ExportOptions, merged: bool,
                  adapter_dir: Path | None = None) -> _Contents:
        train, evaluation = run.train_chats, run.eval_chats
        count = chat_token_counter(adapter_dir or run.adapter_dir)
        stats = ReviewService(self._context).stats(run.project_id)
        return _Contents(
            run=run, options=options, merged=merged,
            support=_support(run),
            system_prompt=self._runs.trained_system_prompt(run),
            dataset={"train_examples": len(train), "eval_examples": len(evaluation),
                     "rejected": stats.rejected, "rejected_by_reason": stats.rejected_by_reason,
                     "duplicates_removed": stats.duplicates_removed,
                     "token_lengths": token_length_stats([count(c) for c in train + evaluation]),
                     "split": {"seed": DEFAULT_SEED, "eval_fraction": DEFAULT_EVAL_FRACTION}},
            examples=bundle.spread(train, EXAMPLE_PAIRS),
            prompts=bundle.spread(run.sample_pairs, options.sample_prompts),
            held_out=bool(evaluation))

    def _metrics(self, run: FinishedRun) -> dict[str, Any]:
        path = run.job.metrics_path
        trainer_metrics = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        metrics = export_metrics(trainer_metrics, str(run.record_metrics.get("message") or ""))
        evaluated = self._evaluation(run)
        return {**metrics, "run_id": run.id,
                "evaluation": evaluation_json(evaluated) if evaluated else None}

    def _evaluation(self, run: FinishedRun) -> Evaluation | None:
        return evaluation(self._context, run.project_id, run.id)

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
                       "gguf": [asdict(entry) for entry in contents.gguf],
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
            ollama=self._ollama_info(contents), files=files,
            base_local=base["source"] == "local", gguf=contents.gguf,
            evaluation=self._evaluation(run))

    def _ollama_info(self, contents: _Contents) -> OllamaInfo | None:
        if not contents.merged:
            return None
        name = contents.options.ollama_name or ollama_model_name(contents.run.project_name)
        return OllamaInfo(name, create_command(name), contents.support.importable,
                          contents.support.note, contents.chat_format)

    def _default_zip(self, run: FinishedRun) -> Path:
        return self._context.home.project_file(run.project_id, "exports",
                                               bundle.zip_name(run.project_name, run.id))


# --- GGUF -------------------------------------------------------------------------------------

def _check_gguf(run: FinishedRun, options: ExportOptions) -> None:
    """Refuse GGUF quantisations this computer cannot make, or a model the writer does not
    support, before any work starts."""
    if options.gguf_adapter and (
            reason := gguf_lora.unsupported_reason(run.adapter_dir, run.model_dir)):
        raise UserError(reason)
    if not options.gguf:
        return
    if options.merged is False:
        raise UserError("GGUF files are made from the merged model: leave out --no-merged (or "
                        "tick the merged model) to export GGUF.")
    for quantisation in options.gguf:
        if reason := gguf_export.quantiser_missing(quantisation):
            raise UserError(reason)
    if reason := gguf_export.unsupported_reason(run.model_dir):
        raise UserError(reason)


def write_gguf_files(arguments: dict[str, Any], progress: ProgressSink,
                     cancel: CancelToken) -> list[dict[str, Any]]:
    """The worker's side: each quantisation into `folder`; Q4_K_M from an F16 file (the asked
    one, else a temporary one removed afterwards)."""
    merged, folder = Path(arguments["merged"]), Path(arguments["folder"])
    wanted: list[str] = arguments["quantisations"]
    direct = [q for q in gguf_export.QUANTISATIONS if q in wanted and q != gguf_export.Q4_K_M]
    if gguf_export.Q4_K_M in wanted and gguf_export.F16 not in direct:
        direct.append(gguf_export.F16)
    written: dict[str, gguf_export.GgufFile] = {}
    try:
        for number, quantisation in enumerate(direct):
            written[quantisation] = gguf_export.write_gguf(
                merged, folder / gguf_export.file_name(quantisation), quantisation,
                name=arguments["name"], cancel=cancel,
                progress=scaled(progress, number / len(direct), (number + 1) / len(direct)))
        if gguf_export.Q4_K_M in wanted:
            progress(1.0, "Quantising to Q4_K_M with llama.cpp…")
            written[gguf_export.Q4_K_M] = gguf_export.quantize_with_llama_cpp(
                written[gguf_export.F16].path, folder / gguf_export.file_name(gguf_export.Q4_K_M))
    except gguf_export.GgufError as error:
        raise UserError(str(error)) from None
    except OSError as error:
        if problem := write_problem(error, folder):
            raise UserError(problem) from None
        raise
    if gguf_export.F16 not in wanted and gguf_export.F16 in written:
        written.pop(gguf_export.F16).path.unlink()
    return [{"file": entry.path.name, "quantisation": entry.quantisation, "bytes": entry.bytes}
            for quantisation, entry in written.items() if quantisation in wanted]


def write_adapter_gguf(arguments: dict[str, Any], cancel: CancelToken) -> int:
    """The worker's side of the adapter GGUF: its size in bytes."""
    target = Path(arguments["target"])
    try:
        return gguf_lora.write_lora_gguf(Path(arguments["adapter"]), Path(arguments["base"]),
                                         target, name=arguments["name"], cancel=cancel).bytes
    except gguf_export.GgufError as error:
        raise UserError(str(error)) from None
    except OSError as error:
        if problem := write_problem(error, target.parent):
            raise UserError(problem) from None
        raise


def _models(files: list[GgufInfo]) -> list[GgufInfo]:
    """The GGUF model files, without the LoRA adapter one."""
    return [entry for entry in files if entry.kind != ADAPTER_GGUF]


def base_gguf_name(base_id: str) -> str:
    """The file Modelfile.adapter's FROM expects beside it: the base as an F16 GGUF."""
    return f"{Path(base_id).name}-{gguf_lora.F16}.gguf"


# --- helpers ----------------------------------------------------------------------------------

class _EventReader:
    """The export child's events: status phases become progress, the last event is kept."""

    def __init__(self, progress: ProgressSink, prompts: int) -> None:
        self._progress = progress
        self._prompts = max(prompts, 1)
        self._answered = 0
        self.final: Event | None = None

    def handle(self, line: str) -> None:
        event = read_event(line)
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


def model_chat_format(folder: Path) -> ChatFormat | None:
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


