"""A training run over several machines at once (`train PROJECT --on A,B`).

Each machine ("node") gets the run's files the way a single remote run does (the resumable
upload of services/remote_training.py), and runs the trainer detached under accelerate's
multi-machine launch: every node with the same main address and port (a free port of the
first machine, the main one), its own machine rank, and the total number of processes.

Only rank 0, on the first machine, reports: its events are followed, copied back and recorded
exactly like a single remote run. Each other node is watched by a follow of its own run folder
that only waits for the trainer there to end. A node whose trainer ends badly, or whose machine
stops answering, stops the run: the trainers of all the nodes are killed (a rank left alone
would wait on its peers until a timeout), and the job fails with one line naming that node.

A resume sends each node the checkpoints copied back here and removes the ones it has beyond
them: transformers saves the model and the trainer state on the main machine only, so a later
checkpoint there that was not copied back yet could not be loaded by the others.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from finetuneflow.core.child_protocol import ErrorEvent, ProtocolError, decode
from finetuneflow.core.progress import CancelToken
from finetuneflow.services.errors import UserError
from finetuneflow.services.machines import ssh_command
from finetuneflow.services.remote_training import (
    ENDED_MARK,
    KEEPALIVE,
    KILLED_CODES,
    RECONNECT_DELAYS_S,
    REMOTE_HELPER,
    RemoteMachine,
    RemoteRun,
    RemoteState,
    stop_on_cancel,
)
from finetuneflow.services.trainer_process import (
    Rendezvous,
    trainer_command,
)
from finetuneflow.services.training import PreparedRun, RunRecorder
from finetuneflow.storage.machines import Machine, MachineStore

if TYPE_CHECKING:
    from finetuneflow.services.context import AppContext

log = logging.getLogger(__name__)

# How long the other nodes get to end by themselves once the main one has ended well (their
# ranks leave the last collective together with it), before they are killed.
SETTLE_S = 60.0
# Once a node has failed: how long the others' ends are still read as their own (a node whose
# peer died fails too, a moment later) before the ones left are killed.
FAILURE_GRACE_S = 3.0

# A host name, an IPv4 address or an IPv6 one: it goes into each node's launch command.
HOST_PATTERN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|[0-9A-Fa-f:]{2,39}")

# Operations the nodes need besides REMOTE_HELPER's; put before it, so its last line (which
# calls `op_NAME`) finds them, and they can use its functions (alive, exit_code).
NODE_OPS = r'''
import shutil, socket

def op_port():
    with socket.socket() as probe:
        probe.bind(("", 0)); print(probe.getsockname()[1])

def op_ended(run):
    print(json.dumps({"alive": alive(run), "code": exit_code(run)}))

def op_prune(folder, keep):
    keep = set(json.loads(keep))
    if not os.path.isdir(folder): return
    for name in os.listdir(folder):
        if name.startswith("checkpoint-") and name not in keep:
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
'''
NODE_HELPER = NODE_OPS + REMOTE_HELPER


class NodeMachine(RemoteMachine):
    """A machine of a run over several: the single-run helper plus the node operations."""

    def command(self, op: str, *args: str) -> list[str]:
        remote = [self.machine.python, "-c", NODE_HELPER, op, *args]
        return ssh_command(self._store, self.machine, remote, options=KEEPALIVE)

    def free_port(self) -> int:
        return int(self.call("port").strip())


@dataclass
class Node:
    """One machine's part of the run: its rank and its run folder there."""

    remote: NodeMachine
    rank: int
    state: RemoteState

    @property
    def name(self) -> str:
        return self.remote.machine.name


@dataclass(frozen=True)
class NodeEnd:
    """How a node's trainer ended, as seen from here (`at`: time.monotonic())."""

    node: str
    code: int | None  # its exit code; None when it was killed
    at: float
    unreachable: bool = False

    @property
    def failed(self) -> bool:
        return self.unreachable or self.code != 0

    @property
    def killed(self) -> bool:
        return not self.unreachable and (self.code is None or self.code in KILLED_CODES)

    def describe(self) -> str:
        if self.unreachable:
            return f"{self.node} stopped answering over SSH"
        how = "it was killed" if self.killed else f"exit code {self.code}"
        return f"the trainer on {self.node} ended without finishing ({how})"


