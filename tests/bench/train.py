"""Training benchmark (run by hand, not collected): python tests/bench/train.py [--quick]

1. Overhead: our trainer child's step time ÷ a plain TRL SFTTrainer script given the same
   model, data and settings, both measured after warm-up in the same run (runs alternate, the
   median ratio is reported); the per-step losses must agree within 1e-4. Models: the tiny test
   model and a random-init model of SmolLM2-135M's shape.
2. Packing: tokens/s with packing on ÷ off, on a dataset with skewed lengths.
3. Memory: the estimate (device="cpu") ÷ the measured peak RSS of the trainer child.

Target for 1: ≤ 1.05. Everything runs on the CPU, offline. Both sides get the same number of
torch threads (--threads, default 1): on a shared machine, OpenMP threads that wait for a
descheduled sibling turn a 15 ms step into a second and drown the difference being measured.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from finetuneflow.core.child_protocol import (  # noqa: E402
    FinishedEvent,
    LogEvent,
    TrainJob,
    decode,
)
from finetuneflow.core.training.config import TrainingConfig  # noqa: E402
from finetuneflow.core.training.estimate import estimate_memory  # noqa: E402
from finetuneflow.core.units import format_bytes  # noqa: E402
from tests.helpers.tiny_model import _cache_root, cached_tiny_model  # noqa: E402

WARMUP_STEPS = 3
ROW_PREFIX = "BENCH "
SMOL_SHAPE = {"vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
              "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
              "max_position_embeddings": 8192, "tie_word_embeddings": True,
              "rms_norm_eps": 1e-5}


# --- models and data --------------------------------------------------------------------------

def smol_shaped_model() -> Path:
    """A random-init Llama with SmolLM2-135M's shape and the tiny model's tokenizer (cached)."""
    final = _cache_root() / "smollm2-135m-shape-v1"
    if (final / "config.json").exists():
        return final
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tiny = cached_tiny_model()
    tiny_config = json.loads((tiny / "config.json").read_text())
    torch.manual_seed(0)
    config = LlamaConfig(**SMOL_SHAPE, pad_token_id=tiny_config["pad_token_id"],
                         eos_token_id=tiny_config["eos_token_id"], bos_token_id=None)
    staging = Path(tempfile.mkdtemp(dir=final.parent))
    LlamaForCausalLM(config).save_pretrained(staging)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(tiny / name, staging / name)
    staging.rename(final)
    return final


def conversation(question: str, answer: str) -> dict[str, Any]:
    return {"messages": [{"role": "system", "content": "Answer briefly."},
                         {"role": "user", "content": question},
                         {"role": "assistant", "content": answer}]}


def uniform_data(count: int) -> list[dict[str, Any]]:
    """About 60 tokens an example, like STACK.md's measurements."""
    return [conversation(f"What is {i} plus {i}?", f"{i} plus {i} is {2 * i}. " * 2)
            for i in range(count)]


def skewed_data(count: int) -> list[dict[str, Any]]:
    """Nine short examples for one long one: where padding wastes most."""
    rng = random.Random(0)
    sentence = "LoRA trains small low-rank matrices while the base weights stay frozen. "
    return [conversation(f"Question {i}?", sentence * (12 if rng.random() < 0.1 else 1))
            for i in range(count)]


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


# --- runs -------------------------------------------------------------------------------------

@dataclass
class RunResult:
    losses: dict[int, float]
    times: dict[int, float]  # step → seconds since the loop started, at its log
    tokens: dict[int, int] | None = None  # step → tokens trained on so far
    peak_rss: int | None = None

    def step_time(self, warmup: int = WARMUP_STEPS) -> float:
        """The median step after warm-up: robust to a neighbour's burst on a shared machine."""
        steps = sorted(step for step in self.times if step > warmup)
        return statistics.median(self.times[step] - self.times[step - 1] for step in steps)

    def tokens_per_second(self, warmup: int) -> float:
        assert self.tokens is not None
        last = max(self.times)
        return (self.tokens[last] - self.tokens[warmup]) / (self.times[last] - self.times[warmup])


