"""Training-time estimate benchmark (run by hand, not collected): python tests/bench/estimate.py

For the tiny test model and a random-init model of SmolLM2-135M's shape, on the CPU:
1. the estimate, as the Hardware step makes it: the trainer child's speed probe times a few
   steps of the model at the run's settings, and the estimate is seconds a step × planned
   steps + the measured start-up (services/hardware.py, core/training/timing.py);
2. the measured time of the real run: the trainer child from start to exit, same settings,
   same data, same machine, right after;
and prints estimate ÷ measured. Target: 0.7–1.4 for both.

Both sides get the same number of torch threads (--threads, default 1), as in
tests/bench/train.py: on a shared machine, more threads mostly measure the neighbours.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from finetuneflow.core.training.config import TrainingConfig  # noqa: E402
from finetuneflow.core.training.timing import estimate_run  # noqa: E402
from finetuneflow.core.units import format_duration  # noqa: E402
from tests.bench.train import (  # noqa: E402
    make_job,
    smol_shaped_model,
    uniform_data,
    write_jsonl,
)
from tests.helpers.tiny_model import cached_tiny_model  # noqa: E402


def settings(steps: int) -> dict[str, Any]:
    """A real run's settings, with a checkpoint at the end (real runs save them too)."""
    return {"max_steps": steps, "per_device_batch_size": 4, "gradient_accumulation_steps": 2,
            "max_seq_length": 512, "lora_r": 8, "lora_alpha": 16, "logging_steps": 5,
            "eval_steps": steps, "save_steps": steps, "early_stopping_patience": 0}


def estimate(home: Path, model: Path, chats: list[list[dict[str, str]]],
             config: TrainingConfig) -> tuple[float, Any]:
    """The Hardware step's estimate: measured in the trainer child, then scaled."""
    os.environ["FINETUNEFLOW_HOME"] = str(home)
    from finetuneflow.services.context import AppContext
    from finetuneflow.services.hardware import HardwareService

    context = AppContext.open()
    try:
        started = time.monotonic()
        speed = HardwareService(context).measure_speed(model, config, chats, refresh=True)
        probe_s = time.monotonic() - started
    finally:
        context.close()
    return probe_s, estimate_run(speed, config, train_examples=len(chats))


def measured_run(job: Path) -> float:
    """The real trainer child, from start to exit."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "finetuneflow.trainer", "run", str(job)],
                            capture_output=True, text=True, cwd=REPO_ROOT,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    elapsed = time.monotonic() - started
    if result.returncode != 0 or '"type":"finished"' not in result.stdout:
        raise RuntimeError(f"the run failed: {result.stderr[-2000:]}")
    return elapsed


def bench(name: str, model: Path, steps: int, work: Path) -> dict[str, Any]:
    config = TrainingConfig.from_dict(settings(steps)).validate()
    records = uniform_data(steps * config.effective_batch_size)
    chats = [record["messages"] for record in records]
    data = write_jsonl(work / f"{name}.jsonl", records)
    probe_s, predicted = estimate(work / f"{name}-home", model, chats, config)
    actual = measured_run(make_job(work / f"{name}-run", model, data, config.to_dict()))
    return {"model": name, "estimate_s": predicted.seconds, "measured_s": actual,
            "ratio": predicted.seconds / actual, "probe_s": probe_s,
            "summary": predicted.summary()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--quick", action="store_true", help="tiny model only")
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("PYTHONPATH", str(REPO_ROOT))
    models = [("tiny", cached_tiny_model(), 200)]
    if not args.quick:
        models.append(("smollm2-135m-shape", smol_shaped_model(), 12))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-estimate-") as folder:
        for name, model, steps in models:
            rows.append(bench(name, model, steps, Path(folder)))
    print("\nTraining time: estimate ÷ measured run (target 0.7–1.4)")
    for row in rows:
        verdict = "ok" if 0.7 <= row["ratio"] <= 1.4 else "OUT OF RANGE"
        print(f"  {row['model']:<20} estimate {format_duration(row['estimate_s']):>8}  "
              f"measured {row['measured_s']:7.1f} s  ratio {row['ratio']:.2f} {verdict}  "
              f"(timing took {row['probe_s']:.1f} s; {row['summary']})")
    return 0 if all(0.7 <= row["ratio"] <= 1.4 for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
