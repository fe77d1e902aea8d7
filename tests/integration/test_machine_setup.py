"""`finetuneflow machine setup`: a remote without FineTuneFlow is found by `machine test` and set
up in a venv there, through the real CLI, the real OpenSSH client and a real sshd on 127.0.0.1.

The remote is this computer with its own HOME and no FineTuneFlow: its sessions see this venv's
libraries (torch & co., so nothing is downloaded) but not the checkout, and its python is the
interpreter this venv was made from. The set-up installs only the wheel built from this checkout.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from finetuneflow import __version__
from finetuneflow.core.child_protocol import JOB_VERSION
from tests.helpers.cli import run_cli, run_cli_json
from tests.helpers.sshd import Sshd, free_port, running_sshd
from tests.integration.test_machines import run_on_terminal, trusted_machine, wrapper_python

BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)  # has no FineTuneFlow
OFFLINE = "--pip-args=--no-deps --no-index"  # only our wheel, nothing from an index
# What a library folder must not lend the remote: FineTuneFlow itself, and the installers.
NOT_LENT = ("finetuneflow", "__editable__", "_distutils_hack", "pip", "setuptools",
            "pkg_resources")


def lend_libraries(folder: Path) -> Path:
    """This venv's installed libraries without FineTuneFlow, in `folder` (links: it costs
    nothing), for a remote's PYTHONPATH."""
    folder.mkdir(parents=True, exist_ok=True)
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(NOT_LENT) and entry.suffix != ".pth":
            (folder / entry.name).symlink_to(entry)
    return folder


@pytest.fixture(scope="module")
def libraries(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lend_libraries(tmp_path_factory.mktemp("libraries"))


@pytest.fixture
def remote_home(tmp_path: Path) -> Path:
    folder = tmp_path / "remote home"  # a space, as paths on the remote may have
    folder.mkdir()
    return folder


def bare_sshd(tmp_path: Path, environment: dict[str, str]) -> Iterator[Sshd]:
    folder = tmp_path / "sshd"
    folder.mkdir()
    with running_sshd(folder, environment) as server:
        yield server


@pytest.fixture
def sshd(tmp_path: Path, remote_home: Path, libraries: Path) -> Iterator[Sshd]:
    yield from bare_sshd(tmp_path, {"PYTHONPATH": str(libraries), "HOME": str(remote_home)})


@pytest.fixture
def empty_sshd(tmp_path: Path, remote_home: Path) -> Iterator[Sshd]:
    """A remote whose python has nothing installed: pip must fetch every library."""
    yield from bare_sshd(tmp_path, {"HOME": str(remote_home)})


def venv_of(remote_home: Path) -> Path:
    return remote_home / ".finetuneflow-remote" / "venv"


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1].removeprefix("finetuneflow: error: ")


def test_missing_trainer_is_found_then_set_up(home: Path, sshd: Sshd, remote_home: Path) -> None:
    trusted_machine(home, sshd, python=BASE_PYTHON)
    missing = run_cli(home, "machine", "test", "box")
    assert missing.returncode == 1
    assert "FineTuneFlow's trainer is not installed" in missing.stderr
    assert "`finetuneflow machine setup box`" in missing.stderr

    result = run_cli(home, "machine", "setup", "box", OFFLINE, "--json", timeout=600)
    assert result.returncode == 0, result.stderr
    venv = venv_of(remote_home)
    report = json.loads(result.stdout)
    assert report["venv"] == str(venv)
    assert report["machine"]["python"] == str(venv / "bin" / "python")
    assert (report["protocol"], report["finetuneflow_version"]) == (JOB_VERSION, __version__)
    assert "Copying finetuneflow-" in result.stderr and "Successfully installed" in result.stderr
    [listed] = run_cli_json(home, "machine", "list")
    assert listed["python"] == str(venv / "bin" / "python")
    installed = subprocess.run([str(venv / "bin" / "python"), "-c",
                                "import finetuneflow; print(finetuneflow.__file__)"],
                               capture_output=True, text=True, check=True, env={},
                               cwd=remote_home)
    assert installed.stdout.startswith(str(venv))  # the wheel's copy, not this checkout

    checked = run_cli_json(home, "machine", "test", "box")
    assert checked["protocol"] == JOB_VERSION and checked["probe"]["torch_version"]