def make_job(folder: Path, model: Path, data: Path, config: dict[str, Any]) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    job = TrainJob(run_id=folder.name, model_path=str(model), train_path=str(data),
                   eval_path=None, checkpoints_dir=str(folder / "checkpoints"),
                   adapter_dir=str(folder / "adapter"), log_dir=str(folder / "logs"),
                   config=config)
    return job.write(folder / "job.json")


def child_env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1"}


def start_ours(job: Path) -> subprocess.Popen[str]:
    return _start([sys.executable, "-m", "finetuneflow.trainer", "run", str(job)], job)


def start_baseline(job: Path) -> subprocess.Popen[str]:
    return _start([sys.executable, __file__, "--baseline", str(job)], job)


def _start(command: list[str], job: Path) -> subprocess.Popen[str]:
    # stderr to a file: a full pipe would stall a child while the other one is being read.
    log = (job.parent / "stderr.log").open("w", encoding="utf-8")
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True,
                            cwd=REPO_ROOT, env=child_env())


def _log_of(process: subprocess.Popen[str]) -> Path:
    return Path(str(process.args[-1])).parent / "stderr.log"  # the job file's folder


def collect_ours(process: subprocess.Popen[str]) -> RunResult:
    stdout, _ = process.communicate()
    events = [decode(line) for line in stdout.splitlines()]
    finished = [event for event in events if isinstance(event, FinishedEvent)]
    if process.returncode or not finished:
        raise RuntimeError(f"trainer failed: {events[-1:]}; see {_log_of(process)}")
    logs = [event for event in events if isinstance(event, LogEvent)]
    return RunResult({event.step: event.loss for event in logs},
                     {event.step: event.elapsed_s for event in logs},
                     {event.step: event.tokens_seen for event in logs},
                     finished[0].peak_memory_bytes)


def collect_baseline(process: subprocess.Popen[str]) -> RunResult:
    stdout, _ = process.communicate()
    if process.returncode:
        raise RuntimeError(f"baseline failed; see {_log_of(process)}")
    rows = [json.loads(line.removeprefix(ROW_PREFIX)) for line in stdout.splitlines()
            if line.startswith(ROW_PREFIX)]
    return RunResult({row["step"]: row["loss"] for row in rows},
                     {row["step"]: row["t"] for row in rows})


def run_ours(job: Path) -> RunResult:
    return collect_ours(start_ours(job))


def baseline_main(job_path: Path) -> None:
    """The plain TRL script: the same settings as the trainer, nothing of ours."""
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    job = json.loads(job_path.read_text())
    config = TrainingConfig.from_dict(job["config"])
    rows: list[dict[str, float]] = []

    class Clock(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.start = time.monotonic()

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None,
                   **kwargs: Any) -> None:
            if logs and "loss" in logs:
                rows.append({"step": state.global_step, "loss": logs["loss"],
                             "t": time.monotonic() - self.start})

    tokenizer = AutoTokenizer.from_pretrained(job["model_path"])
    model = AutoModelForCausalLM.from_pretrained(job["model_path"], dtype=torch.float32)
    dataset = load_dataset("json", data_files=job["train_path"], split="train")
    args = SFTConfig(
        output_dir=job["checkpoints_dir"], max_steps=config.max_steps,
        per_device_train_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate, lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio, max_length=config.max_seq_length,
        packing=config.packing, activation_checkpointing=config.activation_checkpointing,
        assistant_only_loss=True, logging_steps=config.logging_steps, logging_first_step=True,
        save_strategy="steps", save_steps=config.save_steps, seed=config.seed,
        report_to="none", disable_tqdm=True, use_cpu=True, bf16=False)
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha,
                      lora_dropout=config.lora_dropout, target_modules=config.target_modules,
                      task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset,
                         processing_class=tokenizer, peft_config=lora, callbacks=[Clock()])
    trainer.train()
    sys.stdout.flush()
    for row in rows:
        print(ROW_PREFIX + json.dumps(row))  # TRL prints its own log dicts to stdout too


# --- the three measurements -------------------------------------------------------------------

