"""Start-up time of the frozen app against the dev install, measured in the same run.

    python packaging/startup_time.py [--runs 7] [--app dist/FineTuneFlow/FineTuneFlow]

`gui --screenshot` offscreen is one start of the app: open the database, build the main
window, render it to a PNG, exit. `--version` is the bare start of the program. The two
installs take turns, so both see the same machine load; each gets a warm-up run first (its
home is created then) and the medians are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_APP = ROOT / "dist" / "FineTuneFlow" / "FineTuneFlow"


def seconds(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, cwd=ROOT, capture_output=True)
    return time.perf_counter() - start


def measure(installs: dict[str, list[str]], args: list[str], runs: int, scratch: Path
            ) -> dict[str, float]:
    envs = {name: dict(os.environ, FINETUNEFLOW_HOME=str(scratch / name / "home"),
                       QT_QPA_PLATFORM="offscreen") for name in installs}
    shot = [arg.replace("{png}", str(scratch / "shot.png")) for arg in args]
    samples: dict[str, list[float]] = {name: [] for name in installs}
    for name, command in installs.items():
        seconds([*command, *shot], envs[name])  # warm-up: a first home, disk caches
    for _ in range(runs):
        for name, command in installs.items():
            samples[name].append(seconds([*command, *shot], envs[name]))
    return {name: statistics.median(values) for name, values in samples.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="frozen app vs dev install start-up time")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--app", type=Path, default=DEFAULT_APP)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not args.app.exists():
        raise SystemExit(f"startup_time: {args.app} is missing: run packaging/build.py first")
    installs = {"dev install": [sys.executable, "-m", "finetuneflow"],
                "frozen app": [str(args.app)]}
    print(f"{'median of ' + str(args.runs):<22}{'dev install':>13}{'frozen app':>13}"
          f"{'frozen/dev':>12}")
    with tempfile.TemporaryDirectory() as scratch:
        for label, command in (("--version", ["--version"]),
                               ("gui --screenshot", ["gui", "--screenshot", "{png}"])):
            medians = measure(installs, command, args.runs, Path(scratch))
            dev, frozen = medians["dev install"], medians["frozen app"]
            print(f"{label:<22}{dev:>11.2f} s{frozen:>11.2f} s{frozen / dev:>11.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
