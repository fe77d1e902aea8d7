"""Remote training benchmark (run by hand, not collected): python tests/bench/remote.py

Step time of `train PROJECT --on NAME` over SSH to a throwaway sshd on 127.0.0.1 ÷ the step
time of the same run here, for the tiny model; the runs alternate and the median ratio is
reported. A step's time comes from the trainer's own events (elapsed seconds between the
first step after warm-up and the last), so it measures what the detached trainer and the
follower (copying checkpoints back meanwhile) cost the training itself; the whole command's
wall time (upload, start, copy-back of the adapter included) is printed beside it.

Target: ≤ 1.05. Both sides run with the same torch threads (--threads, default 1; the remote
python is a wrapper that sets them, as the ssh session does not pass the environment).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from tests.helpers.sshd import running_sshd  # noqa: E402
from tests.helpers.tiny_model import cached_tiny_model  # noqa: E402

WARMUP_STEPS = 3


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, FINETUNEFLOW_HOME=str(home), PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run([sys.executable, "-m", "finetuneflow", *args], capture_output=True,
                            text=True, env=env, cwd=REPO_ROOT)
    if result.returncode:
        raise RuntimeError(f"finetuneflow {' '.join(args)} failed: {result.stderr[-2000:]}")
    return result


def make_project(home: Path, folder: Path, steps: int) -> str:
    data = folder / "data.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"What is {i} plus 1?",
                                        "completion": f"{i + 1}"}) + "\n" for i in range(60)))
    project = str(json.loads(cli(home, "project", "create", "Bench", "--json").stdout)["id"])
    cli(home, "model", "set", project, str(cached_tiny_model()), "--json")
    cli(home, "dataset", "import", project, str(data), "--json")
    sys.path.insert(0, str(REPO_ROOT))
    os.environ["FINETUNEFLOW_HOME"] = str(home)
    from finetuneflow.services.context import AppContext
    from finetuneflow.services.training import TrainingService

    context = AppContext.open()
    service = TrainingService(context)
    service.save_config(project, service.config_for(project, "quick").replace(
        max_steps=steps, logging_steps=1, save_steps=steps // 2, eval_steps=steps,
        per_device_batch_size=2, gradient_accumulation_steps=1))
    context.close()
    return project


def add_machine(home: Path, folder: Path, url: str, key: Path, port: int, threads: int) -> None:
    python = folder / "python"
    python.write_text(f"#!/bin/sh\nOMP_NUM_THREADS={threads} exec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    cli(home, "machine", "add", "bench", url, "--key", str(key), "--python", str(python),
        "--json")
    machines = json.loads((home / "machines.json").read_text())
    machines["machines"][0]["remote_home"] = str(folder / "remote-home")
    (home / "machines.json").write_text(json.dumps(machines))
    scan = subprocess.run(["ssh-keyscan", "-p", str(port), "127.0.0.1"], capture_output=True,
                          text=True, check=True)
    (home / "ssh").mkdir(exist_ok=True)
    (home / "ssh" / "known_hosts").write_text(scan.stdout)


def timed_run(home: Path, project: str, *where: str) -> tuple[float, float]:
    """(seconds per step after warm-up, wall seconds of the whole command)."""
    start = time.perf_counter()
    result = cli(home, "train", project, "--json", *where)
    wall = time.perf_counter() - start
    logs = {e["step"]: e["elapsed_s"] for e in map(json.loads, result.stdout.splitlines())
            if e["type"] == "log"}
    last = max(logs)
    return (logs[last] - logs[WARMUP_STEPS]) / (last - WARMUP_STEPS), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2, help="local/remote pairs")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    args = parser.parse_args()
    os.environ.update(OMP_NUM_THREADS=str(args.threads), HF_HUB_OFFLINE="1")
    with tempfile.TemporaryDirectory(prefix="bench-remote-") as scratch:
        folder = Path(scratch)
        (folder / "sshd").mkdir()
        home = folder / "home"
        project = make_project(home, folder, args.steps)
        with running_sshd(folder / "sshd") as sshd:
            add_machine(home, folder, sshd.url, sshd.user_key, sshd.port, args.threads)
            ratios, walls = [], []
            for round_ in range(args.rounds):
                local, local_wall = timed_run(home, project)
                remote, remote_wall = timed_run(home, project, "--on", "bench")
                ratios.append(remote / local)
                walls.append(remote_wall / local_wall)
                print(f"round {round_ + 1}: step {local * 1000:.1f} ms here, "
                      f"{remote * 1000:.1f} ms over SSH (ratio {remote / local:.3f}); whole "
                      f"command {local_wall:.1f} s here, {remote_wall:.1f} s over SSH",
                      flush=True)
    print(f"step time over SSH ÷ here: median {statistics.median(ratios):.3f} (target ≤ 1.05); "
          f"whole command: median {statistics.median(walls):.3f}")


if __name__ == "__main__":
    main()
