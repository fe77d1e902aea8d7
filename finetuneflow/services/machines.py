"""Machines to train on over SSH: add, list, remove, a check that one is ready (its outcome
kept as the machine's last check), and the set-up of the trainer there (a venv in the remote home
with this version's wheel).

The SSH engine is the system's OpenSSH client (`ssh`, `ssh-keyscan`, `ssh-keygen`): it uses the
person's own keys, agent, ssh_config and known_hosts, so no key material passes through the app,
and it ships with Linux, macOS and Windows 10+. It runs with BatchMode (never a password prompt)
and StrictHostKeyChecking=yes against two known_hosts files: the app's own (where keys accepted
here go) and the person's ~/.ssh/known_hosts, which the app reads but never writes.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from finetuneflow import __version__
from finetuneflow.core.child_protocol import JOB_VERSION, ProbeEvent, probe_outcome
from finetuneflow.core.units import format_bytes, format_duration
from finetuneflow.services.errors import UserError
from finetuneflow.storage.home import Home
from finetuneflow.storage.machines import (
    DEFAULT_PYTHON,
    Machine,
    MachineStore,
    check_name,
    parse_ssh_url,
)

CONNECT_TIMEOUT_S = 10
CHECK_TIMEOUT_S = 60
PROBE_TIMEOUT_S = 180  # the probe imports torch: slow on a cold disk
PROBE_MAX_AGE_S = 24 * 3600  # as this computer's probe: GPUs and drivers change rarely
EXIT_SSH = 255  # ssh's own failures (connection, authentication, host key)
EXIT_NOT_FOUND = 127  # the remote shell found no such command
# Runs on the remote python: its version, and the trainer's version and protocol if importable.
REMOTE_CHECK = """\
import json, sys
info = {"python": "%d.%d.%d" % sys.version_info[:3]}
try:
    import finetuneflow
    from finetuneflow.core.child_protocol import JOB_VERSION
    info.update(finetuneflow=finetuneflow.__version__, protocol=JOB_VERSION)
except Exception as error:
    info["problem"] = "%s: %s" % (type(error).__name__, error)
print(json.dumps(info))
"""


class TrainerMissing(UserError):
    """FineTuneFlow's trainer is not there, or speaks another protocol: `machine setup` helps."""

    def __init__(self, machine: Machine, cause: str) -> None:
        self.machine = machine
        self.cause = cause
        super().__init__(f"{cause}: set it up there with `finetuneflow machine setup "
                         f"{machine.name}` (or `pip install finetuneflow[trainer]` of this "
                         "version into that python).")


class HostKeyUnknown(UserError):
    """The host is in no known_hosts file: the person must check and accept its fingerprint."""

    def __init__(self, machine: Machine, fingerprint: str) -> None:
        self.machine = machine
        self.fingerprint = fingerprint
        super().__init__(
            f"The host key of {machine.name} ({machine.host}) is not known yet; its fingerprint "
            f"is {fingerprint}: check it with the machine's owner, then run `finetuneflow machine "
            f"test {machine.name} --accept-host-key {fingerprint}`.")


@dataclass(frozen=True)
class MachineCheck:
    machine: Machine
    python_version: str
    finetuneflow_version: str
    protocol: int
    probe: ProbeEvent

    def to_json(self) -> dict[str, Any]:
        return {"machine": self.machine.to_json(), "python_version": self.python_version,
                "finetuneflow_version": self.finetuneflow_version, "protocol": self.protocol,
                "probe": asdict(self.probe)}


def add_machine(home: Home, name: str, url: str, key: str | None = None,
                python: str | None = None) -> Machine:
    user, host, port = parse_ssh_url(url)
    machine = Machine(name=check_name(name), user=user, host=host, port=port,
                      key=_key_path(key) if key else None, python=python or DEFAULT_PYTHON)
    MachineStore(home).add(machine)
    return machine


def _key_path(key: str) -> str:
    path = Path(key).expanduser().absolute()
    if not path.is_file():
        raise UserError(f"The key file {path} does not exist: give the path of your private key "
                        "(or leave --key out to use the SSH agent).")
    return str(path)