def test_other_protocol_is_found_and_set_up_again(home: Path, sshd: Sshd,
                                                  remote_home: Path) -> None:
    trusted_machine(home, sshd, python=BASE_PYTHON)
    first = run_cli(home, "machine", "setup", "box", OFFLINE, timeout=600)
    assert first.returncode == 0, first.stderr
    assert "Set up FineTuneFlow's trainer on box in " in first.stdout
    [protocol_file] = venv_of(remote_home).glob(
        "lib/python*/site-packages/finetuneflow/core/child_protocol.py")
    protocol_file.write_text(protocol_file.read_text().replace(
        f"JOB_VERSION = {JOB_VERSION}", f"JOB_VERSION = {JOB_VERSION + 1}"))
    older = run_cli(home, "machine", "test", "box")
    assert older.returncode == 1
    assert f"speaks trainer protocol {JOB_VERSION + 1}, this app speaks {JOB_VERSION}" in (
        older.stderr)
    assert "`finetuneflow machine setup box`" in older.stderr
    again = run_cli(home, "machine", "setup", "box", OFFLINE, "--json", timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"JOB_VERSION = {JOB_VERSION}\n" in protocol_file.read_text()


def test_pip_that_cannot_reach_its_index_fails_clearly(home: Path, empty_sshd: Sshd,
                                                       remote_home: Path) -> None:
    trusted_machine(home, empty_sshd, python=BASE_PYTHON)
    unreachable = f"http://127.0.0.1:{free_port()}/simple"
    result = run_cli(home, "machine", "setup", "box",
                     f"--pip-args=--index-url {unreachable} --retries 0 --timeout 5",
                     timeout=600)
    assert result.returncode == 1
    error = last_line(result.stderr)
    assert error.startswith("Installing FineTuneFlow's trainer on box failed (pip: ERROR: ")
    assert "No matching distribution found for" in error
    assert "--pip-args" in error and "finetuneflow machine setup box" in error
    [listed] = run_cli_json(home, "machine", "list")
    assert listed["python"] == BASE_PYTHON  # the machine still names the python it had


def test_no_python_there(home: Path, sshd: Sshd) -> None:
    trusted_machine(home, sshd, python="/nonexistent/bin/python3")
    result = run_cli(home, "machine", "setup", "box")
    assert result.returncode == 1
    assert last_line(result.stderr) == (
        "box has no python at '/nonexistent/bin/python3' to make the trainer's venv with: "
        "install Python 3.11 or newer there (Debian/Ubuntu: apt install python3 python3-venv), "
        "or name one with --python PATH.")


def test_python_without_venv_module(home: Path, sshd: Sshd, tmp_path: Path,
                                    remote_home: Path) -> None:
    # As Debian's python3 without python3-venv: `import ensurepip` fails.
    stubs = tmp_path / "stubs"
    (stubs / "ensurepip").mkdir(parents=True)
    (stubs / "ensurepip" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'ensurepip'\")\n")
    python = wrapper_python(tmp_path, "debian-python",
                            f'PYTHONPATH={stubs} exec {BASE_PYTHON} "$@"')
    trusted_machine(home, sshd, python=python)
    result = run_cli(home, "machine", "setup", "box")
    assert result.returncode == 1
    assert last_line(result.stderr) == (
        f"{python} on box cannot make a venv (No module named 'ensurepip'): install its venv "
        "module there (Debian/Ubuntu: apt install python3-venv), or name another python with "
        "--python PATH.")
    assert not venv_of(remote_home).exists()


def test_a_folder_with_files_is_not_made_a_venv(home: Path, sshd: Sshd,
                                                remote_home: Path) -> None:
    trusted_machine(home, sshd, python=BASE_PYTHON)
    (remote_home / "work").mkdir()
    (remote_home / "work" / "notes.txt").write_text("mine")
    result = run_cli(home, "machine", "setup", "box", "--venv", "~/work")
    assert result.returncode == 1
    assert last_line(result.stderr) == (f"{remote_home / 'work'} on box holds files and is no "
                                         "venv: choose a new folder with --venv PATH.")
    assert [p.name for p in (remote_home / "work").iterdir()] == ["notes.txt"]


def test_terminal_offers_the_set_up(home: Path, sshd: Sshd, remote_home: Path) -> None:
    trusted_machine(home, sshd, python=BASE_PYTHON)
    declined = run_on_terminal(home, "n\n", "machine", "test", "box")
    assert declined.returncode == 1
    assert "Set up the trainer on box now" in declined.stdout
    assert not venv_of(remote_home).exists()
    # Yes: pip finds the libraries already there (the sessions' PYTHONPATH), so nothing is
    # downloaded, as on a machine with torch installed.
    accepted = run_on_terminal(home, "y\n", "machine", "test", "box")
    assert accepted.returncode == 0, accepted.stderr
    assert f"trainer protocol {JOB_VERSION}" in accepted.stdout
