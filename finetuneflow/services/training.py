"""Training runs: prepare a job for the trainer child, record what it reports, resume it.

One run at a time, app-wide: a new run is refused while a train job's process is alive.
A run keeps everything under `artifacts/run-ID/` (job file, checkpoints, events, metrics);
the adapter goes to `artifacts/adapter-ID/` and the child's log to `logs/train-ID.log`.

What the child reports is stored once, in `events.jsonl`: the chart, the log and the resume
point are read back from it. The database holds the job's live progress (for the status bar
of any window) and, when the run ends, its summary (the final event's metrics, the adapter).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from finetuneflow.core.chat_template import chat_token_counter
from finetuneflow.core.child_protocol import (
    OOM,
    ErrorEvent,
    Event,
    FinishedEvent,
    LogEvent,
    ProbeEvent,
    ProtocolError,
    StartedEvent,
    StatusEvent,
    StoppedEvent,
    TrainJob,
    decode,
)
from finetuneflow.core.dataset.split import DEFAULT_EVAL_FRACTION
from finetuneflow.core.progress import CancelToken, ProgressSink, ignore_progress
from finetuneflow.core.training.config import TrainingConfig, preset_config
from finetuneflow.core.training.recommend import (
    DatasetStats,
    Recommendation,
    describe_change,
    next_smaller,
    recommend,
)
from finetuneflow.core.training.timing import RunEstimate, estimate_run
from finetuneflow.services.base_model import ModelService
from finetuneflow.services.datasets import DatasetService
from finetuneflow.services.errors import UserError
from finetuneflow.services.jobs import JobService, ThrottledProgress
from finetuneflow.services.missing_step import missing_model
from finetuneflow.services.projects import ProjectService
from finetuneflow.services.settings import AppSettings
from finetuneflow.storage.tables import JobKind, JobStatus

if TYPE_CHECKING:
    from finetuneflow.services.context import AppContext

log = logging.getLogger(__name__)
RESUMABLE = (JobStatus.INTERRUPTED, JobStatus.CANCELLED, JobStatus.FAILED)


TINY_DATASET = 50
SMALL_EVAL_SET = 10  # fewer held-out examples give an evaluation loss that is mostly noise


class QLoRAWithoutCuda(UserError):
    """QLoRA was asked for on a computer without CUDA. Each interface adds what to do."""

    def __init__(self) -> None:
        super().__init__("QLoRA needs an NVIDIA GPU with CUDA (bitsandbytes loads the model in "
                         "4-bit there), and none was found on this computer.")


def eval_set_warning(eval_examples: int) -> str | None:
    if eval_examples == 0:
        return ("No evaluation set: the evaluation loss, early stopping and the best-checkpoint "
                "choice are off. Add examples so that some can be held out.")
    if eval_examples < SMALL_EVAL_SET:
        return (f"Only {eval_examples} evaluation example{'s' if eval_examples > 1 else ''}: "
                f"the evaluation loss will be noisy. Aim for at least {SMALL_EVAL_SET} "
                "(add examples; a tenth of them are held out).")
    return None


@dataclass(frozen=True)
class TrainingPlan:
    """What the Hardware step shows: the recommendation, the settings it leads to, warnings."""

    recommendation: Recommendation
    config: TrainingConfig
    warnings: list[str]
    examples: int
    train_examples: int = 0
    eval_examples: int = 0


@dataclass(frozen=True)
class PreparedRun:
    run_id: int
    job_id: int
    project_id: str
    job_path: Path
    log_path: Path
    events_path: Path
    job: TrainJob
    warnings: tuple[str, ...] = ()


def complete_checkpoints(folder: Path) -> list[Path]:
    """Checkpoints that a resume can use (a write is complete once trainer_state.json exists)."""
    found = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name.rsplit("-", 1)[-1]))


class TrainingService:
    def __init__(self, context: AppContext) -> None:
        self._context = context
        self._projects = ProjectService(context)
        self._jobs = JobService(context)

    # --- configuration --------------------------------------------------------------------------

    def config_for(self, project_ref: str, preset: str | None = None, method: str | None = None,
                   max_steps: int | None = None) -> TrainingConfig:
        """The project's saved settings (or a preset's: the app's default preset until it has
        some), with command-line overrides on top."""
        with self._context.transaction() as tx:
            saved = tx.projects.settings(project_ref).training
        overrides: dict[str, Any] = {}
        if method:
            overrides["method"] = method
        if max_steps is not None:
            overrides["max_steps"] = max_steps
        try:
            if preset or saved is None:
                preset = preset or AppSettings.load(self._context.home).default_preset
                return preset_config(preset, **overrides).validate()
            return saved.replace(**overrides).validate()
        except ValueError as error:
            raise UserError(str(error)) from None

    def save_config(self, project_ref: str, config: TrainingConfig) -> None:
        with self._context.transaction() as tx:
            tx.projects.save_training(project_ref, config)

    # --- planning -------------------------------------------------------------------------------

    def example_token_lengths(self, project_ref: str) -> list[int]:
        """How many tokens each usable example takes: the whole chat in the model's template."""
        project_id = self._projects.get(project_ref).id
        choice = ModelService(self._context).current(project_id)
        if choice is None:
            return []
        count = chat_token_counter(choice.folder)
        with self._context.transaction() as tx:
            chats = tx.examples.training_chats(project_id)
        return [count(chat) for chat in chats]

    def plan(self, project_ref: str, config: TrainingConfig, probe: ProbeEvent,
             lengths: list[int] | None = None) -> TrainingPlan:
        """Recommend LoRA/QLoRA, batch and sequence length for this machine, and say why.

        `lengths` are the examples' token counts, if already counted (it takes a while)."""
        choice = ModelService(self._context).current(project_ref)
        if choice is None:
            raise missing_model(self._projects.get(project_ref).id)
        model_config = json.loads((choice.folder / "config.json").read_text(encoding="utf-8"))
        if lengths is None:
            lengths = self.example_token_lengths(project_ref)
        recommendation = recommend(probe, model_config, DatasetStats.from_lengths(lengths),
                                   config)
        warnings = list(recommendation.warnings)
        if len(lengths) < TINY_DATASET:
            warnings.append(f"Only {len(lengths)} examples: the model will learn little. "
                            f"Aim for a few hundred (generate more, or add documents).")
        too_long = sum(length > recommendation.max_seq_length for length in lengths)
        if too_long:
            warnings.append(f"{too_long} examples are longer than the max sequence length "
                            f"({recommendation.max_seq_length} tokens) and will be truncated.")
        train_examples, eval_examples = self.split_counts(project_ref, len(lengths))
        if lengths and (eval_warning := eval_set_warning(eval_examples)):
            warnings.append(eval_warning)
        return TrainingPlan(recommendation, recommendation.apply(config), warnings, len(lengths),
                            train_examples, eval_examples)

    def split_counts(self, project_ref: str, examples: int | None = None) -> tuple[int, int]:
        """(train, eval) examples: exact when the dataset files are current, else the split's
        expected share (writing the files is left to the run)."""
        project_id = self._projects.get(project_ref).id
        datasets = DatasetService(self._context)
        if datasets.files_are_current(project_id):
            home = self._context.home
            return tuple(_line_count(home.project_file(project_id, "datasets", name))
                         for name in ("train.jsonl", "eval.jsonl"))  # type: ignore[return-value]
        if examples is None:
            with self._context.transaction() as tx:
                examples = len(tx.examples.training_chats(project_id))
        held_out = 0 if examples < 2 else max(1, round(examples * DEFAULT_EVAL_FRACTION))
        return examples - held_out, held_out

    def estimate_time(self, project_ref: str, config: TrainingConfig, *,
                      refresh: bool = False, cancel: CancelToken | None = None,
                      processes: int = 1) -> RunEstimate | None:
        """The run's time from a speed measured on this machine (the trainer child times a few
        steps of this model at these settings; cached). None when the model's weights are not
        downloaded yet: there is nothing to time."""
        from finetuneflow.services.hardware import HardwareService

        project_id = self._projects.get(project_ref).id
        choice = ModelService(self._context).current(project_id)
        if choice is None:
            raise UserError("Choose a base model first (the Model step).")
        if not choice.weights_ready:
            return None
        hardware = HardwareService(self._context)
        if (refresh or hardware.cached_speed(choice.folder, config) is None) and \
                self._jobs.alive(kind=JobKind.TRAIN):
            raise UserError("A training is running: timing steps now would slow it down and "
                            "give a wrong figure. The time is measured once it has finished.")
        with self._context.transaction() as tx:
            chats = tx.examples.training_chats(project_id)
        speed = hardware.measure_speed(
            choice.folder, config, chats, refresh=refresh, cancel=cancel)
        train_examples, eval_examples = self.split_counts(project_id, len(chats))
        return estimate_run(speed, config, train_examples, eval_examples, processes)

    def cached_time(self, project_ref: str, config: TrainingConfig,
                    processes: int = 1) -> RunEstimate | None:
        """The estimate from an earlier measurement only (never starts a child)."""
        from finetuneflow.services.hardware import HardwareService

        choice = ModelService(self._context).current(project_ref)
        if choice is None:
            return None
        speed = HardwareService(self._context).cached_speed(choice.folder, config)
        if speed is None:
            return None
        train_examples, eval_examples = self.split_counts(project_ref)
        return estimate_run(speed, config, train_examples, eval_examples, processes)

    # --- starting -------------------------------------------------------------------------------

    def prepare(self, project_ref: str, config: TrainingConfig,
                progress: ProgressSink = ignore_progress,
                cancel: CancelToken | None = None) -> PreparedRun:
        """A new run: dataset files and model weights in place (a download can take long:
        `cancel` stops it, keeping finished files), job file written."""
        project_id = self._projects.get(project_ref).id
        self._refuse_if_training()
        model_dir = self._model_folder(project_id, progress, cancel)
        self._refuse_qlora_without_cuda(config)
        train_path, eval_path = self._dataset_files(project_id)
        with self._context.transaction() as tx:
            run_id = tx.runs.add(project_id, config.to_dict()).id
        prepared = self._write_job(project_id, run_id, model_dir, train_path, eval_path,
                                   config.to_dict(), resume=False)
        warning = eval_set_warning(_line_count(eval_path) if eval_path else 0)
        return replace(prepared, warnings=(warning,)) if warning else prepared

    def _refuse_qlora_without_cuda(self, config: TrainingConfig) -> None:
        """Refused rather than switched to LoRA: the person asked for QLoRA by name, and LoRA
        needs several times the memory, so a silent switch could fail or surprise later."""
        if config.method != "qlora":
            return
        from finetuneflow.services.hardware import HardwareService

        if not HardwareService(self._context).probe().cuda_available:
            raise QLoRAWithoutCuda()

    def prepare_resume(self, project_ref: str) -> PreparedRun:
        """Continue the project's last unfinished run from its newest complete checkpoint."""
        project_id = self._projects.get(project_ref).id
        self._refuse_if_training()
        with self._context.transaction() as tx:
            run = tx.runs.latest(project_id)
            if run is None or run.status not in RESUMABLE:
                raise UserError("There is no stopped or interrupted run to resume: start a "
                                "new one.")
            run_id, config = run.id, dict(run.config)
        folder = self._run_dir(project_id, run_id)
        if not complete_checkpoints(folder / "checkpoints"):
            raise UserError("That run saved no complete checkpoint, so it cannot be resumed: "
                            "start a new run.")
        old = TrainJob.from_json((folder / "job.json").read_text(encoding="utf-8"))
        return self._write_job(project_id, run_id, Path(old.model_path), Path(old.train_path),
                               Path(old.eval_path) if old.eval_path else None, config,
                               resume=True)

    def prepare_attach(self, project_ref: str) -> PreparedRun:
        """A new job that follows the project's latest run again (one that trains on another
        machine while nothing here follows it); the run's files stay as they are."""
        self._refuse_if_training()
        prepared = self.latest_prepared(project_ref)
        with self._context.transaction() as tx:
            run = tx.runs.latest(prepared.project_id)
            if run is None or run.status not in (*RESUMABLE, JobStatus.RUNNING):
                raise UserError("The latest run has ended: there is nothing to reattach to.")
        job_id = self._jobs.create(prepared.project_id, JobKind.TRAIN,
                                   {"run_id": prepared.run_id, "attach": True})
        with self._context.transaction() as tx:
            tx.runs.attach_job(prepared.run_id, job_id)
        return replace(prepared, job_id=job_id)

    def latest_prepared(self, project_ref: str) -> PreparedRun:
        """The project's latest run as it was prepared (its job file); job_id is its job's."""
        project_id = self._projects.get(project_ref).id
        with self._context.transaction() as tx:
            run = tx.runs.latest(project_id)
            if run is None:
                raise UserError("This project has no run yet: start one with `finetuneflow "
                                "train`.")
            run_id, job_id = run.id, run.job_id
        folder = self._run_dir(project_id, run_id)
        job = TrainJob.from_json((folder / "job.json").read_text(encoding="utf-8"))
        return PreparedRun(run_id, job_id or 0, project_id, folder / "job.json",
                           self._context.home.project_file(project_id, "logs",
                                                           f"train-{run_id}.log"),
                           folder / "events.jsonl", job)

    def _refuse_if_training(self) -> None:
        if self._jobs.alive(kind=JobKind.TRAIN):
            raise UserError("Another training is running (one at a time): wait for it to "
                            "finish, or stop it first.")

    def _model_folder(self, project_id: str, progress: ProgressSink,
                      cancel: CancelToken | None) -> Path:
        models = ModelService(self._context)
        if models.current(project_id) is None:
            raise missing_model(project_id)
        return models.download_weights(project_id, progress, cancel).folder

    def _dataset_files(self, project_id: str) -> tuple[Path, Path | None]:
        datasets = DatasetService(self._context)
        home = self._context.home
        if not datasets.files_are_current(project_id):
            datasets.export(project_id)
        eval_path = home.project_file(project_id, "datasets", "eval.jsonl")
        has_eval = eval_path.exists() and eval_path.stat().st_size > 0
        return (home.project_file(project_id, "datasets", "train.jsonl"),
                eval_path if has_eval else None)

    def _run_dir(self, project_id: str, run_id: int) -> Path:
        return self._context.home.project_file(project_id, "artifacts", f"run-{run_id}")

    def _write_job(self, project_id: str, run_id: int, model_dir: Path, train_path: Path,
                   eval_path: Path | None, config: dict[str, Any], *,
                   resume: bool) -> PreparedRun:
        home = self._context.home
        folder = self._run_dir(project_id, run_id)
        job = TrainJob(
            run_id=str(run_id), model_path=str(model_dir), train_path=str(train_path),
            eval_path=str(eval_path) if eval_path else None,
            checkpoints_dir=str(folder / "checkpoints"),
            adapter_dir=str(home.project_file(project_id, "artifacts", f"adapter-{run_id}")),
            log_dir=str(folder), config=config, resume=resume)
        job_id = self._jobs.create(project_id, JobKind.TRAIN, {"run_id": run_id,
                                                               "resume": resume})
        with self._context.transaction() as tx:
            tx.runs.attach_job(run_id, job_id)
        return PreparedRun(run_id, job_id, project_id, job.write(folder / "job.json"),
                           home.project_file(project_id, "logs", f"train-{run_id}.log"),
                           folder / "events.jsonl", job)

    # --- reading back ---------------------------------------------------------------------------

    def suggested_config(self, project_ref: str) -> TrainingConfig | None:
        """The smaller settings proposed after the last run ran out of memory, if any."""
        run = self.latest_run(project_ref)
        suggested = run and run["status"] == "failed" and run["metrics"].get("suggested_config")
        return TrainingConfig.from_dict(suggested) if suggested else None

    def latest_run(self, project_ref: str) -> dict[str, Any] | None:
        project_id = self._projects.get(project_ref).id
        with self._context.transaction() as tx:
            run = tx.runs.latest(project_id)
            if run is None:
                return None
            return {"id": run.id, "status": run.status.value, "config": dict(run.config),
                    "metrics": dict(run.metrics), "artifacts": dict(run.artifacts)}

    def events(self, project_ref: str, run_id: int) -> list[Event]:
        """A run's stored events, to rebuild its chart after a restart."""
        path = self._run_dir(self._projects.get(project_ref).id, run_id) / "events.jsonl"
        if not path.exists():
            return []
        events = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                events.append(decode(line))
            except ProtocolError:
                continue  # a line cut by a crash
        return events


