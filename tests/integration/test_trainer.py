"""The real trainer child process on CPU with the tiny model.

Each run costs seconds (the child imports torch, transformers and trl), so a module-scoped
fixture makes one complete run that several tests read, and the interrupt/resume story is one
test with three runs.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from finetuneflow.core import child_protocol as protocol
from finetuneflow.core.child_protocol import (
    CheckpointEvent,
    ErrorEvent,
    EvalEvent,
    FinishedEvent,
    LogEvent,
    ProbeEvent,
    StartedEvent,
    StatusEvent,
    StoppedEvent,
    TrainJob,
    WarningEvent,
    decode,
)
from finetuneflow.core.training.estimate import lora_trainable_params
from finetuneflow.trainer.errors import RunContext, classify, model_not_found_message
from finetuneflow.trainer.stop import StopSignal
from tests.helpers.cli import REPO_ROOT, cli_env

RUN_TIMEOUT = 240
# The tiny model's matrices are too small to gain from threads; on a busy two-core machine
# spinning OpenMP threads only slow every step down.
THREADS = {"OMP_NUM_THREADS": "1"}

# Steps are milliseconds on the tiny model, so runs are short but cover every event.
FAST = {"per_device_batch_size": 4, "gradient_accumulation_steps": 1, "learning_rate": 1e-3,
        "max_seq_length": 128, "lora_r": 8, "lora_alpha": 16, "logging_steps": 2,
        "warmup_ratio": 0.0}


# --- helpers ----------------------------------------------------------------------------------

def conversation(question: str, answer: str) -> dict[str, Any]:
    return {"messages": [{"role": "system", "content": "Answer briefly."},
                         {"role": "user", "content": question},
                         {"role": "assistant", "content": answer}]}


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def arithmetic(count: int, offset: int = 0) -> list[dict[str, Any]]:
    return [conversation(f"What is {i} plus {i}?", f"{i} plus {i} is {2 * i}.")
            for i in range(offset, offset + count)]


def make_job(root: Path, model_dir: Path, config: dict[str, Any], *,
             train: list[dict[str, Any]] | None = None,
             evaluation: list[dict[str, Any]] | None = None, resume: bool = False) -> Path:
    datasets = root / "datasets"
    train_path = datasets / "train.jsonl"
    eval_path = datasets / "eval.jsonl"
    if not train_path.exists():
        write_jsonl(train_path, train if train is not None else arithmetic(48))
        write_jsonl(eval_path, evaluation if evaluation is not None else arithmetic(8, 100))
    job = TrainJob(run_id=root.name, model_path=str(model_dir), train_path=str(train_path),
                   eval_path=str(eval_path), checkpoints_dir=str(root / "checkpoints"),
                   adapter_dir=str(root / "adapter"), log_dir=str(root / "logs"),
                   config={**FAST, **config}, resume=resume)
    return job.write(root / f"job-{'resume' if resume else 'new'}.json")


@dataclass
class TrainerRun:
    """A trainer child whose stdout is read line by line, every line decoded."""

    process: subprocess.Popen[str]
    log_path: Path
    lines: list[str] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)

    def next_event(self) -> Any | None:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            return None
        self.lines.append(line)
        event = decode(line)  # raises on anything that is not a protocol event
        self.events.append(event)
        return event

    def until(self, matches: Callable[[Any], bool]) -> Any:
        while (event := self.next_event()) is not None:
            if matches(event):
                return event
        raise AssertionError(f"stream ended first; events: {self.types()}\n{self.log()}")

    def finish(self) -> int:
        while self.next_event() is not None:
            pass
        return self.process.wait(timeout=RUN_TIMEOUT)

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def types(self) -> list[str]:
        return [event.TYPE for event in self.events]

    def of(self, kind: type) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]


def start(home: Path, *args: str, **env: str) -> TrainerRun:
    log_path = home.parent / f"trainer-{len(list(home.parent.glob('trainer-*.log')))}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w", encoding="utf-8") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "finetuneflow.trainer", *args], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=log_file, text=True, encoding="utf-8",
            env=cli_env(home, HF_HUB_OFFLINE="1", **{**THREADS, **env}), cwd=REPO_ROOT)
    return TrainerRun(process, log_path)


def run_to_end(home: Path, *args: str, **env: str) -> tuple[TrainerRun, int]:
    run = start(home, *args, **env)
    code = run.finish()
    return run, code


# --- one complete run, read by several tests ---------------------------------------------------

@dataclass
class CompleteRun:
    root: Path
    run: TrainerRun
    code: int
    job: TrainJob


@pytest.fixture(scope="module")
def complete_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> CompleteRun:
    root = tmp_path_factory.mktemp("complete")
    job_path = make_job(root, tiny_model_dir, {"max_steps": 8, "eval_steps": 4,
                                               "save_steps": 4, "save_total_limit": 2})
    run, code = run_to_end(root / "home", "run", str(job_path))
    return CompleteRun(root, run, code, TrainJob.read(job_path))


@pytest.mark.slow
def test_a_run_reports_every_stage_in_order(complete_run: CompleteRun) -> None:
    run = complete_run.run
    assert complete_run.code == 0, run.log()
    types = run.types()
    assert types[0] == "status" and types[-1] == "finished", types
    for kind in ("started", "log", "eval", "checkpoint"):
        assert kind in types, types
    assert types.index("started") < types.index("log") < types.index("eval")
    assert [event.step for event in run.of(CheckpointEvent)] == [4, 8]
    logs = run.of(LogEvent)
    assert [event.step for event in logs] == [1, 2, 4, 6, 8]
    assert all(event.loss is not None and event.total_steps == 8 for event in logs)
    assert logs[-1].tokens_seen > logs[0].tokens_seen > 0


@pytest.mark.slow
def test_the_event_stream_is_clean_although_the_libraries_print(
        complete_run: CompleteRun) -> None:
    run = complete_run.run
    assert all(line.startswith("{") and line.endswith("}\n") for line in run.lines)
    # transformers' PrinterCallback printed each log dict; it went to the log, not the stream.
    assert "'loss':" in run.log_path.read_text(encoding="utf-8")


@pytest.mark.slow
def test_started_counts_parameters_as_the_estimate_does(complete_run: CompleteRun,
                                                        tiny_model_dir: Path) -> None:
    started = complete_run.run.of(StartedEvent)[0]
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert started.trainable_params == lora_trainable_params(config, 8, "all-linear")
    assert started.loss_on == "assistant" and started.method == "lora"
    assert started.train_examples == 48 and started.eval_examples == 8


@pytest.mark.slow
def test_finished_writes_metrics_and_a_reloadable_adapter(complete_run: CompleteRun,
                                                          tiny_model_dir: Path) -> None:
    finished = complete_run.run.of(FinishedEvent)[0]
    assert finished.reason == protocol.COMPLETED and finished.step == 8
    assert finished.final_eval_loss is not None and finished.perplexity is not None
    assert finished.tokens_seen and finished.tokens_per_second and finished.peak_memory_bytes
    metrics = json.loads(Path(finished.metrics_path).read_text())
    assert metrics["final_eval_loss"] == pytest.approx(finished.final_eval_loss)
    assert [entry["step"] for entry in metrics["loss_history"]] == [1, 2, 4, 6, 8]
    assert [entry["step"] for entry in metrics["eval_history"]] == [4, 8, 8]
    assert metrics["tokens_seen"] == finished.tokens_seen and metrics["runtime_s"] > 0

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = Path(finished.adapter_dir)
    assert (adapter / "adapter_model.safetensors").exists()
    tokenizer = AutoTokenizer.from_pretrained(adapter)  # saved beside the adapter
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(base, adapter)
    trained = [param for name, param in model.named_parameters() if "lora_B" in name]
    assert trained and any(param.abs().sum() > 0 for param in trained)  # B starts at zero
    with torch.no_grad():
        logits = model(**tokenizer("What is 2 plus 2?", return_tensors="pt")).logits
    assert torch.isfinite(logits).all()


# --- failures before the model loads --------------------------------------------------------

def test_a_malformed_dataset_fails_before_the_model_loads(tmp_path: Path,
                                                         tiny_model_dir: Path) -> None:
    good = json.dumps(conversation("Hi?", "Hello."))
    no_reply = json.dumps({"messages": [{"role": "user", "content": "Anyone?"}]})
    train = tmp_path / "datasets" / "train.jsonl"
    train.parent.mkdir(parents=True)
    train.write_text(f"{good}\n{{not json\n{no_reply}\n\n{good}\n", encoding="utf-8")
    job = make_job(tmp_path, tiny_model_dir, {"max_steps": 2})
    run, code = run_to_end(tmp_path / "home", "run", str(job))
    assert code == 1
    error = run.events[-1]
    assert isinstance(error, ErrorEvent) and error.kind == protocol.DATASET
    assert "line 2: not valid JSON" in error.message and "line 3: no assistant" in error.message
    phases = [event.phase for event in run.of(StatusEvent)]
    assert "loading_model" not in phases
    assert not (tmp_path / "checkpoints").exists()


def test_an_empty_dataset_and_a_bad_setting_are_explained(tmp_path: Path,
                                                         tiny_model_dir: Path) -> None:
    empty = make_job(tmp_path / "empty", tiny_model_dir, {"max_steps": 2}, train=[])
    run, code = run_to_end(tmp_path / "home", "run", str(empty))
    assert code == 1 and run.events[-1].kind == protocol.DATASET
    assert "is empty" in run.events[-1].message

    bad = make_job(tmp_path / "bad", tiny_model_dir, {"learning_rate": 0.5})
    run, code = run_to_end(tmp_path / "home", "run", str(bad))
    assert code == 1 and run.events[-1].kind == protocol.CONFIG
    assert "Learning rate must be between 1e-6 and 1e-2" in run.events[-1].message


def test_only_rank_zero_reports(tmp_path: Path, tiny_model_dir: Path) -> None:
    empty = make_job(tmp_path, tiny_model_dir, {"max_steps": 2}, train=[])
    run, code = run_to_end(tmp_path / "home", "run", str(empty), RANK="1", LOCAL_RANK="1")
    assert code == 1 and run.events == []


def test_a_missing_model_is_reported_as_such(tmp_path: Path) -> None:
    job = make_job(tmp_path, tmp_path / "no-such-model", {"max_steps": 2})
    run, code = run_to_end(tmp_path / "home", "run", str(job))
    assert code == 1
    assert run.events[-1].kind == protocol.MODEL_NOT_FOUND, run.log()
    assert "does not exist" in run.events[-1].message
    hub_message = model_not_found_message("someone/some-model")
    assert "not on this computer" in hub_message and "Connect to the internet" in hub_message


# --- stop, crash and resume -----------------------------------------------------------------

@pytest.mark.slow
def test_kill_then_stop_then_resume_reaches_the_planned_end(tmp_path: Path,
                                                            tiny_model_dir: Path) -> None:
    config = {"max_steps": 24, "eval_steps": 8, "save_steps": 4, "save_total_limit": 3,
              "early_stopping_patience": 0, "divergence_factor": 0.0}
    home = tmp_path / "home"
    first = start(home, "run", str(make_job(tmp_path, tiny_model_dir, config)))
    first.until(lambda event: isinstance(event, CheckpointEvent))
    first.process.kill()  # kill -9: no chance to clean up
    first.process.wait(timeout=30)
    # A crash while saving leaves a checkpoint without trainer_state.json.
    broken = tmp_path / "checkpoints" / "checkpoint-22"
    broken.mkdir()
    (broken / "adapter_model.safetensors").write_bytes(b"partial")
    complete = sorted(int(path.name.split("-")[1]) for path in
                      (tmp_path / "checkpoints").glob("checkpoint-*")
                      if (path / "trainer_state.json").exists())

    resume_job = make_job(tmp_path, tiny_model_dir, config, resume=True)
    second = start(home, "run", str(resume_job))
    started = second.until(lambda event: isinstance(event, StartedEvent))
    assert started.start_step == complete[-1] and started.resumed_from.endswith(
        f"checkpoint-{complete[-1]}")
    assert (tmp_path / "checkpoints" / "incomplete-checkpoint-22").is_dir()
    second.until(lambda event: isinstance(event, LogEvent))
    second.send("stop")
    assert second.finish() == 0, second.log()
    stopped = second.events[-1]
    assert isinstance(stopped, StoppedEvent), second.types()
    assert stopped.step < 24 and stopped.checkpoint.endswith(f"checkpoint-{stopped.step}")
    assert (Path(stopped.checkpoint) / "trainer_state.json").exists()

    third, code = run_to_end(home, "run", str(resume_job))
    assert code == 0, third.log()
    assert third.of(StartedEvent)[0].start_step == stopped.step
    finished = third.events[-1]
    assert isinstance(finished, FinishedEvent) and finished.step == 24
    history = json.loads(Path(finished.metrics_path).read_text())["loss_history"]
    assert history[-1]["step"] == 24 and history[0]["step"] == 1  # across all three runs
    # Tokens add up over the three processes: about 24 steps' worth, not just the last one's.
    per_step = first.of(LogEvent)[-1].tokens_seen / first.of(LogEvent)[-1].step
    assert finished.tokens_seen == pytest.approx(24 * per_step, rel=0.35)


def test_a_stop_request_comes_from_stdin_or_sigterm() -> None:
    import io

    from_stdin = StopSignal()
    from_stdin._read_commands(io.StringIO("status\nSTOP\n"))
    assert from_stdin.requested and from_stdin.source == "stdin"

    if not hasattr(signal, "SIGTERM") or sys.platform == "win32":
        return
    previous = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        from_signal = StopSignal()
        from_signal.listen(stdin=io.StringIO(""))
        os.kill(os.getpid(), signal.SIGTERM)
        threading.Event().wait(0.05)  # the handler runs between bytecodes of this thread
        assert from_signal.requested and from_signal.source == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):  # Ctrl-C once more: abort now
            os.kill(os.getpid(), signal.SIGINT)
            threading.Event().wait(0.05)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


# --- early stopping -------------------------------------------------------------------------

@pytest.mark.slow
def test_early_stopping_fires_when_the_eval_loss_stops_improving(tmp_path: Path,
                                                                 tiny_model_dir: Path) -> None:
    # Training teaches one fixed reply; the evaluation set wants a different one in another
    # script, so the evaluation loss soon stops improving while the training loss falls.
    learnt, other = "The quick brown fox jumps over the lazy dog.", "敏捷的棕色狐狸跳过了懒狗。"
    train = [conversation(f"Say the word {i % 4}.", learnt) for i in range(32)]
    evaluation = [conversation(f"Say the word {i}.", other * 2) for i in range(4)]
    config = {"max_steps": 80, "per_device_batch_size": 8, "eval_steps": 2, "save_steps": 2,
              "learning_rate": 1e-2, "lr_scheduler": "constant", "lora_dropout": 0.0,
              "early_stopping_patience": 2, "divergence_factor": 0.0}
    job = make_job(tmp_path, tiny_model_dir, config, train=train, evaluation=evaluation)
    run, code = run_to_end(tmp_path / "home", "run", str(job))
    assert code == 0, run.log()
    finished = run.events[-1]
    assert isinstance(finished, FinishedEvent) and finished.reason == protocol.EARLY_STOPPING
    assert finished.step < 80 and "not improved for 2 evaluations" in finished.message
    evals = [event.eval_loss for event in run.of(EvalEvent)]
    # The adapter kept is the best one: the final evaluation matches the best loss.
    assert finished.final_eval_loss == pytest.approx(min(evals[:-1]))


# --- QLoRA and templates without generation markers -----------------------------------------

@pytest.fixture
def model_without_markers(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """The tiny model with a ChatML template that cannot mark the assistant's part."""
    copy = tmp_path / "model-plain-template"
    shutil.copytree(tiny_model_dir, copy)
    template = (copy / "chat_template.jinja").read_text(encoding="utf-8")
    plain = template.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    assert plain != template
    (copy / "chat_template.jinja").write_text(plain, encoding="utf-8")
    return copy


