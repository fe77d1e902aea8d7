"""The machines a run can go to over SSH, app-wide, in `machines.json` in the home folder.

A JSON file beside settings.json rather than a table: a handful of app-wide entries that no
project row refers to, readable and editable by hand, and no migration. Only what names a machine
is kept (user, host, port, the path of a key, the remote python): never a password or key
material. The host keys the person accepted in the app go to the app's own `ssh/known_hosts`;
each machine's last check (when, ready or why not, its probe) to `machine_checks.json`.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from finetuneflow.core.atomic import atomic_write_text
from finetuneflow.core.errors import NotFoundError, UserError
from finetuneflow.storage.home import Home

MACHINES_FILE = "machines.json"
CHECKS_FILE = "machine_checks.json"  # each machine's last check: written often, kept apart
KNOWN_HOSTS = Path("ssh") / "known_hosts"
DEFAULT_PYTHON = "python3"
# Letters, digits, '.', '_', '-': a name goes into commands (`--on A,B`) and folder names.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
URL_HINT = "write it as ssh://user@host or ssh://user@host:port"


@dataclass(frozen=True)
class Machine:
    name: str
    user: str
    host: str
    port: int = 22
    key: str | None = None  # the path of the person's own private key; None: the SSH agent
    python: str = DEFAULT_PYTHON
    # The folder runs and models go to there (None: ~/.finetuneflow-remote); set by hand.
    remote_home: str | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ssh://{self.user}@{host}" + (f":{self.port}" if self.port != 22 else "")

    def to_json(self) -> dict[str, Any]:
        shown = {k: v for k, v in asdict(self).items() if k != "remote_home" or v is not None}
        return {**shown, "url": self.url}


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise UserError(f"The machine name {name!r} cannot be used: use up to 64 letters, digits, "
                        "'.', '_' or '-', starting with a letter or digit.")
    return name


def parse_ssh_url(url: str) -> tuple[str, str, int]:
    """(user, host, port) of ssh://user@host[:port]; a UserError says what is wrong."""
    try:
        parts = urlsplit(url.strip())
        port = 22 if parts.port is None else parts.port
    except ValueError:
        raise UserError(f"The port in {url!r} must be a number from 1 to 65535: "
                        f"{URL_HINT}.") from None
    if parts.scheme != "ssh":
        raise UserError(f"{url!r} is not an ssh:// address: {URL_HINT}.")
    if not parts.username or parts.password is not None:
        raise UserError(f"{url!r} names no user (or holds a password, which is never stored): "
                        f"{URL_HINT}, and use a key or the SSH agent.")
    if not parts.hostname or parts.hostname.startswith("-"):
        raise UserError(f"{url!r} names no host: {URL_HINT}.")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UserError(f"{url!r} has more than a user, host and port: {URL_HINT}.")
    if not 1 <= port <= 65535:
        raise UserError(f"The port in {url!r} must be from 1 to 65535: {URL_HINT}.")
    return parts.username, parts.hostname, port


class MachineStore:
    def __init__(self, home: Home) -> None:
        self.path = home.root / MACHINES_FILE
        self.checks_path = home.root / CHECKS_FILE
        self.known_hosts = home.root / KNOWN_HOSTS

    def machines(self) -> list[Machine]:
        try:
            entries = json.loads(self.path.read_text(encoding="utf-8"))["machines"]
        except FileNotFoundError:
            return []
        except (ValueError, KeyError, TypeError) as error:
            raise UserError(f"The machines list {self.path} cannot be read ({error}): fix or "
                            "delete that file, then add the machines again.") from None
        return [Machine(**entry) for entry in entries]

    def get(self, name: str) -> Machine:
        for machine in self.machines():
            if machine.name == name:
                return machine
        raise NotFoundError(f"No machine is named {name!r}: see `finetuneflow machine list`, "
                            "or add it with `finetuneflow machine add`.")

    def add(self, machine: Machine) -> None:
        machines = self.machines()
        if any(known.name == machine.name for known in machines):
            raise UserError(f"A machine is already named {machine.name!r}: choose another name, "
                            "or remove that one first.")
        self._save([*machines, machine])

    def remove(self, name: str) -> Machine:
        machine = self.get(name)
        self._save([known for known in self.machines() if known.name != name])
        self._save_checks({key: entry for key, entry in self._checks().items() if key != name})
        return machine

    def set_python(self, name: str, python: str) -> Machine:
        """The machine with another remote python (after the trainer was set up there)."""
        machine = replace(self.get(name), python=python)
        self._save([machine if known.name == name else known for known in self.machines()])
        return machine

    def last_check(self, name: str) -> dict[str, Any] | None:
        entry = self._checks().get(name)
        return entry if isinstance(entry, dict) else None

    def record_check(self, name: str, entry: dict[str, Any]) -> None:
        self._save_checks({**self._checks(), name: entry})

    def _checks(self) -> dict[str, Any]:
        """The last checks; an unreadable file is only a forgotten history, so it reads empty."""
        try:
            checks = json.loads(self.checks_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return checks if isinstance(checks, dict) else {}

    def _save_checks(self, checks: dict[str, Any]) -> None:
        atomic_write_text(self.checks_path, json.dumps(checks, indent=1) + "\n")

    def _save(self, machines: list[Machine]) -> None:
        entries = [asdict(machine) for machine in machines]
        atomic_write_text(self.path, json.dumps({"machines": entries}, indent=2) + "\n")

    def trust(self, known_hosts_lines: list[str]) -> None:
        """Append host keys the person accepted (never replace one: a changed key is refused)."""
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        with self.known_hosts.open("a", encoding="utf-8") as stream:
            stream.writelines(line.rstrip("\n") + "\n" for line in known_hosts_lines)
