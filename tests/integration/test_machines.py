"""`finetuneflow machine …` through the real CLI and the real OpenSSH client, against a real sshd
on 127.0.0.1 (tests/helpers/sshd.py)."""

from __future__ import annotations

import json
import os
import pty
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from finetuneflow.core.child_protocol import JOB_VERSION
from tests.helpers.cli import REPO_ROOT, cli_env, run_cli, run_cli_json
from tests.helpers.sshd import Sshd, fingerprint, free_port, make_key

SYSTEM_PYTHON = "/usr/bin/python3"


def wrapper_python(folder: Path, name: str, body: str) -> str:
    """A remote "python" that is a script: another install, as a machine may have."""
    script = folder / name
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


def add(home: Path, sshd: Sshd, name: str = "box", python: str = sys.executable,
        key: Path | None = None) -> None:
    run_cli_json(home, "machine", "add", name, sshd.url, "--key", str(key or sshd.user_key),
                 "--python", python)


def known_hosts(home: Path) -> Path:
    return home / "ssh" / "known_hosts"


def test_add_list_remove_round_trip(home: Path, tmp_path: Path) -> None:
    key = make_key(tmp_path / "id_test")
    added = run_cli_json(home, "machine", "add", "gpu-1", "ssh://alice@gpu.example:2222",
                         "--key", str(key), "--python", "/opt/venv/bin/python")
    assert added == {"name": "gpu-1", "user": "alice", "host": "gpu.example", "port": 2222,
                     "key": str(key), "python": "/opt/venv/bin/python",
                     "url": "ssh://alice@gpu.example:2222"}
    agent = run_cli_json(home, "machine", "add", "lab", "ssh://bob@lab.example")
    assert (agent["port"], agent["key"], agent["python"]) == (22, None, "python3")
    assert run_cli_json(home, "machine", "list") == [added, agent]
    listing = run_cli(home, "machine", "list")
    assert "gpu-1\tssh://alice@gpu.example:2222" in listing.stdout
    assert run_cli_json(home, "machine", "remove", "gpu-1") == added
    assert run_cli_json(home, "machine", "list") == [agent]
    stored = (home / "machines.json").read_text()
    assert "PRIVATE KEY" not in stored and key.read_text() not in stored


@pytest.mark.parametrize(("url", "words"), [
    ("http://alice@host", "is not an ssh:// address"),
    ("ssh://host", "names no user"),
    ("ssh://alice:secret@host", "holds a password"),
    ("ssh://alice@", "names no host"),
    ("ssh://alice@host:0", "from 1 to 65535"),
    ("ssh://alice@host:70000", "from 1 to 65535"),
    ("ssh://alice@host:port", "from 1 to 65535"),
    ("ssh://alice@host/path", "more than a user, host and port"),
])
def test_bad_url_is_refused_and_nothing_stored(home: Path, url: str, words: str) -> None:
    result = run_cli(home, "machine", "add", "box", url)
    assert result.returncode == 1
    assert words in result.stderr and "ssh://user@host" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert run_cli_json(home, "machine", "list") == []


def test_duplicate_name_bad_name_missing_key_and_unknown_machine(home: Path,
                                                               tmp_path: Path) -> None:
    run_cli_json(home, "machine", "add", "box", "ssh://a@h")
    duplicate = run_cli(home, "machine", "add", "box", "ssh://b@h2")
    assert duplicate.returncode == 1 and "already named 'box'" in duplicate.stderr
    bad_name = run_cli(home, "machine", "add", "a,b", "ssh://b@h2")
    assert bad_name.returncode == 1 and "cannot be used" in bad_name.stderr
    no_key = run_cli(home, "machine", "add", "other", "ssh://b@h2", "--key",
                     str(tmp_path / "missing"))
    assert no_key.returncode == 1 and "does not exist" in no_key.stderr
    for command in ("test", "remove"):
        unknown = run_cli(home, "machine", command, "nope")
        assert unknown.returncode == 1 and "No machine is named 'nope'" in unknown.stderr
    assert [m["name"] for m in run_cli_json(home, "machine", "list")] == ["box"]


