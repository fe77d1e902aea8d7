"""GGUF export benchmark (run by hand, not collected): python tests/bench/gguf.py

For a random-init model of SmolLM2-135M's shape (tests/bench/train.py), on the CPU:
1. the baseline: saving the merged model as safetensors, as the export's trainer child does
   (`model.save_pretrained`);
2. writing that folder as an F16 and as a Q8_0 GGUF (core/export/gguf.py, as the export's
   worker does);
and prints each GGUF time ÷ the safetensors time, and the three files' sizes. The best of
--repeats runs counts (the machine is shared).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
# Run as a script, this file's folder comes first on the path, and this file would shadow the
# gguf package.
sys.path[:] = [str(REPO_ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

from finetuneflow.core.export.gguf import F16, Q8_0, write_gguf  # noqa: E402
from finetuneflow.core.units import format_bytes  # noqa: E402
from tests.bench.train import smol_shaped_model  # noqa: E402


def best_of(repeats: int, work: object) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the save")
    args = parser.parse_args()
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    source = smol_shaped_model()
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    with tempfile.TemporaryDirectory(prefix="bench-gguf-") as root:
        merged, out = Path(root) / "merged", Path(root) / "gguf"

        def save() -> None:
            shutil.rmtree(merged, ignore_errors=True)
            model.save_pretrained(merged)

        baseline = best_of(args.repeats, save)
        for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
            shutil.copy(source / name, merged / name)
        sizes = {"safetensors": (merged / "model.safetensors").stat().st_size}
        print(f"BENCH safetensors save: {baseline:.2f} s, {format_bytes(sizes['safetensors'])}")
        for quantisation in (F16, Q8_0):
            target = out / f"model-{quantisation}.gguf"
            seconds = best_of(args.repeats, lambda q=quantisation, t=target: write_gguf(
                merged, t, q, name="bench"))
            size = target.stat().st_size
            print(f"BENCH gguf {quantisation}: {seconds:.2f} s, {format_bytes(size)}; "
                  f"time ÷ safetensors save {seconds / baseline:.2f}, "
                  f"size ÷ safetensors {size / sizes['safetensors']:.2f}")


if __name__ == "__main__":
    main()