def culprit(ends: list[NodeEnd]) -> NodeEnd | None:
    """The node that brought the run down: a killed one before one that failed after it (a
    rank whose peer died fails too); otherwise the first seen."""
    failed = [end for end in ends if end.failed]
    return min(failed, key=lambda end: (not end.killed, end.at)) if failed else None


class NodeWatch:
    """Waits, in a thread, for the trainer on one node (not the main one) to end."""

    def __init__(self, node: Node, report: Callable[[NodeEnd], None]) -> None:
        self.node = node
        self._report = report
        self._done = threading.Event()
        self._child: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self.end: NodeEnd | None = None
        self._thread = threading.Thread(target=self._run, name=f"watch-{node.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._done.set()
        with self._lock:
            if self._child is not None:
                self._child.kill()
        self._thread.join(timeout=10)

    def wait(self, timeout: float) -> bool:
        """True once the node's end is known."""
        deadline = time.monotonic() + timeout
        while self.end is None and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.end is not None

    def _run(self) -> None:
        failures = 0
        while not self._done.is_set():
            got_lines, ended, code = self._follow_once()
            if self._done.is_set():
                return
            if ended:
                self._ended(NodeEnd(self.node.name, code, time.monotonic()))
                return
            failures = 0 if got_lines else failures + 1
            if failures > len(RECONNECT_DELAYS_S):
                self._ended(NodeEnd(self.node.name, None, time.monotonic(), unreachable=True))
                return
            log.warning("Lost the connection to %s; reconnecting", self.node.name)
            self._done.wait(RECONNECT_DELAYS_S[max(failures, 1) - 1])

    def _ended(self, end: NodeEnd) -> None:
        self.end = end
        self._report(end)

    def _follow_once(self) -> tuple[bool, bool, int | None]:
        """(whether lines came, whether the trainer there has ended, its exit code)."""
        state = self.node.state
        command = self.node.remote.command("follow", state.run_dir, str(state.offset))
        with self._lock:
            if self._done.is_set():
                return False, False, None
            self._child = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        child = self._child
        assert child.stdout is not None
        got_lines = False
        try:
            for raw in child.stdout:  # the launcher's own output there: read past it
                if not raw.endswith(b"\n"):
                    break
                if raw.startswith(ENDED_MARK):
                    code = json.loads(raw[len(ENDED_MARK):])
                    return got_lines, True, None if code is None else int(code)
                got_lines = True
                state.offset += len(raw)
            return got_lines, False, None
        finally:
            child.kill()
            child.wait()


class NodesRun:
    """A run started on several machines: rank 0's RemoteRun, and every node."""

    def __init__(self, main: RemoteRun, nodes: list[Node], processes_per_machine: int,
                 main_address: str | None = None) -> None:
        self.main = main
        self.nodes = nodes
        self.processes_per_machine = processes_per_machine
        self.main_address = main_address  # as given; None: the main machine's SSH host
        self.ends: list[NodeEnd] = []
        self._lock = threading.Lock()
        self.killed_at: float | None = None

    @property
    def names(self) -> str:
        return ",".join(node.name for node in self.nodes)

    # --- stopping -------------------------------------------------------------------------------

    def stop_all(self) -> None:
        """The stop line to every node (one would do: the ranks agree on stopping; each node
        gets it in case that one is out of reach). UserError when none could be reached."""
        unreached = []
        for node in self.nodes:
            try:
                node.remote.call("stop", node.state.run_dir)
            except UserError as error:
                log.warning("Could not stop the run on %s: %s", node.name, error)
                unreached.append(error)
        if len(unreached) == len(self.nodes):
            raise unreached[-1]

    def kill_all(self) -> None:
        """Kill the trainers of every node (those already ended are left as they are)."""
        with self._lock:
            if self.killed_at is None:
                self.killed_at = time.monotonic()
        for node in self.nodes:
            try:
                node.remote.call("kill", node.state.run_dir)
            except UserError as error:
                log.warning("Could not kill the trainer on %s: %s", node.name, error)

    def record(self, end: NodeEnd) -> None:
        with self._lock:
            self.ends.append(end)

    def ends_before_kill(self) -> list[NodeEnd]:
        """The ends that were the nodes' own, not those of the trainers killed from here."""
        with self._lock:
            limit = self.killed_at
            return [end for end in self.ends if limit is None or end.at <= limit]

    def _watch_cancel(self, cancel: CancelToken) -> threading.Event:
        """On cancel: stop every node, and kill them all if the main one has not ended after
        the grace period."""
        return stop_on_cancel(cancel, self.stop_all, self.kill_all,
                              ", ".join(node.name for node in self.nodes))

    # --- following ------------------------------------------------------------------------------

    def follow(self, on_line: Callable[[str], None], cancel: CancelToken | None = None,
               notice: Callable[[str], None] = log.warning) -> NodeEnd | None:
        """Follow rank 0's events to the end of the run, watching the other nodes; the node
        that brought the run down, or None when it ended well (finished or stopped)."""
        held = HeldError(on_line)

        def node_ended(end: NodeEnd) -> None:
            self.record(end)
            if end.failed:
                self.kill_all()

        watches = [NodeWatch(node, node_ended) for node in self.nodes[1:]]
        for watch in watches:
            watch.start()
        stopper = self._watch_cancel(cancel) if cancel is not None else None
        try:
            followed = self.main.follow(held, None, notice)
            main = NodeEnd(self.nodes[0].name, self.main.exit_code, time.monotonic(),
                           unreachable=not followed)
            self.record(main)
            self._settle(watches, failed=main.failed)
        finally:
            if stopper is not None:
                stopper.set()
            for watch in watches:
                watch.close()
        brought_down = culprit(self.ends_before_kill() or self.ends)
        # Rank 0's error is its own failure's message, unless another node died first (the
        # error is then only that rank 0 lost its peer).
        if brought_down is None or brought_down.node == self.nodes[0].name:
            held.release()
        return brought_down

    def _settle(self, watches: list[NodeWatch], failed: bool) -> None:
        """Give the other nodes a moment to end by themselves, then kill those left."""
        deadline = time.monotonic() + (FAILURE_GRACE_S if failed else SETTLE_S)
        for watch in watches:
            watch.wait(max(0.0, deadline - time.monotonic()))
        if failed or any(watch.end is None for watch in watches):
            self.kill_all()

    def fetch_node_logs(self, log_path: Path) -> list[Path]:
        """Each other node's trainer log, beside the run's log (`train-N.NODE.log`)."""
        fetched = []
        for node in self.nodes[1:]:
            target = log_path.with_name(f"{log_path.stem}.{node.name}{log_path.suffix}")
            try:
                target.write_bytes(node.remote.fetch_tail(f"{node.state.run_dir}/trainer.log", 0))
            except UserError as error:
                log.warning("Could not copy the log of %s back: %s", node.name, error)
                continue
            fetched.append(target)
        return fetched


class HeldError:
    """Passes rank 0's lines on, but holds an error event back until the run's end says whose
    failure it was."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        self._on_line = on_line
        self._held: str | None = None

    def __call__(self, line: str) -> None:
        self.release()
        try:
            event = decode(line)
        except ProtocolError:
            event = None
        if isinstance(event, ErrorEvent):
            self._held = line
        else:
            self._on_line(line)

    def release(self) -> None:
        if self._held is not None:
            line, self._held = self._held, None
            self._on_line(line)


class MultiNodeTraining:
    """The use case: train one run on several machines."""

    def __init__(self, context: AppContext) -> None:
        self._store = MachineStore(context.home)

    def machines(self, names: list[str]) -> list[Machine]:
        """The machines of a run over several, checked before anything runs."""
        if len(names) < 2:
            raise UserError("A run over several machines needs at least two: --on A,B.")
        if any(not name for name in names):
            raise UserError("--on lists machine names separated by commas, without empty "
                            "names: --on A,B.")
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise UserError(f"{', '.join(twice)} is named more than once in --on: each machine "
                            "takes part once (use --processes-per-machine N for several "
                            "processes on each).")
        machines = [self._store.get(name) for name in names]
        seen: dict[tuple[str, str, int, str | None], str] = {}
        for machine in machines:
            place = (machine.user, machine.host, machine.port, machine.remote_home)
            if place in seen:
                raise UserError(f"{seen[place]} and {machine.name} are the same account on the "
                                "same machine with the same remote folder, so their runs would "
                                "collide: name each machine once.")
            seen[place] = machine.name
        return machines

    def start(self, prepared: PreparedRun, names: list[str], processes_per_machine: int,
              progress: Callable[[str], None] = lambda _message: None,
              main_address: str | None = None) -> NodesRun:
        """Upload to every node, then start rank 0's node first and the others after it. The
        nodes meet at `main_address` (the first machine's SSH host unless given)."""
        if processes_per_machine < 1:
            raise UserError("--processes-per-machine must be 1 or more.")
        check_main_address(main_address)
        remotes = [NodeMachine(self._store, machine) for machine in self.machines(names)]
        staged = [self._upload(remote, prepared, progress) for remote in remotes]
        main = remotes[0]
        port = main.free_port()
        total = len(remotes) * processes_per_machine
        nodes: list[Node] = []
        main_run: RemoteRun | None = None
        try:
            for rank, (remote, state) in enumerate(zip(remotes, staged, strict=True)):
                rendezvous = Rendezvous(len(remotes), rank, main_address or main.machine.host,
                                        port)
                command = trainer_command("run", f"{state.run_dir}/job.json", processes=total,
                                          python=remote.machine.python, rendezvous=rendezvous)
                if rank == 0:
                    main_run = RemoteRun.start(remote, prepared, state, command)
                    nodes.append(Node(remote, rank, main_run.state))
                else:
                    started = json.loads(remote.call("start", state.run_dir, json.dumps(command)))
                    state.offset = int(started["offset"])
                    nodes.append(Node(remote, rank, state))
        except UserError:
            # A node that could not start leaves the started ones waiting for it: end them.
            for node in nodes:
                with contextlib.suppress(UserError):
                    node.remote.call("kill", node.state.run_dir)
            raise
        assert main_run is not None
        return NodesRun(main_run, nodes, processes_per_machine, main_address)

    @staticmethod
    def _upload(remote: NodeMachine, prepared: PreparedRun,
                progress: Callable[[str], None]) -> RemoteState:
        state = RemoteRun.upload(remote, prepared, progress)
        if prepared.job.resume:  # every node from the same checkpoint: the ones here
            local = Path(prepared.job.checkpoints_dir)
            keep = sorted(path.name for path in local.glob("checkpoint-*") if path.is_dir())
            remote.call("prune", f"{state.run_dir}/checkpoints", json.dumps(keep))
        return state


def check_main_address(address: str | None) -> None:
    if address is not None and not HOST_PATTERN.fullmatch(address):
        raise UserError(f"--main-address {address!r} is not a host name or an IP address.")


def follow_nodes(run: NodesRun, recorder: RunRecorder, project_ref: str,
                 on_line: Callable[[str], None], cancel: CancelToken | None = None,
                 notice: Callable[[str], None] = log.warning) -> None:
    """Follow the run to its end on every node and close the job the way it ended."""
    brought_down = run.follow(on_line, cancel, notice)
    logs = [run.main.log_path, *run.fetch_node_logs(run.main.log_path)]
    if brought_down is None:
        recorder.process_ended(run.main.exit_code)
        return
    resume = (f"finetuneflow train {project_ref} --resume --on {run.names} "
              f"--processes-per-machine {run.processes_per_machine}" +
              (f" --main-address {run.main_address}" if run.main_address else ""))
    recorder.process_ended(None, f"The run stopped on every machine: {brought_down.describe()}. "
                           f"The logs are in {', '.join(str(path) for path in logs)}; resume "
                           f"from the last copied checkpoint with `{resume}`.", failed=True)