@pytest.mark.slow
def test_qlora_trains_on_cpu_and_plain_templates_train_only_completions(
        tmp_path: Path, model_without_markers: Path) -> None:
    config = {"method": "qlora", "max_steps": 2, "eval_steps": 2, "save_steps": 2,
              "logging_steps": 1}
    job = make_job(tmp_path, model_without_markers, config)
    run, code = run_to_end(tmp_path / "home", "run", str(job))
    assert code == 0, run.log()
    warnings = {event.code: event.message for event in run.of(WarningEvent)}
    assert "Only replies are learnt" in warnings["prompt_completion"]
    assert "qlora_without_cuda" in warnings
    started = run.of(StartedEvent)[0]
    assert started.method == "qlora" and started.loss_on == "completion"
    finished = run.events[-1]
    assert isinstance(finished, FinishedEvent) and finished.step == 2
    assert (Path(finished.adapter_dir) / "adapter_model.safetensors").exists()


# --- probe ----------------------------------------------------------------------------------

def test_probe_prints_one_valid_json_object(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "finetuneflow.trainer", "probe", "--home", str(tmp_path / "new")],
        capture_output=True, text=True, env=cli_env(tmp_path / "home"), cwd=REPO_ROOT,
        timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    report = decode(lines[0])
    assert isinstance(report, ProbeEvent)
    assert json.loads(lines[0])["type"] == "probe"
    assert report.cpu_cores >= 1 and report.ram_total_bytes and report.ram_free_bytes
    assert report.disk_free_bytes and report.disk_free_bytes > 0
    assert report.torch_version and isinstance(report.gpus, list)
    for gpu in report.gpus:
        assert {"name", "total_bytes", "free_bytes", "compute_capability", "bf16"} <= set(gpu)


