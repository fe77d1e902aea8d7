"""GPU check for the trainer (needs CUDA; no network): python tests/gpu/check.py

Builds a random-init Llama-shaped model of about 0.5B parameters, then runs the real trainer
child for 30 LoRA steps and 30 QLoRA steps on synthetic conversations. For each it prints
tokens/s and the peak `torch.cuda.max_memory_allocated` against the memory estimate, and
checks that the adapter was saved and reloads with PEFT. Takes well under 5 minutes.
Exit code: 0 all checks passed (or no CUDA: nothing to check), 1 a check failed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from finetuneflow.core.child_protocol import (  # noqa: E402
    ErrorEvent,
    FinishedEvent,
    LogEvent,
    StartedEvent,
    TrainJob,
    decode,
)
from finetuneflow.core.training.config import TrainingConfig  # noqa: E402
from finetuneflow.core.training.estimate import (  # noqa: E402
    count_parameters,
    estimate_memory,
    format_bytes,
)

STEPS = 30
RUN_TIMEOUT_S = 150
# Llama-shaped, about 0.49B parameters (untied 32k vocabulary).
MODEL_SHAPE = {"vocab_size": 32000, "hidden_size": 1024, "intermediate_size": 4096,
               "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 4,
               "max_position_embeddings": 4096, "tie_word_embeddings": False}
SETTINGS = {"max_steps": STEPS, "per_device_batch_size": 8, "gradient_accumulation_steps": 1,
            "max_seq_length": 512, "learning_rate": 2e-4, "lora_r": 16, "lora_alpha": 32,
            "logging_steps": 5, "eval_steps": STEPS, "save_steps": STEPS,
            "early_stopping_patience": 0, "warmup_ratio": 0.0}


def cuda_device_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def build_model(folder: Path) -> Path:
    """Random weights in bf16 with the tiny test tokenizer (its ids fit the 32k vocabulary)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.helpers.tiny_model import build_tiny_model

    tokenizer_source = build_tiny_model(folder / "tiny")
    tiny_config = json.loads((tokenizer_source / "config.json").read_text())
    torch.manual_seed(0)
    config = LlamaConfig(**MODEL_SHAPE, pad_token_id=tiny_config["pad_token_id"],
                         eos_token_id=tiny_config["eos_token_id"], bos_token_id=None)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    target = folder / "model-0.5b"
    model.save_pretrained(target)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(tokenizer_source / name, target / name)
    return target


def write_data(folder: Path, repeats: int = 6) -> tuple[Path, Path]:
    """Replies of `repeats` to `repeats + 9` sentences (about 14 tokens each)."""
    sentence = "Fine-tuning adapts a pretrained model to a task with a few examples. "

    def record(i: int) -> str:
        return json.dumps({"messages": [
            {"role": "user", "content": f"Question {i}: explain fine-tuning in detail."},
            {"role": "assistant", "content": sentence * (repeats + i % 10)}]}) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    train, evaluation = folder / "train.jsonl", folder / "eval.jsonl"
    train.write_text("".join(record(i) for i in range(STEPS * 8)), encoding="utf-8")
    evaluation.write_text("".join(record(i) for i in range(16)), encoding="utf-8")
    return train, evaluation


