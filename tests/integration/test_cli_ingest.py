from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.helpers.cli import run_cli, run_cli_json

OUTCOME_KEYS = {"name", "status", "message", "pages", "chars", "chunks"}


def _project_with_model(home: Path, tiny_model_dir: Path) -> str:
    project = run_cli_json(home, "project", "create", "CLI docs")["id"]
    choice = run_cli_json(home, "model", "set", project, str(tiny_model_dir))
    assert choice["architecture"] == "LlamaForCausalLM" and choice["source"] == "local"
    assert choice["parameters"] > 0 and choice["has_chat_template"] is True
    return project


def test_ingest_json_reports_every_file(home: Path, tiny_model_dir: Path,
                                        corpus_dir: Path) -> None:
    project = _project_with_model(home, tiny_model_dir)
    outcomes = run_cli_json(home, "ingest", project,
                            str(corpus_dir / "pdf/normal_pdflatex_4pages.pdf"),
                            str(corpus_dir / "txt/binary_jpeg_renamed.txt"),
                            "--chunk-tokens", "256", "--overlap", "32")
    assert [o["status"] for o in outcomes] == ["ok", "error"]
    assert OUTCOME_KEYS <= set(outcomes[0])
    assert outcomes[0]["pages"] == 4 and outcomes[0]["chunks"] > 0
    assert "not a text file" in outcomes[1]["message"]


def test_ingest_exit_code_and_plain_lines(home: Path, tiny_model_dir: Path,
                                          corpus_dir: Path) -> None:
    project = _project_with_model(home, tiny_model_dir)
    only_bad = run_cli(home, "ingest", project, str(corpus_dir / "txt/binary_jpeg_renamed.txt"))
    assert only_bad.returncode != 0 and "Traceback" not in only_bad.stderr
    assert only_bad.stdout.startswith("binary_jpeg_renamed.txt\terror\t")
    mixed = run_cli(home, "ingest", project, str(corpus_dir / "md"),
                    str(corpus_dir / "txt/binary_jpeg_renamed.txt"))
    assert mixed.returncode == 0, mixed.stderr
    lines = mixed.stdout.strip().splitlines()
    assert len(lines) == 3 and all("chunks=" in line for line in lines)


def test_model_set_errors_are_one_line(home: Path) -> None:
    project = run_cli_json(home, "project", "create", "Bad model")["id"]
    result = run_cli(home, "model", "set", project, "not a model id!")
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "Hugging Face model id" in result.stderr


def test_dataset_import_reports_counts_and_reasons(home: Path, tmp_path: Path) -> None:
    project = run_cli_json(home, "project", "create", "Imported")["id"]
    data = tmp_path / "alpaca.json"
    data.write_text(json.dumps([
        {"instruction": "Say hi", "input": "", "output": "Hi"},
        {"instruction": "Add", "input": "1+1", "output": "2"},
        {"instruction": "No output"},
    ]), encoding="utf-8")
    summary = run_cli_json(home, "dataset", "import", project, str(data))
    assert summary["format"] == "alpaca"
    assert (summary["imported"], summary["rejected"]) == (2, 1)
    assert summary["errors"] == ["line 1: no 'output' field"]
    again = run_cli_json(home, "dataset", "import", project, str(data), "--format", "alpaca")
    # Every line, the bad one too, is already in the project: nothing is added.
    assert (again["imported"], again["rejected"], again["duplicates"]) == (0, 0, 3)


def test_csv_import_with_a_column_mapping(home: Path, tmp_path: Path) -> None:
    project = run_cli_json(home, "project", "create", "CSV")["id"]
    data = tmp_path / "faq.csv"
    data.write_text("frage,antwort\nWas ist LoRA?,Ein Adapter.\nUnd QLoRA?,LoRA in 4 Bit.\n",
                    encoding="utf-8")
    unmapped = run_cli(home, "dataset", "import", project, str(data))
    assert unmapped.returncode == 1 and "frage" in unmapped.stderr
    mapped = run_cli_json(home, "dataset", "import", project, str(data), "--prompt-column",
                          "frage", "--completion-column", "antwort",
                          "--system-prompt", "Antworte kurz.")
    assert (mapped["format"], mapped["imported"], mapped["rejected"]) == ("csv", 2, 0)


