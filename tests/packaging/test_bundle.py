"""The installed app, end to end: build the Linux bundle and its installers with
`python packaging/build.py`, then use them the way a person would, with no Python around.

A build takes many minutes, so these tests are marked `packaging` and left out of the default
run. Run them with `python -m pytest -m packaging tests/packaging`.
FINETUNEFLOW_BUILD_WORK_DIR keeps PyInstaller's work folder between builds (faster rebuilds);
FINETUNEFLOW_REUSE_BUILD=1 tests the app already in dist/ instead of building it again.
"""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest

from finetuneflow import __version__
from finetuneflow.core.child_protocol import FinishedEvent, ProbeEvent, decode
from finetuneflow.storage.db import current_revision, make_engine
from tests.helpers.cli import REPO_ROOT
from tests.helpers.images import assert_not_blank
from tests.integration.test_migrations import head_revision
from tests.integration.test_training_service import arithmetic_dataset

pytestmark = [
    pytest.mark.packaging,
    pytest.mark.timeout(3600),  # the first test waits for the build
    pytest.mark.skipif(sys.platform != "linux", reason="builds and checks the Linux installers"),
]

DIST = REPO_ROOT / "dist"
APP_NAME = "FineTuneFlow"


@dataclass(frozen=True)
class Build:
    app: Path
    deb: Path
    tarball: Path


@pytest.fixture(scope="module")
def build() -> Build:
    if os.environ.get("FINETUNEFLOW_REUSE_BUILD") != "1":
        command = [sys.executable, "packaging/build.py"]
        if work_dir := os.environ.get("FINETUNEFLOW_BUILD_WORK_DIR"):
            command += ["--work-dir", work_dir]
        subprocess.run(command, cwd=REPO_ROOT, check=True, timeout=3000)
    debs = sorted(DIST.glob(f"finetuneflow_{__version__}_*.deb"))
    tarballs = sorted(DIST.glob(f"{APP_NAME}-{__version__}-linux-*.tar.gz"))
    assert debs and tarballs, f"no installers in {DIST}"
    return Build(DIST / APP_NAME / APP_NAME, debs[-1], tarballs[-1])