def test_reports_remote_python_trainer_protocol_and_probe(home: Path, sshd: Sshd) -> None:
    add(home, sshd)
    expected = fingerprint(sshd.host_key)
    report = run_cli_json(home, "machine", "test", "box", "--accept-host-key", expected,
                          timeout=300)
    assert report["python_version"] == ".".join(map(str, sys.version_info[:3]))
    assert report["protocol"] == JOB_VERSION
    assert report["probe"]["cpu_cores"] >= 1 and report["probe"]["torch_version"]
    assert report["machine"]["url"] == sshd.url
    human = run_cli(home, "machine", "test", "box", timeout=300)  # the key is known now
    assert human.returncode == 0, human.stderr
    assert f"trainer protocol {JOB_VERSION}" in human.stdout and "GPUs:" in human.stdout


def test_unknown_host_shows_fingerprint_and_stores_nothing(home: Path, sshd: Sshd) -> None:
    add(home, sshd)
    result = run_cli(home, "machine", "test", "box")
    assert result.returncode == 1
    assert "is not known yet" in result.stderr
    assert f"--accept-host-key {fingerprint(sshd.host_key)}" in result.stderr
    assert not known_hosts(home).exists()


def test_wrong_fingerprint_is_not_trusted(home: Path, sshd: Sshd) -> None:
    add(home, sshd)
    wrong = "SHA256:" + "A" * 43
    result = run_cli(home, "machine", "test", "box", "--accept-host-key", wrong)
    assert result.returncode == 1
    assert f"shows the host key {fingerprint(sshd.host_key)}, not {wrong}" in result.stderr
    assert not known_hosts(home).exists()


def test_accepted_key_then_trainer_missing(home: Path, sshd: Sshd, tmp_path: Path) -> None:
    bare = wrapper_python(tmp_path, "bare-python", f'unset PYTHONPATH\nexec {SYSTEM_PYTHON} "$@"')
    add(home, sshd, python=bare)
    result = run_cli(home, "machine", "test", "box", "--accept-host-key",
                     fingerprint(sshd.host_key))
    assert result.returncode == 1
    assert "trainer is not installed" in result.stderr and "No module named" in result.stderr
    assert "pip install finetuneflow[trainer]" in result.stderr
    host_public = Path(f"{sshd.host_key}.pub").read_text().split()[1]
    assert host_public in known_hosts(home).read_text()


def test_changed_host_key_is_refused_and_never_overwritten(home: Path, sshd: Sshd,
                                                          tmp_path: Path) -> None:
    bare = wrapper_python(tmp_path, "bare-python", f'unset PYTHONPATH\nexec {SYSTEM_PYTHON} "$@"')
    add(home, sshd, python=bare)
    run_cli(home, "machine", "test", "box", "--accept-host-key", fingerprint(sshd.host_key))
    trusted = known_hosts(home).read_text()
    sshd.restart_with_new_host_key()
    for extra in ([], ["--accept-host-key", fingerprint(sshd.host_key)]):
        result = run_cli(home, "machine", "test", "box", *extra)
        assert result.returncode == 1
        assert "The host key of box (127.0.0.1:" in result.stderr
        assert "has changed" in result.stderr and "ask the machine's owner" in result.stderr
        assert known_hosts(home).read_text() == trusted


def trusted_machine(home: Path, sshd: Sshd, python: str = sys.executable,
                    key: Path | None = None) -> None:
    add(home, sshd, python=python, key=key)
    known_hosts(home).parent.mkdir(parents=True)
    host_public = Path(f"{sshd.host_key}.pub").read_text().split()[:2]
    known_hosts(home).write_text(f"[127.0.0.1]:{sshd.port} {' '.join(host_public)}\n")


def test_auth_failure(home: Path, sshd: Sshd, tmp_path: Path) -> None:
    trusted_machine(home, sshd, key=make_key(tmp_path / "stranger"))
    result = run_cli(home, "machine", "test", "box", **without_agent())
    assert result.returncode == 1
    assert "did not accept" in result.stderr and "authorized_keys" in result.stderr


def without_agent() -> dict[str, str]:
    return {"SSH_AUTH_SOCK": ""} if "SSH_AUTH_SOCK" in os.environ else {}


def test_connection_refused(home: Path) -> None:
    port = free_port()
    run_cli_json(home, "machine", "add", "box", f"ssh://root@127.0.0.1:{port}")
    result = run_cli(home, "machine", "test", "box")
    assert result.returncode == 1
    assert f"box (127.0.0.1:{port}) refused the connection" in result.stderr