# --- error classification -------------------------------------------------------------------

def test_out_of_memory_names_the_step_and_the_remedies() -> None:
    class OutOfMemoryError(RuntimeError):  # torch.cuda.OutOfMemoryError, by name
        pass

    context = RunContext(step=12, batch=8, seq_len=2048, device="cuda")
    kind, message = classify(OutOfMemoryError("CUDA out of memory. Tried to allocate"), context)
    assert kind == protocol.OOM
    assert message == ("Out of GPU memory at step 12 (batch 8, sequence 2048): try QLoRA, a "
                       "smaller batch or a shorter sequence.")


def test_disk_full_is_recognised_even_when_wrapped() -> None:
    context = RunContext(output_dir="/data/run/checkpoints")
    direct = OSError(errno.ENOSPC, "No space left on device")
    assert classify(direct, context)[0] == protocol.DISK_FULL
    try:
        try:
            raise direct
        except OSError as error:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0") from error
    except RuntimeError as wrapped:
        kind, message = classify(wrapped, context)
    assert kind == protocol.DISK_FULL and "/data/run/checkpoints" in message
    assert classify(ValueError("boom"), context)[0] == protocol.INTERNAL


def test_when_the_app_dies_the_run_stops_with_a_checkpoint(tmp_path: Path,
                                                          tiny_model_dir: Path) -> None:
    """The reader of the events goes away (the app was killed): the child notices at its next
    event, saves a checkpoint at the current step and ends instead of training on."""
    config = {"max_steps": 400, "save_steps": 1000, "eval_steps": 1000, "logging_steps": 1,
              "early_stopping_patience": 0}
    run = start(tmp_path / "home", "run", str(make_job(tmp_path, tiny_model_dir, config)))
    run.until(lambda event: isinstance(event, LogEvent))
    assert run.process.stdout is not None
    run.process.stdout.close()  # what the app's death does to the pipe
    assert run.process.wait(timeout=RUN_TIMEOUT) == 0, run.log()
    saved = [path for path in (tmp_path / "checkpoints").glob("checkpoint-*")
             if (path / "trainer_state.json").exists()]
    assert len(saved) == 1 and int(saved[0].name.split("-")[1]) < 400
    assert "the app reading the events is gone" in run.log()
