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

from finetuneflow.core.training.config import TrainingConfig  # noqa: E402
from finetuneflow.core.training.estimate import estimate_memory, format_bytes  # noqa: E402
from finetuneflow.core.training.protocol import (  # noqa: E402
    FinishedEvent,
    LogEvent,
    TrainJob,
    decode,
)
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
    tokens_per_second: float | None = None
    peak_rss: int | None = None

    def step_time(self) -> float:
        last = max(self.times)
        return (self.times[last] - self.times[WARMUP_STEPS]) / (last - WARMUP_STEPS)


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


def run_ours(job: Path) -> RunResult:
    process = subprocess.run(
        [sys.executable, "-m", "finetuneflow.trainer", "run", str(job)], capture_output=True,
        text=True, cwd=REPO_ROOT, env=child_env(), check=False)
    events = [decode(line) for line in process.stdout.splitlines()]
    finished = [event for event in events if isinstance(event, FinishedEvent)]
    if process.returncode or not finished:
        raise RuntimeError(f"trainer failed: {events[-1:]}\n{process.stderr[-3000:]}")
    logs = [event for event in events if isinstance(event, LogEvent)]
    return RunResult({event.step: event.loss for event in logs},
                     {event.step: event.elapsed_s for event in logs},
                     finished[0].tokens_per_second, finished[0].peak_memory_bytes)


def run_baseline(job: Path) -> RunResult:
    process = subprocess.run([sys.executable, __file__, "--baseline", str(job)],
                             capture_output=True, text=True, cwd=REPO_ROOT, env=child_env(),
                             check=False)
    if process.returncode:
        raise RuntimeError(f"baseline failed:\n{process.stderr[-3000:]}")
    rows = [json.loads(line.removeprefix(ROW_PREFIX)) for line in process.stdout.splitlines()
            if line.startswith(ROW_PREFIX)]
    return RunResult({row["step"]: row["loss"] for row in rows},
                     {row["step"]: row["t"] for row in rows})


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


def overhead(name: str, model: Path, work: Path, steps: int, repeats: int) -> dict[str, Any]:
    data = write_jsonl(work / f"{name}-uniform.jsonl", uniform_data(steps * 4))
    job = make_job(work / f"{name}-overhead", model, data, bench_config(steps))
    ratios, ours_times, base_times, worst_loss_gap = [], [], [], 0.0
    for _ in range(repeats):
        ours = run_ours(make_job(work / f"{name}-overhead", model, data, bench_config(steps)))
        base = run_baseline(job)
        ours_times.append(ours.step_time())
        base_times.append(base.step_time())
        ratios.append(ours_times[-1] / base_times[-1])
        common = sorted(set(ours.losses) & set(base.losses))
        assert len(common) == steps, (sorted(ours.losses), sorted(base.losses))
        worst_loss_gap = max(worst_loss_gap,
                             max(abs(ours.losses[s] - base.losses[s]) for s in common))
    return {"model": name, "ours_step_s": statistics.median(ours_times),
            "baseline_step_s": statistics.median(base_times),
            "ratio_median": statistics.median(ratios), "ratios": ratios,
            "max_loss_gap": worst_loss_gap}


def packing(name: str, model: Path, work: Path, steps: int) -> dict[str, Any]:
    data = write_jsonl(work / f"{name}-skewed.jsonl", skewed_data(steps * 8))
    rates = {}
    for packed in (False, True):
        config = bench_config(steps, packing=packed, max_seq_length=512)
        result = run_ours(make_job(work / f"{name}-packing-{packed}", model, data, config))
        rates[packed] = result.tokens_per_second or 0.0
    return {"model": name, "tokens_per_s_off": rates[False], "tokens_per_s_on": rates[True],
            "ratio": rates[True] / rates[False] if rates[False] else None}


def memory(name: str, model: Path, work: Path, steps: int) -> dict[str, Any]:
    data = write_jsonl(work / f"{name}-memory.jsonl", uniform_data(steps * 4))
    config = bench_config(steps)
    result = run_ours(make_job(work / f"{name}-memory", model, data, config))
    model_config = json.loads((model / "config.json").read_text())
    estimate = estimate_memory(model_config, TrainingConfig.from_dict(config), device="cpu")
    return {"model": name, "estimate_bytes": estimate.total, "peak_rss_bytes": result.peak_rss,
            "ratio": estimate.total / result.peak_rss if result.peak_rss else None,
            "breakdown": estimate.summary()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="tiny model only")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by every run
    if args.baseline:
        baseline_main(args.baseline)
        return 0
    models = [("tiny", cached_tiny_model(), 40, args.repeats)]
    if not args.quick:
        models.append(("smollm2-135m-shape", smol_shaped_model(), 12, max(1, args.repeats - 1)))
    results: dict[str, list[dict[str, Any]]] = {"overhead": [], "packing": [], "memory": []}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as folder:
        work = Path(folder)
        for name, model, steps, repeats in models:
            results["overhead"].append(overhead(name, model, work, steps, repeats))
            results["packing"].append(packing(name, model, work, steps))
            results["memory"].append(memory(name, model, work, steps))
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def report(results: dict[str, list[dict[str, Any]]]) -> None:
    print("\nOverhead (our trainer ÷ plain TRL, step time after warm-up; target ≤ 1.05)")
    for row in results["overhead"]:
        print(f"  {row['model']:<20} ours {row['ours_step_s'] * 1000:8.1f} ms  "
              f"TRL {row['baseline_step_s'] * 1000:8.1f} ms  ratio {row['ratio_median']:.3f} "
              f"(runs {', '.join(f'{r:.3f}' for r in row['ratios'])})  "
              f"max |Δloss| {row['max_loss_gap']:.2e}")
    print("\nPacking on ÷ off (tokens/s, skewed lengths)")
    for row in results["packing"]:
        print(f"  {row['model']:<20} off {row['tokens_per_s_off']:9.0f}  "
              f"on {row['tokens_per_s_on']:9.0f}  ratio {row['ratio']:.2f}")
    print("\nMemory: estimate (cpu) ÷ measured peak RSS")
    for row in results["memory"]:
        print(f"  {row['model']:<20} estimate {format_bytes(row['estimate_bytes'])}  "
              f"peak RSS {format_bytes(row['peak_rss_bytes'] or 0)}  ratio {row['ratio']:.2f}"
              f"  ({row['breakdown']})")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