def list_machines(home: Home) -> list[Machine]:
    return MachineStore(home).machines()


def remove_machine(home: Home, name: str) -> Machine:
    return MachineStore(home).remove(name)


@dataclass(frozen=True)
class LastCheck:
    """The outcome of a machine's last check, as kept in the home folder."""

    time: float
    ok: bool
    message: str = ""  # the failure's message
    probe: ProbeEvent | None = None

    def age_s(self) -> float:
        return max(0.0, time.time() - self.time)

    def summary(self) -> str:
        """One line for a list: when, and what was found (or what went wrong)."""
        when = f"{format_duration(self.age_s())} ago"
        if not self.ok:
            return f"Failed {when}: {self.message}"
        return f"Ready {when} · {gpu_names(self.probe) or 'no GPU'}"


def gpu_names(probe: ProbeEvent | None) -> str:
    """The GPUs a probe found with their memory, or "" for none."""
    return ", ".join(f"{gpu.get('name', 'GPU')} ({format_bytes(gpu.get('total_bytes') or 0)})"
                     for gpu in (probe.gpus if probe is not None else []))


def machine_probe(home: Home, name: str, refresh: bool = False) -> ProbeEvent:
    """What the machine trains on: its last check's probe while recent, else a new check's."""
    last = None if refresh else last_check(home, name)
    if last is not None and last.ok and last.probe is not None and (
            last.age_s() < PROBE_MAX_AGE_S):
        return last.probe
    return check_machine(home, name).probe


def last_check(home: Home, name: str) -> LastCheck | None:
    entry = MachineStore(home).last_check(name)
    if entry is None:
        return None
    try:
        probe = entry.get("probe")
        return LastCheck(time=float(entry["time"]), ok=bool(entry["ok"]),
                         message=str(entry.get("message", "")),
                         probe=ProbeEvent(**probe) if isinstance(probe, dict) else None)
    except (KeyError, TypeError, ValueError):  # written by another version: as if never checked
        return None


def check_machine(home: Home, name: str, accept_host_key: str | None = None) -> MachineCheck:
    """Connect, check the remote python and trainer, and run the trainer's probe there; the
    outcome is kept as the machine's last check.

    accept_host_key: the fingerprint the person checked; trusted only when the host shows it."""
    store = MachineStore(home)
    machine = store.get(name)
    try:
        check = _check(home, store, machine, accept_host_key)
    except UserError as error:
        store.record_check(name, {"time": time.time(), "ok": False, "message": str(error)})
        raise
    store.record_check(name, {"time": time.time(), "ok": True, "probe": asdict(check.probe)})
    return check


def _check(home: Home, store: MachineStore, machine: Machine, accept_host_key: str | None
           ) -> MachineCheck:
    try:
        facts = _remote_facts(store, machine)
    except HostKeyUnknown:
        if accept_host_key is None:
            raise
        trust_host_key(home, machine, accept_host_key)
        facts = _remote_facts(store, machine)
    protocol = _check_trainer(machine, facts)
    return MachineCheck(machine=machine, python_version=facts["python"],
                        finetuneflow_version=str(facts["finetuneflow"]), protocol=protocol,
                        probe=_probe(store, machine))


def trust_host_key(home: Home, machine: Machine, fingerprint: str) -> None:
    """Add the host's key to the app's known_hosts if, scanned now, it has this fingerprint."""
    scanned = _scan_host_keys(machine)
    matching = [line for line, seen in scanned if seen == fingerprint.strip()]
    if not matching:
        shown = ", ".join(seen for _, seen in scanned)
        raise UserError(f"{machine.name} ({machine.host}) shows the host key {shown}, not "
                        f"{fingerprint}: do not connect until its owner confirms which is right.")
    MachineStore(home).trust(matching)