def test_python_missing(home: Path, sshd: Sshd) -> None:
    trusted_machine(home, sshd, python="/nonexistent/bin/python3")
    result = run_cli(home, "machine", "test", "box")
    assert result.returncode == 1
    assert "has no python at '/nonexistent/bin/python3'" in result.stderr


def test_protocol_mismatch(home: Path, sshd: Sshd, tmp_path: Path) -> None:
    other = tmp_path / "other-install"
    (other / "finetuneflow" / "core").mkdir(parents=True)
    (other / "finetuneflow" / "__init__.py").write_text('__version__ = "0.0.1"\n')
    (other / "finetuneflow" / "core" / "__init__.py").write_text("")
    (other / "finetuneflow" / "core" / "child_protocol.py").write_text(
        f"JOB_VERSION = {JOB_VERSION + 1}\n")
    python = wrapper_python(tmp_path, "old-python",
                            f'PYTHONPATH={other} exec {SYSTEM_PYTHON} "$@"')
    trusted_machine(home, sshd, python=python)
    result = run_cli(home, "machine", "test", "box", "--json")
    assert result.returncode == 1 and result.stdout == ""
    assert (f"FineTuneFlow 0.0.1 on box speaks trainer protocol {JOB_VERSION + 1}, this app "
            f"speaks {JOB_VERSION}") in result.stderr


def test_machines_file_that_cannot_be_read(home: Path) -> None:
    home.mkdir(parents=True)
    (home / "machines.json").write_text(json.dumps({"nope": []}))
    result = run_cli(home, "machine", "list")
    assert result.returncode == 1 and "cannot be read" in result.stderr


def test_silent_server_times_out(home: Path) -> None:
    with socket.socket() as silent:  # accepts TCP (the backlog) but never says a word of SSH
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        run_cli_json(home, "machine", "add", "box", f"ssh://root@127.0.0.1:{port}")
        result = run_cli(home, "machine", "test", "box")
    assert result.returncode == 1
    assert f"box (127.0.0.1:{port}) did not answer within 10 s" in result.stderr


def test_terminal_asks_once_before_trusting(home: Path, sshd: Sshd, tmp_path: Path) -> None:
    bare = wrapper_python(tmp_path, "bare-python", f'unset PYTHONPATH\nexec {SYSTEM_PYTHON} "$@"')
    add(home, sshd, python=bare)
    refused = run_on_terminal(home, "n\n", "machine", "test", "box")
    assert refused.returncode == 1
    assert f"Its fingerprint is {fingerprint(sshd.host_key)}" in refused.stderr
    assert not known_hosts(home).exists()
    trusted = run_on_terminal(home, "y\nn\n", "machine", "test", "box")  # no set-up
    assert trusted.returncode == 1 and "trainer is not installed" in trusted.stderr
    assert trusted.stdout.count("Trust this host key?") == 1
    assert known_hosts(home).read_text().count("ssh-ed25519") == 1


def run_on_terminal(home: Path, answer: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with a terminal on stdin (a pseudo-terminal) that types `answer`."""
    controller, terminal = pty.openpty()
    try:
        os.write(controller, answer.encode())
        return subprocess.run([sys.executable, "-m", "finetuneflow", *args], stdin=terminal,
                              capture_output=True, text=True, env=cli_env(home), timeout=120,
                              cwd=REPO_ROOT)
    finally:
        os.close(controller)
        os.close(terminal)


def test_trainer_without_its_libraries(home: Path, sshd: Sshd) -> None:
    # The system python imports this checkout (sshd's PYTHONPATH) but has no torch & co.
    trusted_machine(home, sshd, python=SYSTEM_PYTHON)
    result = run_cli(home, "machine", "test", "box")
    assert result.returncode == 1
    assert "The trainer on box could not inspect its hardware (" in result.stderr
    assert "pip install finetuneflow[trainer]" in result.stderr


def test_home_folder_with_a_space(tmp_path: Path, sshd: Sshd) -> None:
    # As on macOS (~/Library/Application Support): the app's known_hosts path is quoted for ssh.
    home = tmp_path / "Application Support" / "FineTuneFlow"
    test_accepted_key_then_trainer_missing(home, sshd, tmp_path)
