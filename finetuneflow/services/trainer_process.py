"""How to start the trainer child, and a Qt-free runner for it (used by the CLI and tests).

The GUI starts the same command with QProcess; both feed the child's stdout lines to a
`RunRecorder` (services/training.py), so what gets stored does not depend on who watches.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from finetuneflow.core.child_protocol import LAUNCH_COMMAND, Event, ProtocolError, decode
from finetuneflow.core.progress import CancelToken
from finetuneflow.services.child_process import child_environment, own_command, watch_cancel

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 120.0  # a checkpoint of a large model takes a while to write


@dataclass(frozen=True)
class Rendezvous:
    """Where this node stands in a run over several machines: accelerate's multi-machine
    launch, every node started with the same main (rank 0) address and port."""

    machines: int
    rank: int  # this machine's rank; 0 is the main one, the one that reports
    address: str  # the main machine's address, as the other machines reach it
    port: int

    def arguments(self) -> list[str]:
        return ["--num_machines", str(self.machines), "--machine_rank", str(self.rank),
                "--main_process_ip", self.address, "--main_process_port", str(self.port)]


def trainer_command(*args: str, processes: int = 1, python: str | None = None,
                    rendezvous: Rendezvous | None = None) -> list[str]:
    """`finetuneflow trainer ARGS`; with `python`, as that interpreter runs it (on another
    machine, where FineTuneFlow is installed for it).

    With several processes the trainer runs accelerate's launcher (`trainer launch`) with
    `--multi_gpu` (DDP: one process per GPU; without CUDA it falls back to gloo on the CPU,
    which the tests use); only rank 0 reports events. A frozen app has no `python -m`, so its
    ranks are the app itself again (`--no_python APP trainer ARGS`). With a `rendezvous`,
    `processes` counts the processes of all the machines together.
    """
    trainer = [python, "-m", "finetuneflow", "trainer"] if python else own_command("trainer")
    if processes <= 1 and rendezvous is None:
        return [*trainer, *args]
    frozen = getattr(sys, "frozen", False) and python is None
    rank = ["--no_python", sys.executable, "trainer"] if frozen else ["-m", "finetuneflow.trainer"]
    machines = (rendezvous.arguments() if rendezvous is not None
                else ["--main_process_port", str(free_port())])
    return [*trainer, LAUNCH_COMMAND, "--multi_gpu", "--num_processes", str(processes),
            *machines, *rank, *args]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_trainer(args: list[str], log_path: Path, on_line: Callable[[str], None],
                cancel: CancelToken | None = None, *, processes: int = 1,
                grace_seconds: float = STOP_GRACE_SECONDS) -> int:
    """Run the child to its end: stdout lines to `on_line`, stderr appended to `log_path`.

    A cancel sends `stop` on stdin (the child checkpoints and exits); if it has not ended
    after `grace_seconds` it is killed.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        command = trainer_command(*args, processes=processes)
        child = subprocess.Popen(command, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=log, env=child_environment())
        stopper = (watch_cancel(child, cancel, grace_seconds) if cancel is not None
                   else None)
        assert child.stdout is not None
        for raw in child.stdout:
            line = raw.decode("utf-8", errors="replace").strip()
            if line:
                on_line(line)
        code = child.wait()
        if stopper is not None:
            stopper.set()
        return code


def read_event(line: str) -> Event | None:
    """The event on one of the child's stdout lines; None (and a warning) for anything else."""
    try:
        return decode(line)
    except ProtocolError:
        log.warning("trainer printed a non-event line: %.200s", line)
        return None