def _remote_facts(store: MachineStore, machine: Machine) -> dict[str, Any]:
    result = _ssh(store, machine, [machine.python, "-c", REMOTE_CHECK], CHECK_TIMEOUT_S)
    if result.returncode == EXIT_NOT_FOUND:
        raise UserError(f"{machine.name} has no python at {machine.python!r}: install Python 3.11 "
                        "or newer there, or give its path with `machine add … --python PATH`.")
    try:
        facts: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise UserError(f"{machine.python} on {machine.name} did not answer the check "
                        f"({_last_line(result.stderr)}): check that it is a Python 3.11+ "
                        "interpreter.") from None
    return facts


def _check_trainer(machine: Machine, facts: dict[str, Any]) -> int:
    if "problem" in facts:
        raise TrainerMissing(machine, f"FineTuneFlow's trainer is not installed for "
                             f"{machine.python} on {machine.name} ({facts['problem']})")
    if facts.get("protocol") != JOB_VERSION:
        raise TrainerMissing(machine, f"FineTuneFlow {facts.get('finetuneflow')} on "
                             f"{machine.name} speaks trainer protocol {facts.get('protocol')}, "
                             f"this app speaks {JOB_VERSION}")
    return JOB_VERSION


def _probe(store: MachineStore, machine: Machine) -> ProbeEvent:
    command = [machine.python, "-m", "finetuneflow", "trainer", "probe"]
    result = _ssh(store, machine, command, PROBE_TIMEOUT_S)
    if isinstance(outcome := probe_outcome(result.stdout), ProbeEvent):
        return outcome
    raise UserError(f"The trainer on {machine.name} could not inspect its hardware "
                    f"({_last_line(result.stderr)}): install the trainer's libraries there with "
                    f"`finetuneflow machine setup {machine.name}` or "
                    "`pip install finetuneflow[trainer]`.")


def ssh_command(store: MachineStore, machine: Machine, remote: list[str],
                options: Sequence[str] = ()) -> list[str]:
    """The ssh command line that runs `remote` (quoted for the remote shell) on the machine;
    `options`: more ssh options (-o NAME=VALUE pairs)."""
    known_hosts = f'"{store.known_hosts}" ~/.ssh/known_hosts'
    command = [_tool("ssh"), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
               "-o", f"UserKnownHostsFile={known_hosts}",
               "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}", "-p", str(machine.port),
               "-l", machine.user]
    if machine.key:
        command += ["-i", machine.key, "-o", "IdentitiesOnly=yes"]
    return [*command, *options, "--", machine.host, shlex.join(remote)]


def _ssh(store: MachineStore, machine: Machine, remote: list[str], timeout: float,
         stdin: IO[bytes] | None = None, what: str = "the check"
         ) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(ssh_command(store, machine, remote), capture_output=True,
                                text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL if stdin is None else stdin)
    except subprocess.TimeoutExpired:
        raise _timed_out(machine, what, timeout) from None
    if result.returncode == EXIT_SSH:
        raise _ssh_failure(machine, result.stderr)
    return result


def _timed_out(machine: Machine, what: str, timeout: float) -> UserError:
    return UserError(f"{machine.name} did not finish {what} within {timeout:.0f} s: check the "
                     "network and the machine's load, then try again.")


def _ssh_failure(machine: Machine, stderr: str) -> UserError:
    """ssh's own failure, worded by what the person can do about it."""
    where = f"{machine.name} ({machine.host}:{machine.port})"
    if "IDENTIFICATION HAS CHANGED" in stderr or "has changed" in stderr:
        return UserError(f"The host key of {where} has changed since it was accepted: this can "
                         "be an attack; ask the machine's owner, and only if they changed it, "
                         "remove the old key with `ssh-keygen -R` from the known_hosts file "
                         "ssh names.")
    if "Host key verification failed" in stderr or "host key is known" in stderr:
        return HostKeyUnknown(machine, _preferred(_scan_host_keys(machine)))
    if "Connection refused" in stderr:
        return UserError(f"{where} refused the connection: check that its SSH server runs and "
                         "the port is right.")
    if "timed out" in stderr:
        return UserError(f"{where} did not answer within {CONNECT_TIMEOUT_S} s: check the "
                         "address, the network and any firewall.")
    if "Permission denied" in stderr:
        key = machine.key or "the SSH agent's keys"
        return UserError(f"{where} did not accept {machine.user} with {key}: add the public key "
                         "to that user's ~/.ssh/authorized_keys there, or give another --key.")
    if "Could not resolve" in stderr:
        return UserError(f"The host name {machine.host} cannot be found: check the spelling or "
                         "the network.")
    return UserError(f"Could not connect to {where} ({_last_line(stderr)}): check the address "
                     "and try `ssh` by hand.")