def run_trainer(folder: Path, model: Path, train: Path, evaluation: Path,
                method: str, name: str) -> dict[str, Any]:
    run_folder = folder / name
    job = TrainJob(run_id=name, model_path=str(model), train_path=str(train),
                   eval_path=str(evaluation), checkpoints_dir=str(run_folder / "checkpoints"),
                   adapter_dir=str(run_folder / "adapter"), log_dir=str(run_folder / "logs"),
                   config={**SETTINGS, "method": method})
    job_path = job.write(run_folder / "job.json")
    started_at = time.monotonic()
    process = subprocess.run(
        [sys.executable, "-m", "finetuneflow.trainer", "run", str(job_path)],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=RUN_TIMEOUT_S,
        env={**os.environ, "HF_HUB_OFFLINE": "1",
             "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                          os.environ.get("PYTHONPATH")]))})
    (run_folder / "trainer.log").write_text(process.stderr, encoding="utf-8")
    events = [decode(line) for line in process.stdout.splitlines()]
    return {"code": process.returncode, "events": events, "job": job,
            "wall_s": time.monotonic() - started_at, "log": run_folder / "trainer.log"}


def adapter_reloads(model: Path, adapter: Path) -> bool:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.bfloat16).to("cuda")
    tuned = PeftModel.from_pretrained(base, adapter)
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    with torch.no_grad():
        inputs = tokenizer("Explain fine-tuning.", return_tensors="pt").to("cuda")
        logits = tuned(**inputs).logits
    return bool(torch.isfinite(logits).all())


def report(method: str, result: dict[str, Any], model: Path) -> list[str]:
    """Print the figures; return the failed checks."""
    events = result["events"]
    finished = next((e for e in events if isinstance(e, FinishedEvent)), None)
    if result["code"] != 0 or finished is None:
        error = next((e for e in events if isinstance(e, ErrorEvent)), None)
        print(f"{method}: FAILED (exit {result['code']}): "
              f"{error.message if error else 'no finished event'}")
        # The run's folder is temporary: show the end of the trainer's log here.
        print("  trainer log (last 40 lines):")
        for line in result["log"].read_text(encoding="utf-8").splitlines()[-40:]:
            print(f"    {line}")
        return [f"{method} run"]
    started = next(e for e in events if isinstance(e, StartedEvent))
    config = TrainingConfig.from_dict(result["job"].config)
    model_config = json.loads((model / "config.json").read_text())
    estimate = estimate_memory(model_config, config, device="cuda")
    tensors = estimate.total - estimate.overhead
    peak = finished.peak_memory_bytes or 0
    print(f"{method}: {finished.step} steps on {started.device}, "
          f"{finished.tokens_per_second or 0:,.0f} tokens/s, loop {finished.runtime_s:.1f} s "
          f"(process {result['wall_s']:.0f} s), eval loss {finished.final_eval_loss}")
    logs = [e for e in events if isinstance(e, LogEvent) and e.tokens_seen and e.elapsed_s]
    if len(logs) >= 2:
        first, last = logs[0], logs[-1]
        steady = (last.tokens_seen - first.tokens_seen) / (last.elapsed_s - first.elapsed_s)
        print(f"  steps {first.step}-{last.step}: {steady:,.0f} tokens/s, "
              f"{(last.elapsed_s - first.elapsed_s) / (last.step - first.step):.3f} s/step")
    print(f"  peak max_memory_allocated {format_bytes(peak)}; estimate {estimate.summary()}")
    print(f"  estimate without overhead ÷ measured = {tensors / peak:.2f}; "
          f"estimate ÷ measured = {estimate.total / peak:.2f}")
    print(f"  trainable params: trainer {started.trainable_params:,}, "
          f"estimate {estimate.trainable_params:,}")
    failures = []
    if started.trainable_params != estimate.trainable_params:
        failures.append(f"{method} trainable parameter count")
    adapter = Path(finished.adapter_dir)
    saved = adapter.is_dir() and {"adapter_model.safetensors", "adapter_config.json"} <= {
        path.name for path in adapter.iterdir()}
    try:
        reloads = saved and adapter_reloads(model, adapter)
    except Exception as error:  # report it as a failed check, keep checking the rest
        print(f"  reloading the adapter failed: {type(error).__name__}: {error}")
        reloads = False
    if not reloads:
        failures.append(f"{method} adapter save/reload")
    print(f"  adapter saved: {'yes' if saved else 'NO'}; reloads with PEFT: "
          f"{'yes' if reloads else 'NO'}")
    return failures


def main() -> int:
    name = cuda_device_name()
    if name is None:
        print("No CUDA device: the GPU check has nothing to run (this is not a failure).")
        return 0
    print(f"GPU: {name}")
    with tempfile.TemporaryDirectory(prefix="finetuneflow-gpu-check-") as temp:
        folder = Path(temp)
        started_at = time.monotonic()
        model = build_model(folder)
        parameters = count_parameters(json.loads((model / "config.json").read_text()))
        print(f"model: random-init Llama shape, {parameters / 1e9:.2f}B parameters "
              f"(built in {time.monotonic() - started_at:.0f} s)")
        train, evaluation = write_data(folder)
        failures: list[str] = []
        # Every sequence cut at max_seq_length: the case the memory estimate is for.
        full_train, full_evaluation = write_data(folder / "full", repeats=60)
        runs = [("lora", "lora", train, evaluation), ("qlora", "qlora", train, evaluation),
                ("lora", "lora-full-length", full_train, full_evaluation)]
        for method, name, train_path, eval_path in runs:
            failures += report(name, run_trainer(folder, model, train_path, eval_path, method,
                                                 name),
                               model)
        baseline = subprocess.run([sys.executable, str(Path(__file__).with_name("bare_loop.py")),
                                   str(model)], capture_output=True, text=True, timeout=120)
        print((baseline.stdout or baseline.stderr[-2000:]).strip())
        print("  (the same batch of 8 x 512 tokens as lora-full-length: its s/step ÷ this one's "
              "is the trainer's overhead)")
    print("PASS" if not failures else f"FAIL: {', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
