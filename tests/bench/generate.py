"""Generation throughput against the standalone fake LLM server (run by hand).

    python -m tests.bench.generate                   # every scenario, native API, streaming
    python -m tests.bench.generate --api openai --no-stream --concurrency 8 --seconds 4

For each concurrency (1, 8, 32) and latency (fixed 200 ms, uniform 50–800 ms) it measures
chunks per second through run_generation and divides by the ideal, concurrency ÷ mean latency.
Targets: >= 0.9 without faults; >= 0.8 with 5 % injected 429 / 503 / timeouts, with every chunk
delivered exactly once and no example lost or duplicated.

The server runs in its own process (`python -m tests.helpers.fake_llm`), so its work does not
compete with the client for the GIL. Timings are set for a benchmark: a read timeout of twice
the worst latency, at least 1 s (1 s at 200 ms, 1.6 s at 50–800 ms; an injected timeout costs a
worker that long), and a 0.25 s backoff base (the app's default is 1 s).

`ratio` counts the whole run, so it includes the tail: when the last chunks hit a timeout,
the other workers sit idle until it is retried. `steady` is the same ratio up to the moment 90 %
of the chunks were done, i.e. without that tail.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import random
import string
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from finetuneflow.core.generation.client import LLMClient, RetryPolicy
from finetuneflow.core.generation.engine import ChunkInput, ChunkResult, run_generation
from finetuneflow.core.generation.settings import LLMSettings
from finetuneflow.core.generation.tasks import Task

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL = "gpt-oss:20b"
LATENCIES: dict[str, tuple[float, float]] = {"200 ms": (200, 200), "50-800 ms": (50, 800)}
FAULT_MIX = "rate_limit=1,server_busy=1,timeout=1"
FAULT_RATE = 0.05
BENCH_RETRY = RetryPolicy(attempts=6, base_s=0.25, factor=2.0, cap_s=4.0)


@dataclass(frozen=True)
class Scenario:
    concurrency: int
    latency: str
    faults: bool

    @property
    def mean_latency_s(self) -> float:
        low, high = LATENCIES[self.latency]
        return (low + high) / 2000

    @property
    def target(self) -> float:
        return 0.8 if self.faults else 0.9

    @property
    def read_timeout_s(self) -> float:
        return max(1.0, 2 * LATENCIES[self.latency][1] / 1000)

    @property
    def ideal_per_s(self) -> float:
        return self.concurrency / self.mean_latency_s


@dataclass(frozen=True)
class Outcome:
    scenario: Scenario
    chunks: int
    seconds: float
    ratio: float
    steady_ratio: float
    lost_chunks: int
    repeated_chunks: int
    examples: int
    distinct_examples: int
    faults: dict[str, int]

    @property
    def intact(self) -> bool:
        return (self.lost_chunks == 0 and self.repeated_chunks == 0
                and self.examples == self.distinct_examples == 3 * self.chunks)

    @property
    def passed(self) -> bool:
        return self.ratio >= self.scenario.target and self.intact


def passage(index: int) -> str:
    """A long paragraph with made-up names, so every chunk's examples are distinct."""
    rng = random.Random(index)
    words = [
        " ".join("".join(rng.choices(string.ascii_lowercase, k=rng.randint(5, 9)))
                 for _ in range(3)).title()
        for _ in range(10)
    ]
    facts = [f"runs at {100 + i} degrees and reports to control room {i % 7}" for i in range(10)]
    return " ".join(f"{name} {fact} every {index % 11 + 2} hours." for name, fact in
                    zip(words, facts, strict=True))


@contextlib.contextmanager
def fake_server(latency: tuple[float, float], faults: bool) -> Iterator[tuple[str, list[str]]]:
    """The standalone server; yields its URL and (after exit) the lines it wrote to stderr."""
    low, high = latency
    command = [sys.executable, "-m", "tests.helpers.fake_llm", "--port", "0",
               "--latency-ms", f"{low:g}-{high:g}" if low != high else f"{low:g}",
               "--timeout-fault-s", "5", "--seed", "1"]
    if faults:
        command += ["--fault-rate", str(FAULT_RATE), "--fault-mix", FAULT_MIX]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    stderr: list[str] = []
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"the fake server did not start: {process.stderr.read()}")
        yield url, stderr
    finally:
        process.terminate()
        _, err = process.communicate(timeout=15)
        stderr.extend(err.splitlines())


