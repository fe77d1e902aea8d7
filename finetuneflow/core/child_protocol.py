"""What the app's child processes and their parent (GUI, CLI, tests) say to each other.

Every child (the trainer, the document worker) stops after its current step on a `stop` line
on stdin. The rest of this module is the trainer's side:
The parent writes a job file (`TrainJob`, JSON) and starts `finetuneflow trainer run JOB.json`.
The child prints one JSON object per line on stdout (`encode`/`decode` the events below) and
human-readable logs on stderr. The parent stops it with a `stop` line on stdin. The export
(`trainer export`, an `ExportJob`) and the chat (`trainer chat`, a `ChatJob`) work the same way.

Floats that are NaN or infinite travel as null: strict JSON has no spelling for them.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from finetuneflow.core.training.config import TrainingConfig

STOP_COMMAND = "stop"  # a line on any child's stdin: finish the current step, then exit
# `trainer launch ACCELERATE_ARGS`: the child runs accelerate's launcher, which starts the ranks.
LAUNCH_COMMAND = "launch"

# Error kinds: what the user can do about them differs, so the GUI picks its wording by kind.
OOM = "oom"
DATASET = "dataset"
MODEL_NOT_FOUND = "model_not_found"
DISK_FULL = "disk_full"
STOPPED = "stopped"    # as an error kind: the parent had to kill a child that did not stop
CONFIG = "config"      # a setting or job file the trainer cannot use
INTERNAL = "internal"  # a bug: show the log file
ErrorKind = Literal["oom", "dataset", "model_not_found", "disk_full", "stopped", "config",
                    "internal"]
ERROR_KINDS: tuple[str, ...] = (OOM, DATASET, MODEL_NOT_FOUND, DISK_FULL, STOPPED, CONFIG,
                                INTERNAL)

# Why a run ended well: a finished event's reason (STOPPED: a stopped event, on request).
COMPLETED = "completed"
EARLY_STOPPING = "early_stopping"
DIVERGENCE = "divergence"


class ProtocolError(ValueError):
    """A line or job file that is not what the protocol defines."""


# --- events -----------------------------------------------------------------------------------

@dataclass
class StatusEvent:
    """A phase before or after the training loop (they can take a while on big models)."""

    TYPE: ClassVar[str] = "status"
    phase: str  # validating_data | loading_model | preparing_data | saving | evaluating
    message: str


@dataclass
class StartedEvent:
    """The training loop begins; `start_step` > 0 when resumed from a checkpoint."""

    TYPE: ClassVar[str] = "started"
    run_id: str
    total_steps: int
    start_step: int = 0
    resumed_from: str | None = None
    model: str = ""
    method: str = ""
    device: str = ""
    train_examples: int = 0
    eval_examples: int = 0
    trainable_params: int = 0
    total_params: int = 0
    loss_on: str = ""  # assistant | completion | all: which tokens the loss covers
    processes: int = 1  # training processes (one per GPU under `accelerate launch`)


@dataclass
class LogEvent:
    """Training progress every `logging_steps` steps."""

    TYPE: ClassVar[str] = "log"
    step: int
    total_steps: int
    loss: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    epoch: float | None = None
    tokens_seen: int | None = None
    tokens_per_second: float | None = None
    elapsed_s: float | None = None
    eta_s: float | None = None
    peak_memory_bytes: int | None = None  # GPU memory on CUDA, process RSS on a CPU


@dataclass
class EvalEvent:
    TYPE: ClassVar[str] = "eval"
    step: int
    eval_loss: float | None
    perplexity: float | None = None
    best_eval_loss: float | None = None


@dataclass
class CheckpointEvent:
    """A complete checkpoint (resumable) now exists at `path`."""

    TYPE: ClassVar[str] = "checkpoint"
    step: int
    path: str


@dataclass
class WarningEvent:
    """Something the user should know that does not stop the run."""

    TYPE: ClassVar[str] = "warning"
    code: str
    message: str


@dataclass
class FinishedEvent:
    """The adapter is saved; `reason` is completed, early_stopping or divergence."""

    TYPE: ClassVar[str] = "finished"
    step: int
    reason: str = COMPLETED
    message: str = ""
    adapter_dir: str = ""
    metrics_path: str = ""
    final_eval_loss: float | None = None
    perplexity: float | None = None
    train_loss: float | None = None
    runtime_s: float | None = None
    tokens_seen: int | None = None
    tokens_per_second: float | None = None
    peak_memory_bytes: int | None = None
    best_checkpoint: str | None = None


@dataclass
class StoppedEvent:
    """Stopped on request; a resume continues from `checkpoint` (None: nothing to resume)."""

    TYPE: ClassVar[str] = "stopped"
    step: int
    checkpoint: str | None = None
    message: str = ""


@dataclass
class ErrorEvent:
    """The run failed. `message` says what happened and what to do; `detail` is for the log."""

    TYPE: ClassVar[str] = "error"
    kind: str
    message: str
    step: int | None = None
    detail: str | None = None


@dataclass
class ProbeEvent:
    """What this computer can train on (`finetuneflow trainer probe`)."""

    TYPE: ClassVar[str] = "probe"
    # One dict per CUDA device: index, name, total_bytes, free_bytes, compute_capability "8.6",
    # bf16 (bool).
    gpus: list[dict[str, Any]] = field(default_factory=list)
    mps: bool = False
    cpu_model: str = ""
    cpu_cores: int = 0
    ram_total_bytes: int | None = None
    ram_free_bytes: int | None = None
    disk_path: str | None = None
    disk_free_bytes: int | None = None
    torch_version: str = ""
    cuda_version: str | None = None
    bitsandbytes: bool = False
    platform: str = ""

    @property
    def cuda_available(self) -> bool:
        return bool(self.gpus)


@dataclass
class SpeedEvent:
    """How fast this computer trains the job's model at its settings (`trainer speed`).

    step_s: the median seconds per optimiser step after warm-up; startup_s: from the parent
    starting the child to the first step (imports, tokenizer, model, trainer set-up)."""

    TYPE: ClassVar[str] = "speed"
    step_s: float
    startup_s: float
    device: str = ""
    steps_timed: int = 0


# Which model answers in `trainer chat` and in the export's before/after samples.
BASE = "base"
FINETUNED = "finetuned"
VARIANTS = (BASE, FINETUNED)


@dataclass
class TokenEvent:
    """A piece of an answer as it is generated (`trainer chat`)."""

    TYPE: ClassVar[str] = "token"
    text: str
    variant: str = FINETUNED


@dataclass
class AnswerEvent:
    """One whole answer (`trainer chat`), after its token events."""

    TYPE: ClassVar[str] = "answer"
    variant: str
    text: str
    new_tokens: int = 0
    stopped: bool = False  # cut short by a stop request


@dataclass
class QuestionAnswerEvent:
    """`trainer answer`: one variant's answer to one evaluation question, emitted as soon as
    its batch is done, so a stopped or killed run keeps every answer already sent."""

    TYPE: ClassVar[str] = "question_answer"
    question_id: int
    variant: str
    text: str
    new_tokens: int = 0


@dataclass
class EvalLossEvent:
    """`trainer answer`: one variant's loss on the evaluation split (None: no split given)."""

    TYPE: ClassVar[str] = "eval_loss"
    variant: str
    loss: float | None = None
    perplexity: float | None = None