def _scan_host_keys(machine: Machine) -> list[tuple[str, str]]:
    """(known_hosts line, SHA256 fingerprint) of each key the host offers now."""
    scan = subprocess.run(
        [_tool("ssh-keyscan"), "-T", str(CONNECT_TIMEOUT_S), "-p", str(machine.port),
         machine.host], capture_output=True, text=True, timeout=CONNECT_TIMEOUT_S * 3)
    lines = [line for line in scan.stdout.splitlines() if line and not line.startswith("#")]
    if not lines:
        raise UserError(f"{machine.name} ({machine.host}:{machine.port}) showed no host key "
                        f"({_last_line(scan.stderr)}): check that its SSH server runs.")
    return [(line, _fingerprint(line)) for line in lines]


def _fingerprint(known_hosts_line: str) -> str:
    result = subprocess.run([_tool("ssh-keygen"), "-l", "-f", "-"], input=known_hosts_line,
                            capture_output=True, text=True, timeout=CONNECT_TIMEOUT_S,
                            check=True)
    return result.stdout.split()[1]  # "256 SHA256:… host (ED25519)"


def _preferred(scanned: list[tuple[str, str]]) -> str:
    """The fingerprint to show: the Ed25519 key's, which OpenSSH picks first, if offered."""
    ed25519 = [seen for line, seen in scanned if " ssh-ed25519 " in line]
    return (ed25519 or [scanned[0][1]])[0]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise UserError(f"The OpenSSH client ({name}) is not installed: install it (Linux: the "
                        "openssh-client package; Windows: the OpenSSH Client optional feature).")
    return path


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


# --- setting the trainer up there -------------------------------------------------------------

DEFAULT_VENV = "~/.finetuneflow-remote/venv"
VENV_TIMEOUT_S = 600  # ensurepip on a slow disk
UPLOAD_TIMEOUT_S = 600
INSTALL_TIMEOUT_S = 3 * 3600  # pip fetches torch & co. there: gigabytes
# A checkout (or an editable install): the project's source lies beside the package.
SOURCE_ROOT = Path(__file__).resolve().parents[2]
# Runs on the python the venv is made with: the venv's absolute path, made unless it exists.
REMOTE_VENV = """\
import json, os, shutil, sys
target = os.path.abspath(os.path.expanduser(sys.argv[1]))
answer = {"venv": target, "python": os.path.join(target, "bin", "python"),
          "version": "%d.%d.%d" % sys.version_info[:3]}
existed = os.path.exists(target)
try:
    if sys.version_info < (3, 11):
        answer["problem"] = "old"
    elif existed and not os.path.exists(os.path.join(target, "pyvenv.cfg")) and os.listdir(target):
        answer["problem"] = "not_empty"
    elif not os.path.exists(answer["python"]):
        import ensurepip, venv
        venv.EnvBuilder(with_pip=True, system_site_packages=sys.argv[2] == "1").create(target)
except ImportError as error:
    answer.update(problem="no_venv", detail=str(error))
except Exception as error:
    output = getattr(error, "output", None) or str(error)
    if isinstance(output, bytes):
        output = output.decode(errors="replace")
    lines = [line for line in output.strip().splitlines() if line.strip()] or [repr(error)]
    space = getattr(error, "errno", 0) == 28 or "No space left" in output
    answer.update(problem="no_space" if space else "failed", detail=lines[-1].strip())
    if not existed:
        shutil.rmtree(target, ignore_errors=True)
print(json.dumps(answer))
"""


@dataclass(frozen=True)
class SetupOptions:
    venv: str = DEFAULT_VENV  # on the machine; `~` is its home
    python: str | None = None  # the python to make the venv with; None: the machine's
    system_site_packages: bool = False  # the venv also sees that python's packages
    pip_args: tuple[str, ...] = ()  # for pip install there (an index, --no-deps …)


