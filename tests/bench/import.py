"""Importing a large dataset (run by hand): 1,000,000 short `messages` lines.

    python -m tests.bench.import [LINES] [--kind short|long|quotes]

`long`: 30,000 examples of 8,000 characters; `quotes`: the same made of quotes, the text that
encodes largest (a quote takes four bytes, escaped twice).

Prints the import's time ÷ a plain `json.loads` loop over the same file (measured in the same
run), and the import's peak memory (RSS, in a child process of its own, plus the peak of the
process that reads the file for it). Targets: <= 5x and <= 400 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
IMPORT = """
import resource, sys, time
from pathlib import Path
from finetuneflow.services.context import AppContext
from finetuneflow.services.datasets import DatasetService
from finetuneflow.services.projects import ProjectService
context = AppContext.open()
project = ProjectService(context).create("Bench")
started, cpu = time.perf_counter(), time.process_time()
summary = DatasetService(context).import_file(project.id, Path(sys.argv[1]))
elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
assert summary.imported == int(sys.argv[2]), summary
reader = resource.getrusage(resource.RUSAGE_CHILDREN)  # the reader process, if one ran
print(elapsed, cpu + reader.ru_utime + reader.ru_stime,
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, reader.ru_maxrss)
"""


def short_example(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"What is {i} plus 1?"},
            {"role": "assistant", "content": f"It is {i + 1}."}]


def long_example(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Tell me about {i}."},
            {"role": "assistant", "content": f"{i} " + "x" * 8000}]


def quotes_example(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Quote {i}."},
            {"role": "assistant", "content": f"{i} " + '"' * 8000}]


KINDS = {"short": (1_000_000, short_example), "long": (30_000, long_example),
         "quotes": (30_000, quotes_example)}


def write_file(path: Path, lines: int, example: Callable[[int], list[dict[str, str]]]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for i in range(lines):
            out.write(json.dumps({"messages": example(i)}) + "\n")


def json_loop(path: Path) -> tuple[float, float]:
    """Seconds of the loop, on the clock and of CPU."""
    started, cpu = time.perf_counter(), time.process_time()
    with path.open("rb") as file:
        for line in file:
            json.loads(line)
    return time.perf_counter() - started, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lines", type=int, nargs="?", help="default: by kind")
    parser.add_argument("--kind", choices=KINDS, default="short")
    args = parser.parse_args()
    default_lines, example = KINDS[args.kind]
    lines = args.lines or default_lines
    with tempfile.TemporaryDirectory() as folder:  # 650 MB of file and database
        path = Path(folder) / "big.jsonl"
        write_file(path, lines, example)
        run(path, lines, Path(folder), judged=args.kind == "short")


def run(path: Path, lines: int, folder: Path, *, judged: bool) -> None:
    """Import the file and print the ratios; `judged`: print the verdict on the speed target
    (for short lines: on long ones a `json.loads` loop does next to nothing)."""
    baseline, baseline_cpu = json_loop(path)
    env = dict(os.environ, FINETUNEFLOW_HOME=str(folder / "home"), PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run([sys.executable, "-c", IMPORT, str(path), str(lines)], env=env,
                            capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    seconds, cpu, peak_kb, reader_kb = (float(value) for value in result.stdout.split())
    ratio = seconds / baseline
    print(f"{lines:,} lines ({path.stat().st_size / 1e6:.0f} MB): import {seconds:.1f} s ÷ "
          f"json.loads loop {baseline:.2f} s = {ratio:.1f}x{_verdict(judged, ratio <= 5)}")
    # On a busy machine the clock counts other programs' turns too; CPU seconds do not.
    print(f"CPU time (both processes): import {cpu:.1f} s ÷ json.loads loop {baseline_cpu:.2f} s = "
          f"{cpu / baseline_cpu:.1f}x")
    # Both peaks added up: what the import could hold at once at worst.
    total_mb = (peak_kb + reader_kb) / 1024
    print(f"peak memory of the import: {peak_kb / 1024:.0f} MB + its reader process "
          f"{reader_kb / 1024:.0f} MB = {total_mb:.0f} MB{_verdict(True, total_mb <= 400)}")


def _verdict(judged: bool, met: bool) -> str:
    return ("  [ok]" if met else "  [MISSED]") if judged else ""


if __name__ == "__main__":
    main()