@dataclass
class ExportedEvent:
    """`trainer export` is done: the before/after answers and, if asked for, the merged model.

    `merge_max_abs_diff`: the largest difference between the merged model's logits and the
    adapter's on a probe input (a check that the merge kept the fine-tuning)."""

    TYPE: ClassVar[str] = "exported"
    samples: list[dict[str, str]] = field(default_factory=list)  # {"base": …, "finetuned": …}
    merged_dir: str | None = None
    merge_max_abs_diff: float | None = None
    dtype: str = ""
    message: str = ""


Event = (StatusEvent | StartedEvent | LogEvent | EvalEvent | CheckpointEvent | WarningEvent
         | FinishedEvent | StoppedEvent | ErrorEvent | ProbeEvent | TokenEvent | AnswerEvent
         | ExportedEvent | SpeedEvent | QuestionAnswerEvent | EvalLossEvent)

EVENT_TYPES: dict[str, type[Event]] = {cls.TYPE: cls for cls in (
    StatusEvent, StartedEvent, LogEvent, EvalEvent, CheckpointEvent, WarningEvent,
    FinishedEvent, StoppedEvent, ErrorEvent, ProbeEvent, TokenEvent, AnswerEvent,
    ExportedEvent, SpeedEvent, QuestionAnswerEvent, EvalLossEvent)}


def _finite(value: Any) -> Any:
    """NaN/inf → None, recursively, so the line is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def encode(event: Event) -> str:
    """One JSON line (without the newline) with a "type" key."""
    payload = {"type": event.TYPE, **_finite(dataclasses.asdict(event))}
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def decode(line: str | bytes) -> Event:
    """Parse one line. Unknown keys are ignored; garbage, an unknown type or a missing required
    field raises ProtocolError."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    try:
        payload = json.loads(line)
    except ValueError as error:
        raise ProtocolError(f"not a JSON line: {line[:200]!r}") from error
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        raise ProtocolError(f"not an event (no \"type\"): {line[:200]!r}")
    cls = EVENT_TYPES.get(payload["type"])
    if cls is None:
        raise ProtocolError(f"unknown event type {payload['type']!r}")
    names = {item.name for item in dataclasses.fields(cls)}
    try:
        return cls(**{key: value for key, value in payload.items() if key in names})
    except TypeError as error:
        raise ProtocolError(f"bad {payload['type']} event: {error}") from error


# --- the job file -----------------------------------------------------------------------------

JOB_VERSION = 1