@dataclass(frozen=True)
class SetupResult:
    venv: str
    check: MachineCheck

    def to_json(self) -> dict[str, Any]:
        return {"venv": self.venv, **self.check.to_json()}


def setup_machine(home: Home, name: str, options: SetupOptions | None = None,
                  on_line: Callable[[str], None] = lambda _line: None) -> SetupResult:
    """Install this version's trainer into a venv on the machine, make that venv's python the
    machine's, and check it again. `on_line` hears each step and pip's output."""
    options = options or SetupOptions()
    store = MachineStore(home)
    machine = store.get(name)
    on_line(f"Making the venv {options.venv} on {name}…")
    venv, python = _make_venv(store, machine, options)
    wheel = local_wheel(home)
    installing = ("Installing FineTuneFlow's trainer there (pip fetches its libraries: this can "
                  "take a while)…")
    if wheel is None:  # a released version: pip takes it from the machine's index
        on_line(installing)
        _pip_install(store, machine, python,
                     [*options.pip_args, f"finetuneflow[trainer]=={__version__}"], on_line)
    else:
        remote_wheel = f"{venv}/wheels/{wheel.name}"
        on_line(f"Copying {wheel.name} to {name}…")
        _upload(store, machine, wheel, f"{venv}/wheels")
        on_line(installing)
        _pip_install(store, machine, python, [*options.pip_args, f"{remote_wheel}[trainer]"],
                     on_line)
        # The same version number may be other code (a checkout): pip would keep the old one.
        _pip_install(store, machine, python,
                     [*options.pip_args, "--force-reinstall", "--no-deps", remote_wheel], on_line)
    store.set_python(name, python)
    on_line(f"Checking {name} again…")
    return SetupResult(venv=venv, check=check_machine(home, name))


def local_wheel(home: Home) -> Path | None:
    """A wheel of this very FineTuneFlow, built from its source and cached by the source's
    content; None when there is no source (a release installed from an index)."""
    if not (SOURCE_ROOT / "pyproject.toml").is_file():
        return None
    folder = home.root / "cache" / "wheels" / _source_digest()
    built = sorted(folder.glob("finetuneflow-*.whl"))
    if built:
        return built[0]
    (home.root / "tmp").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wheel-", dir=home.root / "tmp") as work:
        # Built from a copy: setuptools writes build/ and *.egg-info into the tree it builds.
        source = Path(work) / "source"
        shutil.copytree(SOURCE_ROOT / "finetuneflow", source / "finetuneflow",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(SOURCE_ROOT / name, source / name)
        result = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
             "--disable-pip-version-check", "-q", "-w", str(Path(work) / "out"), str(source)],
            capture_output=True, text=True, timeout=VENV_TIMEOUT_S)
        wheels = sorted((Path(work) / "out").glob("finetuneflow-*.whl"))
        if result.returncode != 0 or not wheels:
            raise UserError(f"Building the trainer's wheel here failed ({_last_line(result.stderr)}"
                            "): check that pip and setuptools are installed in this Python.")
        folder.mkdir(parents=True, exist_ok=True)
        return Path(shutil.move(wheels[0], folder / wheels[0].name))