def test_the_size_limit_is_a_setting(home: Path, tiny_model_dir: Path, corpus_dir: Path) -> None:
    project = _project_with_model(home, tiny_model_dir)
    assert run_cli_json(home, "settings")["max_file_mb"] == 200
    assert run_cli_json(home, "settings", "--max-file-mb", "1")["max_file_mb"] == 1
    big = corpus_dir / "pdf/unreadable_invalid-pages-tree_4pages.pdf"  # 2.8 MB
    result = run_cli(home, "ingest", project, str(big), "--json")
    assert result.returncode == 1  # nothing could be ingested
    refused = json.loads(result.stdout)[0]
    assert refused["status"] == "error" and "over the 1 MB limit" in refused["message"]
    bad = run_cli(home, "settings", "--max-file-mb", "0")
    assert bad.returncode == 1 and "between 1 MB" in bad.stderr


def test_a_folder_is_read_without_links_outside_it_or_hidden_files(
        home: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    """A link inside a dropped folder that leads outside it is not followed (/etc/passwd must
    not become training text), hidden files are skipped, and both are named on stderr; a
    newline in a file name keeps its line."""
    project = _project_with_model(home, tiny_model_dir)
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("The vault code is 4242. " * 20, encoding="utf-8")
    folder = tmp_path / "docs"
    (folder / "inner").mkdir(parents=True)
    (folder / "manual.txt").write_text("The pump is checked weekly. " * 20, encoding="utf-8")
    (folder / "inner" / "odd\nname.txt").write_text("Valves are oiled. " * 20, encoding="utf-8")
    (folder / ".notes.txt").write_text("Hidden thoughts. " * 20, encoding="utf-8")
    (folder / "vault.txt").symlink_to(secret)
    (folder / "alias.txt").symlink_to(folder / "manual.txt")  # inside the folder: read
    result = run_cli(home, "ingest", project, str(folder))
    assert result.returncode == 0, result.stderr
    names = [line.split("\t")[0] for line in result.stdout.splitlines()]
    assert names == ["alias.txt", "manual.txt", "odd\\nname.txt"]
    assert "Skipped .notes.txt: a hidden file" in result.stderr
    assert "Skipped vault.txt: a link to a file outside the folder" in result.stderr
    assert "3 of 3 files processed, 2 skipped (named above)" in result.stderr
    with sqlite3.connect(home / "finetuneflow.db") as db:
        texts = [row[0] for row in db.execute("SELECT text FROM chunks")]
    assert texts and not any("4242" in text for text in texts)


def test_ctrl_c_stops_after_the_file_being_read_and_a_rerun_adds_the_rest(
        home: Path, corpus_dir: Path) -> None:
    import signal
    import subprocess
    import sys

    from tests.helpers.cli import REPO_ROOT, cli_env

    project = run_cli_json(home, "project", "create", "Stopped")["id"]
    folder = corpus_dir / "pdf"
    child = subprocess.Popen([sys.executable, "-m", "finetuneflow", "ingest", project,
                              str(folder), "--json"], env=cli_env(home), cwd=REPO_ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stderr is not None
    for _ in range(3):  # the third file is being read
        assert "Reading" in child.stderr.readline()
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    read = json.loads(out)
    assert 2 <= len(read) < len(list(folder.glob("*.pdf")))
    assert f"Stopped after {len(read)} file(s)" in err and "unexpected" not in err
    with sqlite3.connect(home / "finetuneflow.db") as db:
        assert db.execute("SELECT COUNT(*) FROM files").fetchone()[0] == len(read)
        assert db.execute("SELECT status FROM jobs").fetchall() == [("cancelled",)]
    rest = run_cli_json(home, "ingest", project, str(folder))
    assert [o["name"] for o in rest if o["duplicate"]] == [o["name"] for o in read]
    with sqlite3.connect(home / "finetuneflow.db") as db:
        assert db.execute("SELECT COUNT(*) FROM files").fetchone()[0] == len(rest)