class JobFile:
    """A job file's JSON form, shared by the job dataclasses below (each has a `version`)."""

    # Set by @dataclass on each subclass; declared so that fields() and asdict() accept self.
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, ensure_ascii=False)

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_json(cls, text: str) -> Self:
        try:
            data = json.loads(text)
        except ValueError as error:
            raise ProtocolError(f"the job file is not JSON: {error}") from error
        if not isinstance(data, dict):
            raise ProtocolError("the job file must hold a JSON object")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        fields = {item.name: item for item in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        required = [name for name, item in fields.items()
                    if item.default is dataclasses.MISSING
                    and item.default_factory is dataclasses.MISSING]
        missing = [name for name in required if name not in data]
        if unknown or missing:
            problems = ([f"unknown keys: {', '.join(unknown)}"] if unknown else []) + (
                [f"missing keys: {', '.join(missing)}"] if missing else [])
            raise ProtocolError(f"bad job file ({'; '.join(problems)})")
        if data.get("version", JOB_VERSION) != JOB_VERSION:
            raise ProtocolError(f"job file version {data['version']} is not supported "
                                f"(this trainer reads version {JOB_VERSION})")
        return cls(**data)

    @classmethod
    def read(cls, path: Path) -> Self:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ProtocolError(f"cannot read the job file {path}: {error.strerror}") from error
        return cls.from_json(text)


@dataclass
class TrainJob(JobFile):
    """What to train, on what, and where the results go. Paths are absolute strings.

    checkpoints_dir: resumable checkpoints (checkpoint-N folders).
    adapter_dir: the final adapter and tokenizer.
    log_dir: metrics.json (the parent also writes the child's stderr log there).
    resume: continue from the newest complete checkpoint in checkpoints_dir, if any.
    """

    run_id: str
    model_path: str  # a local model folder or a Hub id already in the local cache
    train_path: str  # JSONL, one {"messages": [...]} per line
    eval_path: str | None
    checkpoints_dir: str
    adapter_dir: str
    log_dir: str
    config: dict[str, Any] = field(default_factory=dict)
    resume: bool = False
    version: int = JOB_VERSION

    @property
    def metrics_path(self) -> Path:
        return Path(self.log_dir) / "metrics.json"

    def training_config(self) -> TrainingConfig:
        """The validated settings (ValueError with a user-facing sentence if they are wrong)."""
        return TrainingConfig.from_dict(self.config).validate()


@dataclass
class ExportJob(JobFile):
    """`trainer export`: answer the sample prompts before and after, then merge (optional).

    adapter_dir: the exported adapter, with the tokenizer and chat template it was trained with.
    merged_dir: where the merged model goes (None: no merge).
    prompts: chats ending with the user's turn; each gets the base and the fine-tuned answer.
    """

    run_id: str
    model_path: str
    adapter_dir: str
    merged_dir: str | None
    prompts: list[list[dict[str, str]]] = field(default_factory=list)
    max_new_tokens: int = 128
    version: int = JOB_VERSION


@dataclass
class ChatJob(JobFile):
    """`trainer chat`: answer one chat with each variant (base, finetuned), token by token."""

    model_path: str
    adapter_dir: str
    messages: list[dict[str, str]]
    variants: list[str] = field(default_factory=lambda: [FINETUNED])
    temperature: float = 0.7  # 0: greedy
    max_new_tokens: int = 256
    seed: int = 0
    version: int = JOB_VERSION


@dataclass
class AnswerJob(JobFile):
    """`trainer answer`: greedy answers of each variant to each question, in batches.

    questions: [{"id": int, "messages": [{"role": …, "content": …}, …]}, …], the chat up to
    the answer; the parent leaves out the questions already answered (resume).
    eval_path: a JSONL file of evaluation examples in the training format; when set, each
    variant's loss on it is sent as an EvalLossEvent before the answers. It is computed as the
    training's evaluation computes it: give the run's max_seq_length and assistant_only_loss,
    and batch_size = the run's per_device_batch_size, and the fine-tuned loss is the run's
    final evaluation loss."""

    model_path: str
    adapter_dir: str
    questions: list[dict[str, Any]]
    variants: list[str] = field(default_factory=lambda: [BASE, FINETUNED])
    max_new_tokens: int = 256
    batch_size: int = 8
    eval_path: str | None = None
    seed: int = 0
    version: int = JOB_VERSION
    max_seq_length: int = 1024  # the loss covers each example's first max_seq_length tokens
    assistant_only_loss: str = "auto"  # the run's setting: "off" counts the prompts too


@dataclass
class SpeedJob(JobFile):
    """`trainer speed`: time `warmup_steps` + `timed_steps` optimiser steps of `model_path`
    with `config` on the examples in `train_path` (a sample of the real ones).

    spawned_at: the parent's clock (epoch seconds) just before it started the child."""

    model_path: str
    train_path: str
    work_dir: str  # scratch space for the trainer's output; removed afterwards
    config: dict[str, Any] = field(default_factory=dict)
    warmup_steps: int = 2
    timed_steps: int = 3
    spawned_at: float = 0.0
    version: int = JOB_VERSION


def probe_outcome(output: str) -> ProbeEvent | ErrorEvent | None:
    """The last probe or error event in a probe's output, read from the end; lines that are
    not events (a library printing a warning) are passed over."""
    for line in reversed(output.splitlines()):
        try:
            event = decode(line)
        except ProtocolError:
            continue
        if isinstance(event, ProbeEvent | ErrorEvent):
            return event
    return None
