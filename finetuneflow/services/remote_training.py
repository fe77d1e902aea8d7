"""A training run on another machine over SSH, reported like a local one.

Everything goes through the system's OpenSSH client (services/machines.ssh_command) and the
machine's python running one small helper script (REMOTE_HELPER below), so the remote side
needs nothing but FineTuneFlow: no rsync, no sftp subsystem, no open port.

- Upload: each file is checked against a manifest (size and SHA-256); a complete file is
  skipped, a partial one (`NAME.part`, kept when a transfer breaks) continues from its last
  byte when its prefix matches, and is renamed into place only once its hash is right. A base
  model that is a local folder goes to `REMOTE_HOME/models/HASH/`, shared by all runs and
  marked complete by its manifest file, so it is sent once.
- The trainer runs detached there (its own session, like `setsid nohup`): its stdout events are
  appended to `events.jsonl`, stderr to `trainer.log`; its stdin is a FIFO that a stop writes
  the `stop` line into. A dropped connection therefore does not stop it.
- Following reads `events.jsonl` from a byte offset kept in the local run folder
  (`remote.json`), so a reattach continues exactly where it stopped. Checkpoints and the final
  adapter are copied back as their events arrive, into the local run's own layout, and the
  paths in the events are rewritten to the local copies before the recorder sees them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import shutil
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from finetuneflow.core.atomic import atomic_write_text
from finetuneflow.core.child_protocol import (
    CheckpointEvent,
    Event,
    FinishedEvent,
    ProtocolError,
    StoppedEvent,
    decode,
    encode,
)
from finetuneflow.core.progress import CancelToken
from finetuneflow.services.errors import UserError
from finetuneflow.services.machines import EXIT_SSH, _ssh_failure, ssh_command
from finetuneflow.services.trainer_process import STOP_GRACE_SECONDS, trainer_command
from finetuneflow.services.training import PreparedRun, RunRecorder
from finetuneflow.storage.machines import Machine, MachineStore

if TYPE_CHECKING:
    from finetuneflow.services.context import AppContext

log = logging.getLogger(__name__)

DEFAULT_REMOTE_HOME = "~/.finetuneflow-remote"
STATE_FILE = "remote.json"
REMOTE_JOB_FILE = "remote-job.json"
HELPER_TIMEOUT_S = 120
# A dropped follow is retried after these pauses (then the run is left to `--attach`).
RECONNECT_DELAYS_S = (1, 2, 4, 8, 15, 30, 30, 30)
# A silent network is noticed within about 15 s instead of hanging on a dead TCP connection.
KEEPALIVE = ("-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3")
ENDED_MARK = b"#ended "
KILLED_CODES = (137, -9)

# Runs on the remote python (`python -c HELPER OP ARGS`); standard library only.
REMOTE_HELPER = r'''
import hashlib, json, os, signal, subprocess, sys, tarfile, time

def digest(path, limit=None):
    h = hashlib.sha256(); left = os.path.getsize(path) if limit is None else limit
    with open(path, "rb") as f:
        while left > 0:
            block = f.read(min(left, 1 << 20))
            if not block: break
            h.update(block); left -= len(block)
    return h.hexdigest()

def state(path):
    out = {"size": -1, "sha": "", "part": 0, "part_sha": ""}
    if os.path.isfile(path): out.update(size=os.path.getsize(path), sha=digest(path))
    elif os.path.isfile(path + ".part"):
        out.update(part=os.path.getsize(path + ".part"), part_sha=digest(path + ".part"))
    return out

def alive(run):
    if os.path.exists(os.path.join(run, "exit_code")): return False
    try: pid = int(open(os.path.join(run, "pid")).read())
    except (OSError, ValueError): return False
    try: os.kill(pid, 0)
    except ProcessLookupError: return False
    except PermissionError: return True
    try: return open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError: return True

def exit_code(run):
    try: return int(open(os.path.join(run, "exit_code")).read())
    except (OSError, ValueError): return None

def op_home(home):
    home = os.path.abspath(os.path.expanduser(home)); os.makedirs(home, exist_ok=True)
    print(json.dumps({"home": home}))

def op_have():
    print(json.dumps([state(path) for path in json.load(sys.stdin)]))

def op_receive(path, size, sha, start):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    part = path + ".part"
    with open(part, "r+b" if os.path.exists(part) else "wb") as f:
        f.truncate(int(start)); f.seek(int(start))
        while True:
            block = sys.stdin.buffer.read(1 << 20)
            if not block: break
            f.write(block)
    got = os.path.getsize(path + ".part")
    if got != int(size) or digest(path + ".part") != sha:
        if got >= int(size): os.unlink(path + ".part")
        sys.exit("received %d of %s bytes of %s, or a wrong hash" % (got, size, path))
    os.replace(path + ".part", path)

def op_start(run, command):
    if alive(run): sys.exit("a trainer already runs in " + run)
    fifo = os.path.join(run, "stop.fifo")
    for name in (fifo, os.path.join(run, "exit_code")):
        if os.path.exists(name): os.unlink(name)
    os.mkfifo(fifo)
    events = os.path.join(run, "events.jsonl")
    offset = os.path.getsize(events) if os.path.exists(events) else 0
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    wrapper = ["sh", "-c", '"$@"; echo $? > exit_code.tmp; mv exit_code.tmp exit_code', "sh"]
    child = subprocess.Popen(wrapper + json.loads(command), cwd=run, env=env,
                             stdin=os.open(fifo, os.O_RDWR), stdout=open(events, "ab"),
                             stderr=open(os.path.join(run, "trainer.log"), "ab"),
                             start_new_session=True)
    with open(os.path.join(run, "pid"), "w") as f: f.write(str(child.pid))
    print(json.dumps({"offset": offset, "pid": child.pid}))

def op_follow(run, offset):
    out = sys.stdout.buffer; rest = b""
    with open(os.path.join(run, "events.jsonl"), "rb") as f:
        f.seek(int(offset))
        while True:
            ended = not alive(run)
            block = f.read(1 << 16)
            if block:
                *lines, rest = (rest + block).split(b"\n")
                for line in lines: out.write(line + b"\n")
                out.flush(); continue
            if ended:
                out.write(b"#ended %s\n" % json.dumps(exit_code(run)).encode()); out.flush()
                return
            time.sleep(0.1)

def op_stop(run):
    try: fd = os.open(os.path.join(run, "stop.fifo"), os.O_WRONLY | os.O_NONBLOCK)
    except OSError: print("gone"); return
    os.write(fd, b"stop\n"); os.close(fd); print("sent")

def op_kill(run):
    try: os.killpg(int(open(os.path.join(run, "pid")).read()), signal.SIGKILL)
    except (OSError, ValueError): pass
    # torch's launcher starts each rank in a session of its own: find them by their job file.
    mark = os.path.join(run, "job.json").encode()
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        try:
            if entry.isdigit() and mark in open("/proc/%s/cmdline" % entry, "rb").read():
                os.kill(int(entry), signal.SIGKILL)
        except OSError: pass

def op_tar(folder):
    with tarfile.open(fileobj=sys.stdout.buffer, mode="w|") as tar: tar.add(folder, arcname=".")

def op_read(path, offset):
    with open(path, "rb") as f:
        f.seek(int(offset)); sys.stdout.buffer.write(f.read())

globals()["op_" + sys.argv[1]](*sys.argv[2:])
'''


@dataclass(frozen=True)
class Upload:
    local: Path
    remote: str
    size: int
    sha256: str

    @classmethod
    def of(cls, local: Path, remote: str) -> Upload:
        return cls(local, remote, local.stat().st_size, _sha256(local))


@dataclass
class RemoteState:
    """What the local side keeps about a remote run (the run folder's remote.json)."""

    machine: str
    run_dir: str
    adapter_dir: str
    offset: int = 0
    log_offset: int = 0
    model_dir: str | None = None  # where a local base model was sent there

    @classmethod
    def load(cls, run_dir: Path) -> RemoteState | None:
        try:
            return cls(**json.loads((run_dir / STATE_FILE).read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None

    def save(self, run_dir: Path) -> None:
        atomic_write_text(run_dir / STATE_FILE, json.dumps(dataclasses.asdict(self)))


class RemoteMachine:
    """One machine's helper calls: every ssh command the remote run uses is built here."""

    def __init__(self, store: MachineStore, machine: Machine) -> None:
        self._store = store
        self.machine = machine

    def command(self, op: str, *args: str) -> list[str]:
        remote = [self.machine.python, "-c", REMOTE_HELPER, op, *args]
        return ssh_command(self._store, self.machine, remote, options=KEEPALIVE)

    def call(self, op: str, *args: str, stdin: IO[bytes] | None = None,
             input: bytes | None = None, stdout: IO[bytes] | None = None,
             timeout: float | None = HELPER_TIMEOUT_S) -> bytes:
        """Run a helper operation to its end; its stdout (or into `stdout`). A failure is a
        UserError."""
        try:
            # Never the terminal's stdin: ssh would pass the person's keystrokes on.
            source = None if input is not None else stdin or subprocess.DEVNULL
            result = subprocess.run(self.command(op, *args), input=input, stdin=source,
                                    stdout=stdout or subprocess.PIPE, stderr=subprocess.PIPE,
                                    timeout=timeout)
        except subprocess.TimeoutExpired:
            raise UserError(f"{self.machine.name} did not answer within {timeout:.0f} s: check "
                            "the network and the machine, then try again.") from None
        if result.returncode != 0:
            stderr = result.stderr.decode(errors="replace")
            if result.returncode == EXIT_SSH:
                raise _ssh_failure(self.machine, stderr)
            raise UserError(f"{self.machine.name} could not {op} ({_last_line(stderr)}): "
                            f"check `finetuneflow machine test {self.machine.name}`.")
        return result.stdout or b""

    def home(self) -> str:
        home = self.machine.remote_home or DEFAULT_REMOTE_HOME
        return str(json.loads(self.call("home", home))["home"])

    def upload(self, files: list[Upload], progress: Callable[[str], None]) -> None:
        """Send what the machine lacks, continuing partial files."""
        answers = json.loads(self.call("have", input=json.dumps([f.remote for f in files])
                                       .encode()))
        for upload, there in zip(files, answers, strict=True):
            if there["size"] == upload.size and there["sha"] == upload.sha256:
                continue
            start = there["part"] if _prefix_matches(upload, there) else 0
            progress(f"Uploading {upload.local.name} to {self.machine.name}"
                     + (f" (from byte {start})" if start else ""))
            with upload.local.open("rb") as stream:
                stream.seek(start)
                self.call("receive", upload.remote, str(upload.size), upload.sha256,
                          str(start), stdin=stream, timeout=None)

    def fetch_folder(self, remote: str, local: Path) -> None:
        """Copy a remote folder here, replacing `local` only once the copy is whole."""
        local.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=local.parent, prefix=".fetch-") as scratch:
            with tempfile.TemporaryFile() as archive:  # a checkpoint can be large: on disk
                self.call("tar", remote, stdout=archive, timeout=None)
                archive.seek(0)
                with tarfile.open(fileobj=archive, mode="r") as tar:
                    tar.extractall(Path(scratch) / "copy", filter="data")
            if local.exists():
                shutil.rmtree(local)
            (Path(scratch) / "copy").rename(local)

    def fetch_tail(self, remote: str, offset: int) -> bytes:
        return self.call("read", remote, str(offset))


def _prefix_matches(upload: Upload, there: dict[str, Any]) -> bool:
    part = int(there["part"])
    return 0 < part < upload.size and there["part_sha"] == _sha256(upload.local, part)


class RemoteRun:
    """Start, follow, stop and copy back one run on a machine."""

    def __init__(self, remote: RemoteMachine, prepared: PreparedRun, state: RemoteState) -> None:
        self.remote = remote
        self.local_run_dir = prepared.job_path.parent
        self.local_adapter_dir = Path(prepared.job.adapter_dir)
        self.local_model_path = prepared.job.model_path
        self.log_path = prepared.log_path
        self.state = state
        self.ended = False
        self.exit_code: int | None = None  # the trainer's there, once it has ended
        # A follower killed after storing a line but before saving its offset stored it
        # already: the same first line, read again, is not passed on twice.
        self._stored_last = _last_line_of(prepared.events_path)
        self._detached = threading.Event()  # see detach()
        self._follower: subprocess.Popen[bytes] | None = None

    @property
    def _remote_run(self) -> str:
        return self.state.run_dir

    # --- starting -------------------------------------------------------------------------------

    @classmethod
    def upload_and_start(cls, remote: RemoteMachine, prepared: PreparedRun, processes: int,
                         progress: Callable[[str], None]) -> RemoteRun:
        staged = cls.upload(remote, prepared, progress)
        command = trainer_command("run", f"{staged.run_dir}/job.json", processes=processes,
                                  python=remote.machine.python)
        return cls.start(remote, prepared, staged, command)

    @classmethod
    def upload(cls, remote: RemoteMachine, prepared: PreparedRun,
               progress: Callable[[str], None]) -> RemoteState:
        """Send what the run needs (its job there, data, checkpoints so far, a local model);
        the state of the run there, not started yet."""
        machine, job = remote.machine, prepared.job
        home = remote.home()
        local_run = Path(job.log_dir)
        run_dir = f"{home}/runs/{local_run.parent.parent.name}/{local_run.name}"
        remote_job = dataclasses.replace(
            job, train_path=f"{run_dir}/train.jsonl",
            eval_path=f"{run_dir}/eval.jsonl" if job.eval_path else None,
            checkpoints_dir=f"{run_dir}/checkpoints", adapter_dir=f"{run_dir}/adapter",
            log_dir=run_dir, model_path=cls.upload_model(remote, home, job.model_path, progress))
        remote_job.write(local_run / REMOTE_JOB_FILE)
        files = [Upload.of(local_run / REMOTE_JOB_FILE, f"{run_dir}/job.json"),
                 Upload.of(Path(job.train_path), remote_job.train_path)]
        if job.eval_path and remote_job.eval_path:
            files.append(Upload.of(Path(job.eval_path), remote_job.eval_path))
        files += _folder_uploads(Path(job.checkpoints_dir), remote_job.checkpoints_dir)
        remote.upload(files, progress)
        return RemoteState(machine.name, run_dir, remote_job.adapter_dir,
                           model_dir=remote_job.model_path if remote_job.model_path
                           != job.model_path else None)

    @classmethod
    def start(cls, remote: RemoteMachine, prepared: PreparedRun, staged: RemoteState,
              command: list[str]) -> RemoteRun:
        """Start `command` detached in the uploaded run folder there; the run to follow."""
        started = json.loads(remote.call("start", staged.run_dir, json.dumps(command)))
        state = dataclasses.replace(staged, offset=started["offset"])
        local_run = prepared.job_path.parent
        previous = RemoteState.load(local_run)
        if previous is not None and previous.run_dir == state.run_dir:  # a resume: same log
            state.log_offset = previous.log_offset
        state.save(local_run)
        return cls(remote, prepared, state)

    @staticmethod
    def upload_model(remote: RemoteMachine, home: str, model_path: str,
                     progress: Callable[[str], None]) -> str:
        """The model's path there: a local folder is sent once, under its manifest's hash."""
        folder = Path(model_path)
        if not folder.is_dir():
            return model_path  # a Hub id: the machine downloads it itself
        progress("Checking the base model's files")
        uploads = _folder_uploads(folder, "")
        manifest = json.dumps([[u.remote, u.size, u.sha256] for u in uploads]).encode()
        target = f"{home}/models/{hashlib.sha256(manifest).hexdigest()[:32]}"
        marker = f"{target}/.finetuneflow-manifest.json"
        with tempfile.TemporaryDirectory() as scratch:
            marker_file = Path(scratch) / "manifest.json"
            marker_file.write_bytes(manifest)
            marker_upload = Upload.of(marker_file, marker)
            there = json.loads(remote.call("have", input=json.dumps([marker]).encode()))[0]
            if there["sha"] != marker_upload.sha256:
                remote.upload([dataclasses.replace(u, remote=f"{target}/{u.remote}")
                               for u in uploads], progress)
                remote.upload([marker_upload], progress)  # last: the folder is now complete
        return target

    # --- following ------------------------------------------------------------------------------

    def follow(self, on_line: Callable[[str], None], cancel: CancelToken | None = None,
               notice: Callable[[str], None] = log.warning) -> bool:
        """Stream the run's events to `on_line` until the trainer there ends: True. False when
        the connection stayed lost through every retry (the run goes on there). `notice`
        hears of each reconnection."""
        stopper = self._watch_cancel(cancel) if cancel is not None else None
        try:
            failures = 0
            while failures <= len(RECONNECT_DELAYS_S):
                got_lines = False
                for line in self._follow_once():
                    got_lines = True
                    self._handle(line, on_line)
                if self.ended:
                    self._fetch_log()
                    return True
                if self._detached.is_set():
                    return False
                failures = 0 if got_lines else failures + 1
                if failures <= len(RECONNECT_DELAYS_S):
                    delay = RECONNECT_DELAYS_S[min(failures, len(RECONNECT_DELAYS_S)) - 1]
                    notice(f"Lost the connection to {self.remote.machine.name}; "
                           f"reconnecting in {delay} s (the run goes on there).")
                    if self._detached.wait(delay):
                        return False
            return False
        finally:
            if stopper is not None:
                stopper.set()

    def _follow_once(self) -> Iterator[bytes]:
        command = self.remote.command("follow", self._remote_run, str(self.state.offset))
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL)
        self._follower = child
        if self._detached.is_set():  # detached while it started: detach() missed it
            child.kill()
        assert child.stdout is not None
        try:
            for raw in child.stdout:
                if not raw.endswith(b"\n"):
                    break  # cut by the dropped connection: read again from the offset
                if raw.startswith(ENDED_MARK):
                    self.ended = True
                    code = json.loads(raw[len(ENDED_MARK):])
                    self.exit_code = None if code is None else int(code)
                    break
                yield raw
        finally:
            child.kill()
            child.wait()

    def _handle(self, raw: bytes, on_line: Callable[[str], None]) -> None:
        line = raw.decode("utf-8", errors="replace").strip()
        if line:
            local = self._localise(line)
            if local != self._stored_last:
                on_line(local)
            self._stored_last = None
        self.state.offset += len(raw)
        self.state.save(self.local_run_dir)

    def _localise(self, line: str) -> str:
        """Copy back what the event announces; the event with the local paths."""
        try:
            event = decode(line)
        except ProtocolError:
            return line
        if isinstance(event, CheckpointEvent):
            self._fetch_checkpoint(event.path)
        elif isinstance(event, StoppedEvent) and event.checkpoint:
            self._fetch_checkpoint(event.checkpoint)
        elif isinstance(event, FinishedEvent):
            self.remote.fetch_folder(self.state.adapter_dir, self.local_adapter_dir)
            self._fetch_metrics(event)
        return encode(self._local_paths(event))

    def _fetch_checkpoint(self, remote_path: str) -> None:
        local = self._local_path(remote_path)
        if not (Path(local) / "trainer_state.json").is_file():
            try:
                self.remote.fetch_folder(remote_path, Path(local))
            except UserError as error:  # e.g. already rotated out there: later ones follow
                log.warning("Could not copy back %s: %s", remote_path, error)

    def _fetch_metrics(self, event: FinishedEvent) -> None:
        if event.metrics_path:
            data = self.remote.fetch_tail(event.metrics_path, 0)
            Path(self._local_path(event.metrics_path)).write_bytes(data)

    def _local_paths(self, event: Event) -> Event:
        changes = {f.name: self._local_path(value) for f in dataclasses.fields(event)
                   if isinstance(value := getattr(event, f.name), str)}
        return dataclasses.replace(cast(Any, event), **changes)  # type: ignore[no-any-return]

    def _local_path(self, value: str) -> str:
        """The remote folders named in a value (a path, or a message that quotes one) turned
        into their local counterparts, so nothing stored here names the other machine's
        files."""
        pairs = [(self.state.adapter_dir, str(self.local_adapter_dir)),
                 (self._remote_run, str(self.local_run_dir))]
        if self.state.model_dir:
            pairs.append((self.state.model_dir, self.local_model_path))
        for remote, local in pairs:  # the adapter first: it lies inside the remote run folder
            value = value.replace(remote, local)
        return value

    def _fetch_log(self) -> None:
        """Append what the remote trainer wrote to its log since the last copy."""
        try:
            data = self.remote.fetch_tail(f"{self._remote_run}/trainer.log",
                                          self.state.log_offset)
        except UserError as error:
            log.warning("Could not copy the trainer's log back: %s", error)
            return
        with self.log_path.open("ab") as local_log:
            local_log.write(data)
        self.state.log_offset += len(data)
        self.state.save(self.local_run_dir)

    def detach(self) -> None:
        """End `follow` soon, as a lost connection would, without stopping the run there (the
        app is closing): it returns False, and a reattach continues from the saved offset. Safe
        from any thread."""
        self._detached.set()
        follower = self._follower
        if follower is not None and follower.poll() is None:
            follower.kill()

    # --- stopping -------------------------------------------------------------------------------

    def stop(self) -> bool:
        """Send the stop line to the trainer there; False if it has ended already."""
        return self.remote.call("stop", self._remote_run).strip() == b"sent"

    def kill(self) -> None:
        self.remote.call("kill", self._remote_run)

    def _watch_cancel(self, cancel: CancelToken) -> threading.Event:
        return stop_on_cancel(cancel, self.stop, self.kill, self.remote.machine.name)


def stop_on_cancel(cancel: CancelToken, stop: Callable[[], object], kill: Callable[[], object],
                   machine: str) -> threading.Event:
    """On cancel: `stop` the run there, and `kill` it if it has not ended (the returned event
    is set then) after the grace period. A step that cannot reach the machine (UserError) is
    tried again on the reconnection delays until it goes through or the run's end is known: a
    Stop pressed while the connection is down still stops the run once it is back."""
    finished = threading.Event()

    def attempt(step: Callable[[], object], verb: str) -> bool:
        delays = itertools.chain(RECONNECT_DELAYS_S, itertools.repeat(RECONNECT_DELAYS_S[-1]))
        while not finished.is_set():
            try:
                step()
                return True
            except UserError as error:
                delay = next(delays)
                log.warning("Could not %s the run on %s (%s); trying again in %d s.", verb,
                            machine, error, delay)
                finished.wait(delay)
        return False

    def watch() -> None:
        while not finished.is_set():
            if cancel.wait(0.2):
                if attempt(stop, "stop") and not finished.wait(STOP_GRACE_SECONDS):
                    attempt(kill, "kill")
                return

    threading.Thread(target=watch, name="remote-stop", daemon=True).start()
    return finished


class RemoteTraining:
    """The use cases: train on a machine, reattach to its run."""

    def __init__(self, context: AppContext) -> None:
        self._context = context
        self._store = MachineStore(context.home)

    def machine(self, name: str) -> Machine:
        """The machine of that name (NotFoundError, which says what to do, if none)."""
        return self._store.get(name)

    def start(self, prepared: PreparedRun, machine_name: str, processes: int = 1,
              progress: Callable[[str], None] = lambda _message: None) -> RemoteRun:
        """Upload what the run needs and start its trainer there."""
        remote = RemoteMachine(self._store, self._store.get(machine_name))
        return RemoteRun.upload_and_start(remote, prepared, processes, progress)

    def attach(self, prepared: PreparedRun, machine_name: str | None = None) -> RemoteRun:
        """The run of `prepared` (made by TrainingService.prepare_attach), already on a
        machine: follow it from where the last follow stopped."""
        state = RemoteState.load(prepared.job_path.parent)
        if state is None:
            raise UserError(f"Run {prepared.run_id} did not train on another machine, so there is "
                            "nothing to reattach to: use --resume to continue it here.")
        if machine_name is not None and machine_name != state.machine:
            raise UserError(f"Run {prepared.run_id} trains on {state.machine}, not "
                            f"{machine_name}: reattach with --on {state.machine}.")
        remote = RemoteMachine(self._store, self._store.get(state.machine))
        return RemoteRun(remote, prepared, state)

    def begin(self, recorder: RunRecorder, prepared: PreparedRun, machine_name: str,
              processes: int, attach: bool, progress: Callable[[str], None]) -> RemoteRun:
        """Start the run there, or reattach to it; a refusal fails the job with its reason
        (UserError, raised on) before anything is followed."""
        try:
            if attach:
                return self.attach(prepared, machine_name)
            return self.start(prepared, machine_name, processes, progress=progress)
        except UserError as error:
            recorder.process_ended(None, str(error), failed=True)
            raise


def follow_remote(run: RemoteRun, recorder: RunRecorder, project_ref: str,
                  on_line: Callable[[str], None], cancel: CancelToken | None = None,
                  notice: Callable[[str], None] = log.warning) -> None:
    """Follow the run to its end and close the job the way it ended."""
    name = run.remote.machine.name
    if not run.follow(on_line, cancel, notice):
        reattach = f"reattach with `finetuneflow train {project_ref} --on {name} --attach`"
        recorder.process_ended(None, (
            f"Lost the connection to {name} while stopping the training there, which may go "
            f"on: {reattach} to see it end, or to stop it again."
            if cancel is not None and cancel.cancelled else
            f"Lost the connection to {name}; the training goes on there: {reattach}."))
        return
    how = "it was killed" if run.exit_code in KILLED_CODES or run.exit_code is None else \
        f"exit code {run.exit_code}"
    recorder.process_ended(run.exit_code, f"The trainer on {name} ended without finishing "
                           f"({how}); its log is in {run.log_path}: resume from the last "
                           f"copied checkpoint with `finetuneflow train {project_ref} --resume "
                           f"--on {name}`.", failed=True)


def _folder_uploads(folder: Path, remote: str) -> list[Upload]:
    """Every file under `folder`, to the same relative path under `remote`."""
    if not folder.is_dir():
        return []
    prefix = f"{remote}/" if remote else ""
    return [Upload.of(path, prefix + path.relative_to(folder).as_posix())
            for path in sorted(folder.rglob("*")) if path.is_file()]


def _last_line_of(path: Path) -> str | None:
    try:
        with path.open("rb") as stream:
            stream.seek(max(0, stream.seek(0, 2) - (1 << 16)))
            lines = stream.read().decode("utf-8", errors="replace").strip().splitlines()
    except FileNotFoundError:
        return None
    return lines[-1].strip() if lines else None


def _sha256(path: Path, limit: int | None = None) -> str:
    digest = hashlib.sha256()
    left = path.stat().st_size if limit is None else limit
    with path.open("rb") as stream:
        while left > 0 and (block := stream.read(min(left, 1 << 20))):
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"