def _source_digest() -> str:
    digest = hashlib.sha256((SOURCE_ROOT / "pyproject.toml").read_bytes())
    for path in sorted((SOURCE_ROOT / "finetuneflow").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(SOURCE_ROOT)).encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _make_venv(store: MachineStore, machine: Machine, options: SetupOptions) -> tuple[str, str]:
    """(the venv's absolute path, its python) on the machine, made there unless it exists."""
    base = options.python or machine.python
    flag = "1" if options.system_site_packages else "0"
    result = _ssh(store, machine, [base, "-c", REMOTE_VENV, options.venv, flag], VENV_TIMEOUT_S,
                  what="making the venv")
    if result.returncode == EXIT_NOT_FOUND:
        raise UserError(f"{machine.name} has no python at {base!r} to make the trainer's venv "
                        "with: install Python 3.11 or newer there (Debian/Ubuntu: apt install "
                        "python3 python3-venv), or name one with --python PATH.")
    try:
        answer: dict[str, str] = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise UserError(f"{base} on {machine.name} could not make a venv "
                        f"({_last_line(result.stderr)}): name a Python 3.11+ interpreter with "
                        "--python PATH.") from None
    problem, detail, venv = answer.get("problem"), answer.get("detail"), answer["venv"]
    if problem == "no_space":
        raise _no_space(machine, venv)
    if problem is not None:
        raise UserError({
            "old": f"Python {answer['version']} at {base} on {machine.name} is too old for the "
                   "trainer (it needs 3.11 or newer): install a newer one there and name it with "
                   "--python PATH.",
            "no_venv": f"{base} on {machine.name} cannot make a venv ({detail}): install its "
                       "venv module there (Debian/Ubuntu: apt install python3-venv), or name "
                       "another python with --python PATH.",
            "not_empty": f"{venv} on {machine.name} holds files and is no venv: choose a new "
                         "folder with --venv PATH.",
        }.get(problem, f"Making the venv {venv} on {machine.name} failed ({detail}): check that "
                       "the folder can be written, or choose another with --venv PATH."))
    return venv, answer["python"]


def _upload(store: MachineStore, machine: Machine, wheel: Path, folder: str) -> None:
    with wheel.open("rb") as source:
        result = _ssh(store, machine, ["sh", "-c", 'mkdir -p "$1" && cat > "$1/$2"', "sh",
                                       folder, wheel.name], UPLOAD_TIMEOUT_S, stdin=source,
                      what="copying the trainer's wheel")
    if "No space left" in result.stderr:
        raise _no_space(machine, folder)
    if result.returncode != 0:
        raise UserError(f"Copying the trainer's wheel to {folder} on {machine.name} failed "
                        f"({_last_line(result.stderr)}): check that the folder can be written, "
                        "or choose another with --venv PATH.")


def _pip_install(store: MachineStore, machine: Machine, python: str, arguments: list[str],
                 on_line: Callable[[str], None]) -> None:
    command = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
               "--progress-bar", "off", *arguments]
    code, output = _ssh_streamed(store, machine, command, INSTALL_TIMEOUT_S, on_line,
                                 what="installing the trainer")
    if code == 0:
        return
    if "No space left" in output:
        raise _no_space(machine, python.rsplit("/bin/", 1)[0])
    errors = [line for line in output.splitlines() if line.startswith("ERROR:")]
    cause = errors[-1] if errors else _last_line(output)
    raise UserError(f"Installing FineTuneFlow's trainer on {machine.name} failed (pip: {cause}): "
                    "check that the machine can reach its package index (or give pip's options "
                    f"with --pip-args), then run `finetuneflow machine setup {machine.name}` "
                    "again.")


def _ssh_streamed(store: MachineStore, machine: Machine, remote: list[str], timeout: float,
                  on_line: Callable[[str], None], what: str) -> tuple[int, str]:
    """Run `remote`, handing each line of its output (stdout and stderr) to `on_line` as it
    comes: a long install shows that it moves. (exit code, the last lines)."""
    tail: deque[str] = deque(maxlen=200)
    with subprocess.Popen(ssh_command(store, machine, remote), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                          errors="replace") as child:
        killed = threading.Event()
        timer = threading.Timer(timeout, lambda: (killed.set(), child.kill()))
        timer.start()
        try:
            assert child.stdout is not None
            for line in child.stdout:
                tail.append(line.rstrip())
                on_line(line.rstrip())
        finally:
            timer.cancel()
        code = child.wait()
    output = "\n".join(tail)
    if code == EXIT_SSH:
        raise _ssh_failure(machine, output)
    if killed.is_set():
        raise _timed_out(machine, what, timeout)
    return code, output


def _no_space(machine: Machine, where: str) -> UserError:
    return UserError(f"{machine.name} has no space left in {where}: free some space there (the "
                     "trainer's libraries take several GB), or choose another place with "
                     "--venv PATH.")