def bench_config(steps: int, **changes: Any) -> dict[str, Any]:
    base = {"max_steps": steps, "per_device_batch_size": 4, "gradient_accumulation_steps": 1,
            "learning_rate": 2e-4, "max_seq_length": 512, "lora_r": 8, "lora_alpha": 16,
            "logging_steps": 1, "eval_steps": steps, "save_steps": steps,
            "early_stopping_patience": 0, "warmup_ratio": 0.0, "lr_scheduler": "constant"}
    return {**base, **changes}


def overhead(name: str, model: Path, work: Path, steps: int, repeats: int,
             concurrent: bool) -> dict[str, Any]:
    """Our trainer against the plain script, side by side (or alternating with --sequential):
    either way both see the same machine, and the median ratio damps the rest."""
    data = write_jsonl(work / f"{name}-uniform.jsonl", uniform_data(steps * 4))
    ratios, ours_times, base_times, peaks, worst_loss_gap = [], [], [], [], 0.0
    for _ in range(repeats):
        config = bench_config(steps)
        ours_job = make_job(work / f"{name}-overhead-ours", model, data, config)
        base_job = make_job(work / f"{name}-overhead-baseline", model, data, config)
        if concurrent:
            ours_process, base_process = start_ours(ours_job), start_baseline(base_job)
            ours, base = collect_ours(ours_process), collect_baseline(base_process)
        else:
            ours = collect_ours(start_ours(ours_job))
            base = collect_baseline(start_baseline(base_job))
        ours_times.append(ours.step_time())
        base_times.append(base.step_time())
        ratios.append(ours_times[-1] / base_times[-1])
        peaks.append(ours.peak_rss or 0)
        common = sorted(set(ours.losses) & set(base.losses))
        assert len(common) == steps, (sorted(ours.losses), sorted(base.losses))
        worst_loss_gap = max(worst_loss_gap,
                             max(abs(ours.losses[s] - base.losses[s]) for s in common))
    return {"model": name, "ours_step_s": statistics.median(ours_times),
            "baseline_step_s": statistics.median(base_times),
            "ratio_median": statistics.median(ratios), "ratios": ratios,
            "max_loss_gap": worst_loss_gap, "peak_rss_bytes": max(peaks),
            "config": bench_config(steps)}


def callback_cost(calls: int = 5000) -> float:
    """Seconds our callbacks add to one logged training step, measured in-process: the part of
    the overhead that a busy machine cannot blur."""
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from finetuneflow.core.child_protocol import StartedEvent
    from finetuneflow.core.training.stopping import EvalWatch
    from finetuneflow.trainer.callbacks import (
        GuardCallback,
        Outcome,
        Progress,
        ProtocolCallback,
        StopCallback,
    )
    from finetuneflow.trainer.channel import EventChannel
    from finetuneflow.trainer.stop import StopSignal

    with open(os.devnull, "w", encoding="utf-8") as sink, tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, use_cpu=True, report_to="none")
        state, control, outcome = TrainerState(max_steps=calls), TrainerControl(), Outcome()
        callbacks = [ProtocolCallback(EventChannel(sink), StartedEvent("bench", calls),
                                      Progress()),
                     GuardCallback(EvalWatch(3, 0.0, 3.0), outcome),
                     StopCallback(StopSignal(), outcome)]
        for callback in callbacks:
            callback.on_train_begin(args, state, control)
        logs = {"loss": 1.5, "grad_norm": 0.4, "learning_rate": 2e-4, "epoch": 0.5,
                "num_tokens": 1000.0}
        started = time.perf_counter()
        for step in range(1, calls + 1):
            state.global_step = step
            for callback in callbacks:
                callback.on_step_end(args, state, control)
                callback.on_log(args, state, control, logs=logs)
        return (time.perf_counter() - started) / calls