def run_scenario(scenario: Scenario, api: str, stream: bool, seconds: float) -> Outcome:
    # At least 60 chunks: one worker's random latencies need that many to average out.
    rounds = max(math.ceil(60 / scenario.concurrency), round(seconds / scenario.mean_latency_s))
    chunks = [ChunkInput(id=i, text=passage(i)) for i in range(scenario.concurrency * rounds)]
    delivered: Counter[int] = Counter()
    hashes: list[str] = []
    finished_at: list[float] = []
    lock = threading.Lock()

    def on_result(result: ChunkResult) -> None:
        with lock:
            delivered[result.chunk_id] += 1  # type: ignore[index]
            hashes.extend(e.content_hash for e in result.examples)
            finished_at.append(time.monotonic())

    with fake_server(LATENCIES[scenario.latency], scenario.faults) as (url, server_log):
        settings = LLMSettings(provider="ollama", base_url=url, model=MODEL, api=api,
                               stream=stream, concurrency=scenario.concurrency,
                               read_timeout=scenario.read_timeout_s)
        with LLMClient(settings, retry=BENCH_RETRY) as client:
            started = time.monotonic()
            summary = run_generation(client, Task(), chunks, on_result=on_result,
                                     concurrency=scenario.concurrency)
    if summary.error is not None:
        raise RuntimeError(f"{scenario}: the run stopped: {summary.error}")
    ninety = int(0.9 * len(finished_at))
    steady = ninety / max(1e-9, finished_at[ninety - 1] - started) if ninety else 0.0
    return Outcome(
        scenario=scenario,
        chunks=len(chunks),
        seconds=summary.elapsed_s,
        ratio=len(delivered) / summary.elapsed_s / scenario.ideal_per_s,
        steady_ratio=steady / scenario.ideal_per_s,
        lost_chunks=len(chunks) - len(delivered),
        repeated_chunks=sum(1 for count in delivered.values() if count > 1),
        examples=len(hashes),
        distinct_examples=len(set(hashes)),
        faults=_faults_from(server_log),
    )


def _faults_from(server_log: list[str]) -> dict[str, int]:
    for line in server_log:
        if line.startswith("served") and "faults" in line:
            text = line.split("faults", 1)[1].strip().replace("'", '"')
            with contextlib.suppress(ValueError):
                return json.loads(text)
    return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.generate")
    parser.add_argument("--api", choices=("native", "openai"), default="native")
    parser.add_argument("--no-stream", action="store_true")
    parser.add_argument("--concurrency", type=int, nargs="*", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=15.0, help="about this long per run")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # retries are expected here; count, don't print
    stream = not args.no_stream
    print(f"api={args.api} stream={stream} retry={BENCH_RETRY}")
    print(f"{'faults':>7} {'latency':>10} {'conc':>5} {'chunks':>7} {'secs':>6} {'ratio':>6} "
          f"{'steady':>6} {'target':>6} {'lost':>5} {'dup':>4} {'examples':>9}  injected")
    outcomes = []
    for faults in (False, True):
        for latency in LATENCIES:
            for concurrency in args.concurrency:
                outcome = run_scenario(Scenario(concurrency, latency, faults), args.api, stream,
                                       args.seconds)
                outcomes.append(outcome)
                _print_row(outcome)
    if args.json:
        rows = [{**vars(o.scenario), "chunks": o.chunks, "seconds": o.seconds, "ratio": o.ratio,
                 "steady_ratio": o.steady_ratio,
                 "lost": o.lost_chunks, "repeated": o.repeated_chunks, "examples": o.examples,
                 "distinct": o.distinct_examples, "faults_injected": o.faults,
                 "passed": o.passed} for o in outcomes]
        args.json.write_text(json.dumps(rows, indent=2))
    failed = [o for o in outcomes if not o.passed]
    print("all targets met" if not failed else f"{len(failed)} scenario(s) below target")
    return 1 if failed else 0


def _print_row(o: Outcome) -> None:
    s = o.scenario
    examples = f"{o.distinct_examples}/{o.examples}"
    print(f"{'5 %' if s.faults else 'none':>7} {s.latency:>10} {s.concurrency:>5} {o.chunks:>7} "
          f"{o.seconds:>6.1f} {o.ratio:>6.2f} {o.steady_ratio:>6.2f} {s.target:>6.1f} "
          f"{o.lost_chunks:>5} "
          f"{o.repeated_chunks:>4} {examples:>9}  {o.faults or '-'}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
