"""A full generation killed with SIGKILL, then resumed, ends exactly as a clean run does."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import string
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers.cli import REPO_ROOT, cli_env, run_cli, run_cli_json
from tests.helpers.fake_llm import FakeLLMServer


def unique_document(folder: Path) -> Path:
    """Every sentence is about made-up names of its own, so no example is even a near
    duplicate of another chunk's (which one a duplicate check keeps would depend on timing)."""
    rng = random.Random(7)

    def name() -> str:
        return "".join(rng.choices(string.ascii_lowercase, k=rng.randint(6, 10))).title()

    paragraphs = [" ".join(f"{name()} {name()} keeps the {name()} ledger in the {name()} room "
                           f"with {name()}." for _ in range(6)) for _ in range(36)]
    path = folder / "ledgers.txt"
    path.write_text("\n\n".join(paragraphs), encoding="utf-8")
    return path


def new_project(home: Path, model: Path, document: Path, server: FakeLLMServer) -> str:
    project = run_cli_json(home, "project", "create", "Ledgers")["id"]
    run_cli_json(home, "model", "set", project, str(model))
    run_cli_json(home, "ingest", project, str(document), "--chunk-tokens", "300",
                 "--overlap", "0")
    run_cli_json(home, "task", "set", project, "qa", "--per-chunk", "3")
    run_cli_json(home, "generate", project, "--preview", "--provider", "ollama",
                 "--base-url", server.base_url, "--llm", "gpt-oss:20b", "--concurrency", "2")
    return project


def stored_examples(home: Path) -> list[tuple[int, str, str]]:
    with sqlite3.connect(home / "finetuneflow.db") as db:
        return db.execute("SELECT chunk_id, content_hash, status FROM dataset_examples "
                          "WHERE split != 'preview' ORDER BY chunk_id, content_hash").fetchall()


def wait_for_examples(home: Path, at_least: int, child: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while len(stored_examples(home)) < at_least:
        assert child.poll() is None, "the generation ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_kill_9_then_resume_gives_exactly_a_clean_runs_examples(
        tmp_path: Path, tiny_model_dir: Path) -> None:
    document = unique_document(tmp_path)
    with FakeLLMServer(latency_ms=150) as server:
        clean_home, killed_home = tmp_path / "clean", tmp_path / "killed"
        clean = new_project(clean_home, tiny_model_dir, document, server)
        expected = run_cli_json(clean_home, "generate", clean, "--full")
        assert expected["chunks_done"] >= 10

        project = new_project(killed_home, tiny_model_dir, document, server)
        child = subprocess.Popen(
            [sys.executable, "-m", "finetuneflow", "generate", project, "--full"],
            env=cli_env(killed_home), cwd=REPO_ROOT, text=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for_examples(killed_home, 6, child)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        partial = len(stored_examples(killed_home))
        assert 0 < partial < expected["examples"]

        resumed = run_cli(killed_home, "generate", project, "--full", "--json")
        assert resumed.returncode == 0, resumed.stderr
    assert stored_examples(killed_home) == stored_examples(clean_home)
    hashes = [row[1] for row in stored_examples(killed_home)]
    assert len(hashes) == len(set(hashes)) == expected["examples"]
    jobs = run_cli_json(killed_home, "project", "list")[0]
    assert jobs["latest_job"] == {"kind": "generate", "status": "succeeded"}


def test_a_full_run_prints_its_estimate_first(home: Path, tmp_path: Path,
                                              tiny_model_dir: Path) -> None:
    with FakeLLMServer(latency_ms=20) as server:
        project = new_project(home, tiny_model_dir, unique_document(tmp_path), server)
        result = run_cli(home, "generate", project, "--full", "--max-chunks", "2", "--json")
    assert result.returncode == 0, result.stderr
    estimate = result.stderr.splitlines()[0]
    assert "2 chunks → 2 requests for about 6 examples at concurrency 2" in estimate
    assert "tokens" in estimate and "run a preview" not in estimate
    assert json.loads(result.stdout)["chunks_done"] == 2


def test_ctrl_c_stops_a_full_run_and_keeps_its_finished_chunks(
        home: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    with FakeLLMServer(latency_ms=150) as server:
        project = new_project(home, tiny_model_dir, unique_document(tmp_path), server)
        child = subprocess.Popen(
            [sys.executable, "-m", "finetuneflow", "generate", project, "--full", "--json"],
            env=cli_env(home), cwd=REPO_ROOT, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for_examples(home, 6, child)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        result = json.loads(out)
        assert result["cancelled"] and "Stopping; finished chunks are kept" in err
        kept = len(stored_examples(home))
        assert kept == result["examples"] > 0
        rest = run_cli_json(home, "generate", project, "--full")
    assert rest["chunks_skipped"] == result["chunks_done"] and not rest["cancelled"]
    assert len(stored_examples(home)) == kept + rest["examples"]
