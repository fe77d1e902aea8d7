"""A real OpenSSH server on 127.0.0.1 for tests: throwaway host and user keys in a temp folder.

It runs in the foreground (`sshd -D`) as the current user's server, with public-key login only.
Sessions get PYTHONPATH set to this checkout (sshd's SetEnv), so a remote python of this venv
imports the code under test through the real ssh path; `environment` sets other variables
instead (a remote without FineTuneFlow, a HOME of its own).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers.cli import REPO_ROOT

SSHD_PATHS = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")
PRIVILEGE_SEPARATION_DIR = Path("/run/sshd")  # Debian's sshd refuses to start without it


def sshd_binary() -> str | None:
    return next((path for path in SSHD_PATHS if Path(path).is_file()), shutil.which("sshd"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_key(path: Path) -> Path:
    """An Ed25519 key pair without a passphrase; returns the private key's path."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(path)],
                   check=True)
    return path


def fingerprint(private_key: Path) -> str:
    result = subprocess.run(["ssh-keygen", "-l", "-f", f"{private_key}.pub"], check=True,
                            capture_output=True, text=True)
    return result.stdout.split()[1]


class Sshd:
    def __init__(self, folder: Path, binary: str,
                 environment: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.binary = binary
        self.environment = ({"PYTHONPATH": str(REPO_ROOT)} if environment is None
                            else environment)
        self.port = free_port()
        self.user_key = make_key(folder / "user_key")
        self.host_key = make_key(folder / "host_key")
        shutil.copy(f"{self.user_key}.pub", folder / "authorized_keys")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> str:
        return (self.folder / "sshd.log").read_text(errors="replace")

    def start(self) -> None:
        config = self.folder / "sshd_config"
        config.write_text("\n".join([
            f"ListenAddress 127.0.0.1:{self.port}", f"HostKey {self.host_key}", "PidFile none",
            f"AuthorizedKeysFile {self.folder / 'authorized_keys'}",
            "PermitRootLogin prohibit-password", "StrictModes no", "UsePAM no",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            # One line: sshd takes only the first SetEnv line.
            "SetEnv " + " ".join(f'"{name}={value}"' for name, value in self.environment.items()),
            ""]))
        with contextlib.suppress(OSError):  # not root: sshd then runs without it
            PRIVILEGE_SEPARATION_DIR.mkdir(mode=0o755, exist_ok=True)
        log = (self.folder / "sshd.log").open("ab")
        self.process = subprocess.Popen([self.binary, "-D", "-e", "-f", str(config)],
                                        stdout=log, stderr=log)
        self._wait_listening()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.log
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"sshd did not listen on port {self.port}: {self.log}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def restart_with_new_host_key(self) -> None:
        """The same server with another host key, as after a reinstall (or an impostor)."""
        self.stop()
        for path in (self.host_key, Path(f"{self.host_key}.pub")):
            path.unlink()
        make_key(self.host_key)
        self.start()

    @property
    def url(self) -> str:
        import getpass

        return f"ssh://{getpass.getuser()}@127.0.0.1:{self.port}"


@contextmanager
def running_sshd(folder: Path, environment: dict[str, str] | None = None) -> Iterator[Sshd]:
    binary = sshd_binary()
    if binary is None:
        import pytest

        pytest.skip("OpenSSH server (sshd) is not installed: apt-get install openssh-server")
    server = Sshd(folder, binary, environment)
    server.start()
    try:
        yield server
    finally:
        server.stop()