def packing(name: str, model: Path, work: Path, steps: int) -> dict[str, Any]:
    """The same batch size and sequence length with packing off and on. A packed step holds
    far more tokens, so it runs fewer steps; the rate is measured after the first step."""
    data = write_jsonl(work / f"{name}-skewed.jsonl", skewed_data(steps * 8))
    rates = {}
    for packed, run_steps in ((False, steps), (True, max(3, steps // 4))):
        config = bench_config(run_steps, packing=packed, max_seq_length=256)
        result = run_ours(make_job(work / f"{name}-packing-{packed}", model, data, config))
        rates[packed] = result.tokens_per_second(warmup=1)
    return {"model": name, "tokens_per_s_off": rates[False], "tokens_per_s_on": rates[True],
            "ratio": rates[True] / rates[False]}


def longest_example(model: Path, data: Path) -> int:
    """Tokens in the longest example: batches are padded to their longest, not to the limit."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    records = [json.loads(line) for line in data.read_text().splitlines()]
    texts = [tokenizer.apply_chat_template(record["messages"], tokenize=False)
             for record in records]
    return max(len(tokenizer(text)["input_ids"]) for text in texts)


def memory(name: str, model: Path, measured: dict[str, Any], data: Path) -> dict[str, Any]:
    """The estimate for the overhead runs' settings, at their real padded length, against
    their peak RSS."""
    model_config = json.loads((model / "config.json").read_text())
    config = TrainingConfig.from_dict(measured["config"])
    config = config.replace(max_seq_length=min(config.max_seq_length,
                                               longest_example(model, data)))
    estimate = estimate_memory(model_config, config, device="cpu")
    peak = measured["peak_rss_bytes"]
    return {"model": name, "estimate_bytes": estimate.total, "peak_rss_bytes": peak,
            "ratio": estimate.total / peak if peak else None, "breakdown": estimate.summary(),
            "seq_len": config.max_seq_length}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="tiny model only")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--sequential", action="store_true",
                        help="alternate the two sides instead of running them side by side")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by every run
    if args.baseline:
        baseline_main(args.baseline)
        return 0
    # Enough steps that the two sides' measured windows overlap when run side by side.
    models = [("tiny", cached_tiny_model(), 200, args.repeats)]
    if not args.quick:
        models.append(("smollm2-135m-shape", smol_shaped_model(), 12, max(1, args.repeats - 1)))
    results: dict[str, Any] = {"overhead": [], "packing": [], "memory": []}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as folder:
        work = Path(folder)
        for name, model, steps, repeats in models:
            measured = overhead(name, model, work, steps, repeats, not args.sequential)
            results["overhead"].append(measured)
            results["memory"].append(
                memory(name, model, measured, work / f"{name}-uniform.jsonl"))
            results["packing"].append(packing(name, model, work, steps))
    results["callback_cost_s"] = callback_cost()
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def report(results: dict[str, Any]) -> None:
    print("\nOverhead (our trainer ÷ plain TRL, median step time after warm-up; target ≤ 1.05)")
    for row in results["overhead"]:
        print(f"  {row['model']:<20} ours {row['ours_step_s'] * 1000:8.1f} ms  "
              f"TRL {row['baseline_step_s'] * 1000:8.1f} ms  ratio {row['ratio_median']:.3f} "
              f"(runs {', '.join(f'{r:.3f}' for r in row['ratios'])}; of the medians "
              f"{row['ours_step_s'] / row['baseline_step_s']:.3f})  "
              f"max |Δloss| {row['max_loss_gap']:.2e}")
    cost = results["callback_cost_s"]
    print(f"  our callbacks add {cost * 1e6:.0f} µs per logged step (timed in-process, "
          "immune to the machine's noise): " + ", ".join(
              f"{100 * cost / row['baseline_step_s']:.2g}% of a {row['model']} step"
              for row in results["overhead"]))
    print("\nPacking on ÷ off (tokens/s after the first step, skewed lengths)")
    for row in results["packing"]:
        print(f"  {row['model']:<20} off {row['tokens_per_s_off']:9.0f}  "
              f"on {row['tokens_per_s_on']:9.0f}  ratio {row['ratio']:.2f}")
    print("\nMemory: estimate (cpu) ÷ measured peak RSS")
    for row in results["memory"]:
        print(f"  {row['model']:<20} estimate {format_bytes(row['estimate_bytes'])}  "
              f"peak RSS {format_bytes(row['peak_rss_bytes'] or 0)}  ratio {row['ratio']:.2f}"
              f"  (longest example {row['seq_len']} tokens; {row['breakdown']})")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
