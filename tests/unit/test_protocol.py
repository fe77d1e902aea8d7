"""The trainer ↔ parent protocol: events as JSON lines and the job file."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from finetuneflow.core import child_protocol as protocol
from finetuneflow.core.child_protocol import (
    EVENT_TYPES,
    AnswerEvent,
    ChatJob,
    CheckpointEvent,
    ErrorEvent,
    EvalEvent,
    EvalLossEvent,
    ExportedEvent,
    ExportJob,
    FinishedEvent,
    LogEvent,
    ProbeEvent,
    ProtocolError,
    QuestionAnswerEvent,
    SpeedEvent,
    StartedEvent,
    StatusEvent,
    StoppedEvent,
    TokenEvent,
    TrainJob,
    WarningEvent,
    decode,
    encode,
)

SAMPLES = [
    StatusEvent("loading_model", "Loading Qwen/Qwen2.5-0.5B-Instruct (LORA, cuda:0)…"),
    StartedEvent(run_id="r1", total_steps=120, start_step=40, resumed_from="/c/checkpoint-40",
                 model="m", method="lora", device="cpu", train_examples=480, eval_examples=20,
                 trainable_params=1234, total_params=5678, loss_on="assistant"),
    LogEvent(step=10, total_steps=120, loss=1.25, learning_rate=2e-4, grad_norm=0.5,
             epoch=0.25, tokens_seen=4096, tokens_per_second=812.5, elapsed_s=5.0, eta_s=55.0),
    EvalEvent(step=50, eval_loss=1.1, perplexity=math.exp(1.1), best_eval_loss=1.1),
    CheckpointEvent(step=50, path="/runs/r1/checkpoints/checkpoint-50"),
    WarningEvent("prompt_completion", "Only replies are learnt."),
    FinishedEvent(step=120, reason=protocol.EARLY_STOPPING, message="Stopped early.",
                  adapter_dir="/a", metrics_path="/m.json", final_eval_loss=1.0,
                  perplexity=math.e, train_loss=1.2, runtime_s=60.0, tokens_seen=10_000,
                  tokens_per_second=166.7, peak_memory_bytes=2**30, best_checkpoint="/c/50"),
    StoppedEvent(step=64, checkpoint="/runs/r1/checkpoints/checkpoint-64", message="Stopped."),
    ErrorEvent(kind=protocol.OOM, message="Out of GPU memory at step 3 (batch 8, sequence "
               "2048): try QLoRA, a smaller batch or a shorter sequence.", step=3,
               detail="Traceback …"),
    ProbeEvent(gpus=[{"index": 0, "name": "NVIDIA RTX 4090", "total_bytes": 24 * 2**30,
                      "free_bytes": 23 * 2**30, "compute_capability": "8.9", "bf16": True}],
               cpu_model="x86", cpu_cores=16, ram_total_bytes=64 * 2**30,
               ram_free_bytes=60 * 2**30, disk_path="/home", disk_free_bytes=10**12,
               torch_version="2.13.0", cuda_version="12.8", bitsandbytes=True,
               platform="Linux"),
    TokenEvent(" Paris", variant=protocol.BASE),
    AnswerEvent(variant=protocol.FINETUNED, text="Paris.", new_tokens=3, stopped=False),
    ExportedEvent(samples=[{"base": "fish", "finetuned": "4"}], merged_dir="/e/merged",
                  merge_max_abs_diff=2e-6, dtype="bfloat16", message="Exported."),
    SpeedEvent(step_s=0.62, startup_s=9.0, device="cpu", steps_timed=3),
    QuestionAnswerEvent(question_id=7, variant=protocol.BASE, text="Lyon.", new_tokens=2),
    EvalLossEvent(variant=protocol.FINETUNED, loss=1.25, perplexity=3.49),
]


def test_every_event_type_has_a_sample() -> None:
    assert {type(event).TYPE for event in SAMPLES} == set(EVENT_TYPES)
    assert set(EVENT_TYPES) == {"status", "started", "log", "eval", "checkpoint", "warning",
                                "finished", "stopped", "error", "probe", "token", "answer",
                                "exported", "speed", "question_answer", "eval_loss"}


@pytest.mark.parametrize("event", SAMPLES, ids=lambda event: type(event).TYPE)
def test_events_round_trip_as_one_json_line(event: object) -> None:
    line = encode(event)
    assert "\n" not in line and line.startswith('{"type":')
    assert json.loads(line)["type"] == type(event).TYPE
    assert decode(line) == event
    assert decode(line.encode("utf-8") + b"\n") == event  # bytes with the newline, as read


def test_a_log_line_looks_like_this() -> None:
    line = encode(LogEvent(step=10, total_steps=100, loss=1.5))
    assert line == ('{"type":"log","step":10,"total_steps":100,"loss":1.5,"learning_rate":null,'
                    '"grad_norm":null,"epoch":null,"tokens_seen":null,"tokens_per_second":null,'
                    '"elapsed_s":null,"eta_s":null,"peak_memory_bytes":null}')


def test_text_keeps_unicode_and_stays_on_one_line() -> None:
    line = encode(WarningEvent("note", "Données «ok»\nsecond line 敏捷"))
    assert "Données «ok»" in line and "\n" not in line
    assert decode(line).message == "Données «ok»\nsecond line 敏捷"


def test_non_finite_numbers_travel_as_null() -> None:
    line = encode(EvalEvent(step=5, eval_loss=math.nan, perplexity=math.inf))
    assert json.loads(line)["eval_loss"] is None and "NaN" not in line
    assert decode(line).perplexity is None


def test_decode_ignores_unknown_fields() -> None:
    event = decode('{"type":"checkpoint","step":4,"path":"/c/4","size_bytes":99,"new":{}}')
    assert event == CheckpointEvent(step=4, path="/c/4")


@pytest.mark.parametrize("line", [
    "", "not json", "[1, 2]", '"text"', "{}", '{"type": 3}', '{"type":"gossip"}',
    '{"type":"checkpoint","path":"/c"}',  # required step missing
    "{'loss': 1.2}",  # what transformers' PrinterCallback prints
])
def test_decode_rejects_garbage(line: str) -> None:
    with pytest.raises(ProtocolError):
        decode(line)


def test_error_kinds_cover_what_the_user_can_act_on() -> None:
    assert {"oom", "dataset", "model_not_found", "disk_full", "stopped", "internal"} <= set(
        protocol.ERROR_KINDS)


# --- the job file -----------------------------------------------------------------------------

def make_job(tmp_path: Path, **changes: object) -> TrainJob:
    fields = {"run_id": "run-1", "model_path": "/models/tiny", "train_path": "/d/train.jsonl",
              "eval_path": "/d/eval.jsonl", "checkpoints_dir": str(tmp_path / "checkpoints"),
              "adapter_dir": str(tmp_path / "adapter"), "log_dir": str(tmp_path / "logs"),
              "config": {"lora_r": 8, "max_steps": 20}, "resume": False}
    return TrainJob(**{**fields, **changes})


def test_a_job_file_round_trips(tmp_path: Path) -> None:
    job = make_job(tmp_path, resume=True)
    path = job.write(tmp_path / "jobs" / "job.json")
    assert TrainJob.read(path) == job
    assert json.loads(path.read_text())["version"] == protocol.JOB_VERSION
    assert job.metrics_path == tmp_path / "logs" / "metrics.json"
    config = job.training_config()
    assert config.lora_r == 8 and config.max_steps == 20


def test_a_bad_job_file_says_what_is_wrong(tmp_path: Path) -> None:
    data = dataclasses.asdict(make_job(tmp_path))
    with pytest.raises(ProtocolError, match="unknown keys: gpu"):
        TrainJob.from_dict({**data, "gpu": 1})
    with pytest.raises(ProtocolError, match="missing keys: model_path"):
        TrainJob.from_dict({key: value for key, value in data.items() if key != "model_path"})
    with pytest.raises(ProtocolError, match="version 9 is not supported"):
        TrainJob.from_dict({**data, "version": 9})
    with pytest.raises(ProtocolError, match="not JSON"):
        TrainJob.from_json("{")
    with pytest.raises(ProtocolError, match="cannot read the job file"):
        TrainJob.read(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="Unknown training setting: lr"):
        make_job(tmp_path, config={"lr": 1}).training_config()


def test_export_and_chat_job_files_round_trip(tmp_path: Path) -> None:
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    export = ExportJob(run_id="3", model_path="/m", adapter_dir="/e/adapter",
                       merged_dir=None, prompts=[chat], max_new_tokens=32)
    assert ExportJob.read(export.write(tmp_path / "export.json")) == export
    job = ChatJob(model_path="/m", adapter_dir="/e/adapter", messages=chat,
                  variants=[protocol.BASE, protocol.FINETUNED], temperature=0.0)
    assert ChatJob.read(job.write(tmp_path / "chat.json")) == job
    with pytest.raises(ProtocolError, match="missing keys: messages"):
        ChatJob.from_dict({"model_path": "/m", "adapter_dir": "/a"})


def test_a_probes_outcome_is_its_last_probe_or_error_event_among_other_output() -> None:
    probe = protocol.ProbeEvent(cpu_model="x86", cpu_cores=2)
    error = protocol.ErrorEvent(kind="import", message="no torch")
    noise = "UserWarning: something a library printed\n{not json\n"
    assert protocol.probe_outcome(noise + protocol.encode(probe) + "\n" + noise) == probe
    assert protocol.probe_outcome(protocol.encode(probe) + "\n" + protocol.encode(error)) == error
    assert protocol.probe_outcome(noise) is None