def run_app(app: Path, home: Path, *args: str, timeout: float = 300
            ) -> subprocess.CompletedProcess[str]:
    """The frozen app in a clean environment: no checkout on the path, nothing to import from."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(FINETUNEFLOW_HOME=str(home), QT_QPA_PLATFORM="offscreen", HF_HUB_OFFLINE="1")
    result = subprocess.run([str(app), *args], capture_output=True, text=True, env=env,
                            timeout=timeout, cwd=home.parent)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def run_app_json(app: Path, home: Path, *args: str) -> dict[str, object]:
    return json.loads(run_app(app, home, *args, "--json").stdout)


@pytest.fixture
def project(build: Build, home: Path, tiny_model_dir: Path, tmp_path: Path) -> str:
    """A project made through the frozen CLI: the tiny model and 60 arithmetic examples."""
    project_id = str(run_app_json(build.app, home, "project", "create", "Frozen")["id"])
    run_app_json(build.app, home, "model", "set", project_id, str(tiny_model_dir))
    run_app_json(build.app, home, "dataset", "import", project_id,
                 str(arithmetic_dataset(tmp_path / "data.jsonl")))
    return project_id


def test_version_names_the_release(build: Build, home: Path) -> None:
    assert run_app(build.app, home, "--version").stdout.strip() == f"{APP_NAME} {__version__}"


def test_the_window_renders_and_the_bundled_migrations_create_the_database(
        build: Build, home: Path, tmp_path: Path) -> None:
    shot = tmp_path / "window.png"
    run_app(build.app, home, "gui", "--screenshot", str(shot))
    assert_not_blank(shot)
    assert current_revision(make_engine(home / "finetuneflow.db")) == head_revision()


def test_the_trainer_probe_reports_the_bundled_torch(build: Build, home: Path) -> None:
    lines = run_app(build.app, home, "trainer", "probe").stdout.splitlines()
    assert len(lines) == 1
    report = decode(lines[0])
    assert isinstance(report, ProbeEvent) and report.cpu_cores >= 1
    assert report.torch_version == version("torch")  # the build environment's torch


def test_the_frozen_worker_adds_documents(build: Build, home: Path, project: str,
                                          corpus_dir: Path) -> None:
    """The Data page parses documents in `FineTuneFlow worker`: the bundled pypdf, docx and
    tokenizers, in the frozen app's own child."""
    request = {"home": str(home), "operation": "ingest", "arguments": {
        "project": project, "paths": [str(corpus_dir / "pdf/normal_pdflatex_4pages.pdf"),
                                      str(corpus_dir / "docx/google-docs-export.docx")]}}
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    # Stdin stays open, as the app keeps it: the worker takes its closing as a stop.
    child = subprocess.Popen([str(build.app), "worker"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(json.dumps(request) + "\n")
    child.stdin.flush()
    events = [json.loads(line) for line in child.stdout]
    child.stdin.close()
    assert child.wait(timeout=300) == 0
    assert events[-1]["event"] == "result", events
    assert [(o["status"], o["chunks"] > 0) for o in events[-1]["value"]] == [("ok", True)] * 2


def test_the_frozen_app_reads_a_large_dataset_in_its_own_child(build: Build, home: Path,
                                                                project: str,
                                                                tmp_path: Path) -> None:
    """A file of CHILD_MIN_BYTES or more is read by `FineTuneFlow read-dataset`: the frozen
    app must start itself again for it."""
    from finetuneflow.services.dataset_reader import CHILD_MIN_BYTES, READER_LOG

    path = tmp_path / "large.jsonl"
    with path.open("w", encoding="utf-8") as out:
        lines = 0
        while out.tell() < CHILD_MIN_BYTES:
            out.write(json.dumps({"messages": [
                {"role": "user", "content": f"What is {lines} plus 1?"},
                {"role": "assistant", "content": f"It is {lines + 1}."}]}) + "\n")
            lines += 1
    summary = run_app_json(build.app, home, "dataset", "import", project, str(path))
    assert (summary["imported"], summary["rejected"]) == (lines, 0)
    assert "Traceback" not in (home / "logs" / READER_LOG).read_text(encoding="utf-8")


def train(build: Build, home: Path, project: str, *args: str) -> list[dict[str, object]]:
    result = run_app(build.app, home, "train", project, "--preset", "quick", "--json", *args)
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [event["type"] for event in events][-2:] == ["finished", "result"], result.stderr
    return events


def test_the_frozen_trainer_trains_merges_and_chats(build: Build, home: Path, project: str,
                                                    tmp_path: Path) -> None:
    """Each step runs in the app's own trainer child: `FineTuneFlow trainer ...`."""
    events = train(build, home, project, "--max-steps", "5")
    finished = decode(json.dumps(events[-2]))
    assert isinstance(finished, FinishedEvent) and finished.step == 5
    assert (Path(finished.adapter_dir) / "adapter_model.safetensors").is_file()
    chart = tmp_path / "train.png"  # the Train page draws the run's loss with pyqtgraph
    run_app(build.app, home, "gui", "--project", project, "--page", "train",
            "--screenshot", str(chart))
    assert_not_blank(chart)
    exported = run_app_json(build.app, home, "export", project, "--merged", "--sample-tokens",
                            "8", "--out", str(tmp_path / "export.zip"))
    assert exported["merged"] is True and (tmp_path / "export.zip").is_file()
    answer = run_app(build.app, home, "chat", project, "What is 2 plus 1?", "--max-tokens", "6",
                     "--temperature", "0")
    assert answer.stdout.strip()


def test_the_frozen_app_quantises_the_gguf_to_q4_k_m(build: Build, home: Path, project: str,
                                                      tmp_path: Path) -> None:
    """Q4_K_M comes from llama.cpp's quantiser, which the installer carries (a pip install
    needs the gguf-q4 extra): the file it writes is a Q4_K_M GGUF that llama.cpp's reader
    opens."""
    import gguf

    train(build, home, project, "--max-steps", "5")  # one logged step
    exported = run_app_json(build.app, home, "export", project, "--gguf", "q4_k_m",
                            "--sample-tokens", "1", "--out", str(tmp_path / "gguf.zip"))
    assert [(g["file"], g["quantisation"]) for g in exported["gguf"]] == [
        ("gguf/model-q4_k_m.gguf", "q4_k_m")]
    with zipfile.ZipFile(tmp_path / "gguf.zip") as archive:  # under the export's top folder
        (member,) = [name for name in archive.namelist()
                     if name.endswith("/gguf/model-q4_k_m.gguf")]
        path = Path(archive.extract(member, tmp_path))
    reader = gguf.GGUFReader(path)
    file_type = reader.fields["general.file_type"]
    assert file_type.parts[file_type.data[0]][0] == gguf.LlamaFileType.MOSTLY_Q4_K_M
    assert exported["gguf"][0]["bytes"] == path.stat().st_size


def test_two_processes_run_under_the_bundled_launcher(build: Build, home: Path,
                                                       project: str) -> None:
    """The multi-GPU path (accelerate launch, DDP), on the CPU with gloo: each rank is the app."""
    events = train(build, home, project, "--max-steps", "5", "--processes", "2")
    started = [event for event in events if event["type"] == "started"]
    assert len(started) == 1 and started[0]["processes"] == 2


def test_the_app_starts_from_the_unpacked_deb(build: Build, home: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    subprocess.run(["dpkg", "-x", str(build.deb), str(root)], check=True)
    entry = configparser.ConfigParser(interpolation=None)
    entry.read(root / "usr/share/applications/finetuneflow.desktop", encoding="utf-8")
    desktop = entry["Desktop Entry"]
    command = root / "usr/bin/finetuneflow"  # layout: integration/test_installer_layout.py
    assert run_app(command, home, "--version").stdout.strip() == f"{APP_NAME} {__version__}"
    shot = tmp_path / "installed.png"
    run_app(root / desktop["Exec"].lstrip("/"), home, "gui", "--screenshot", str(shot))
    assert_not_blank(shot)


def test_the_tarball_holds_the_app_folder(build: Build) -> None:
    with tarfile.open(build.tarball, "r:gz") as archive:
        member = archive.getmember(f"{APP_NAME}/{APP_NAME}")
    assert member.isfile() and member.mode & 0o111
