"""Machines to train on over SSH: add, list, remove, and a check that one is ready.

The SSH engine is the system's OpenSSH client (`ssh`, `ssh-keyscan`, `ssh-keygen`): it uses the
person's own keys, agent, ssh_config and known_hosts, so no key material passes through the app,
and it ships with Linux, macOS and Windows 10+. It runs with BatchMode (never a password prompt)
and StrictHostKeyChecking=yes against two known_hosts files: the app's own (where keys accepted
here go) and the person's ~/.ssh/known_hosts, which the app reads but never writes.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from finetuneflow.core.child_protocol import JOB_VERSION, ProbeEvent, probe_outcome
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


def check_machine(home: Home, name: str, accept_host_key: str | None = None) -> MachineCheck:
    """Connect, check the remote python and trainer, and run the trainer's probe there.

    accept_host_key: the fingerprint the person checked; trusted only when the host shows it."""
    store = MachineStore(home)
    machine = store.get(name)
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
        raise UserError(f"FineTuneFlow's trainer is not installed for {machine.python} on "
                        f"{machine.name} ({facts['problem']}): install it there with "
                        "`pip install finetuneflow[trainer]`.")
    if facts.get("protocol") != JOB_VERSION:
        raise UserError(f"FineTuneFlow {facts.get('finetuneflow')} on {machine.name} speaks "
                        f"trainer protocol {facts.get('protocol')}, this app speaks {JOB_VERSION}:"
                        " install the same FineTuneFlow version on both.")
    return JOB_VERSION


def _probe(store: MachineStore, machine: Machine) -> ProbeEvent:
    command = [machine.python, "-m", "finetuneflow", "trainer", "probe"]
    result = _ssh(store, machine, command, PROBE_TIMEOUT_S)
    if isinstance(outcome := probe_outcome(result.stdout), ProbeEvent):
        return outcome
    raise UserError(f"The trainer on {machine.name} could not inspect its hardware "
                    f"({_last_line(result.stderr)}): install the trainer's libraries there with "
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


def _ssh(store: MachineStore, machine: Machine, remote: list[str], timeout: float
         ) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(ssh_command(store, machine, remote), capture_output=True,
                                text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise UserError(f"{machine.name} did not finish the check within {timeout:.0f} s: check "
                        "the network and the machine's load, then try again.") from None
    if result.returncode == EXIT_SSH:
        raise _ssh_failure(machine, result.stderr)
    return result


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