class RunRecorder:
    """Turns the child's stdout lines into stored events, job progress and the run's summary.

    The run's status is its job's: every status change goes through `JobService`."""

    def __init__(self, context: AppContext, prepared: PreparedRun) -> None:
        self._context = context
        self._prepared = prepared
        self._jobs = JobService(context)
        self._progress = ThrottledProgress(self._jobs, prepared.job_id)
        self.final: Event | None = None
        self._events: TextIO | None = None

    def begin(self) -> None:
        """Start the job and its run; refused while another training of the project runs."""
        self._jobs.start(self._prepared.job_id)
        self._prepared.events_path.parent.mkdir(parents=True, exist_ok=True)
        self._events = self._prepared.events_path.open("a", encoding="utf-8")

    def handle_line(self, line: str) -> Event | None:
        try:
            event = decode(line)
        except ProtocolError:
            log.warning("trainer printed a non-event line: %.200s", line)
            return None
        assert self._events is not None, "begin() first"
        self._events.write(line.rstrip("\n") + "\n")
        self._events.flush()
        self._record(event)
        return event

    def _record(self, event: Event) -> None:
        if isinstance(event, StatusEvent):
            self._progress(0.0, event.message)
        elif isinstance(event, StartedEvent):
            self._progress(event.start_step / max(event.total_steps, 1), "Training started")
        elif isinstance(event, LogEvent):
            loss = "" if event.loss is None else f", loss {event.loss:.4f}"
            self._progress(event.step / max(event.total_steps, 1),
                           f"Step {event.step} of {event.total_steps}{loss}")
        elif isinstance(event, FinishedEvent | StoppedEvent | ErrorEvent):
            self._finish(event)

    def _finish(self, event: FinishedEvent | StoppedEvent | ErrorEvent) -> None:
        self.final = event
        job_id = self._prepared.job_id
        if isinstance(event, FinishedEvent):
            self._record_outcome(*finished_outcome(event))
            self._jobs.succeed(job_id, {"run_id": self._prepared.run_id,
                                        "adapter": event.adapter_dir}, event.message or "Done")
        elif isinstance(event, StoppedEvent):
            resume = (" Resume continues from its last checkpoint." if event.checkpoint
                      else "")
            self._jobs.cancel(job_id, f"Stopped at step {event.step}.{resume}")
        else:
            self._jobs.fail(job_id, event.message + self._suggest_smaller(event))

    def _suggest_smaller(self, event: ErrorEvent) -> str:
        """After an out-of-memory error, store the recommender's next smaller settings."""
        if event.kind != OOM:
            return ""
        before = TrainingConfig.from_dict(self._prepared.job.config)
        after = next_smaller(before)
        if after is None:
            return " Nothing is left to shrink: choose a smaller model."
        self._record_outcome({"suggested_config": after.to_dict()}, {})
        return f" Suggested: {describe_change(before, after)}"

    def process_ended(self, exit_code: int | None, message: str | None = None, *,
                      failed: bool = False) -> None:
        """The child is gone (or out of reach). Without a final event the job is interrupted
        (it can be resumed), or failed when the caller knows the child died."""
        if self._events is not None:
            self._events.close()
        if self.final is not None:
            return
        message = message or (f"The training process ended unexpectedly (exit code "
                              f"{exit_code}). Resume continues from the last complete checkpoint.")
        (self._jobs.fail if failed else self._jobs.interrupt)(self._prepared.job_id, message)

    def _record_outcome(self, metrics: dict[str, Any], artifacts: dict[str, Any]) -> None:
        with self._context.transaction() as tx:
            tx.runs.record_outcome(self._prepared.run_id, metrics, artifacts)


def finished_outcome(event: FinishedEvent) -> tuple[dict[str, Any], dict[str, Any]]:
    """A finished run's (metrics, artifacts) as its record keeps them."""
    metrics = {k: v for k, v in asdict(event).items() if k != "adapter_dir"}
    return metrics, {"adapter": event.adapter_dir, "metrics": event.metrics_path}


def _line_count(path: Path) -> int:
    try:
        with path.open(encoding="utf-8") as lines:
            return sum(1 for line in lines if line.strip())
    except OSError:
        return 0
