"""Hostile or huge dataset files: every line meets a limit before its memory is spent, the
import streams in batches, and a stop keeps what was stored."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import psutil
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from finetuneflow.core.progress import CancelToken
from finetuneflow.services.context import AppContext
from finetuneflow.services.dataset_reader import IMPORT_BATCH, IMPORT_BATCH_BYTES, READER_LOG
from finetuneflow.services.datasets import DatasetService
from finetuneflow.services.errors import UserError
from finetuneflow.services.projects import ProjectService
from finetuneflow.services.settings import AppSettings


def _line(i: int) -> str:
    return json.dumps({"messages": [{"role": "user", "content": f"What is {i} plus 1?"},
                                    {"role": "assistant", "content": f"{i + 1}."}]})


def _kept(context: AppContext, project_id: str) -> int:
    with sqlite3.connect(context.home.db_path) as db:
        return int(db.execute("SELECT COUNT(*) FROM dataset_examples WHERE project_id = ? "
                              "AND status != 'rejected'", (project_id,)).fetchone()[0])


def test_giant_deep_and_long_lines_are_rejected_with_their_reason(
        context: AppContext, tmp_path: Path) -> None:
    project_id = ProjectService(context).create("Limits").id
    giant = '{"messages": [{"role": "user", "content": "' + "x" * (9 * 1024 * 1024) + '"}]}'
    long_answer = json.dumps({"messages": [{"role": "user", "content": "Tell me all."},
                                           {"role": "assistant", "content": "y" * 10_000}]})
    path = tmp_path / "hostile.jsonl"
    path.write_text("\n".join([_line(1), giant, "[" * 10_000 + "]" * 10_000, long_answer,
                               _line(2)]) + "\n", encoding="utf-8")
    summary = DatasetService(context).import_file(project_id, path)
    assert (summary.imported, summary.rejected) == (2, 3)
    assert summary.errors[0] == "line 2: a line longer than 8,388,608 bytes"
    assert summary.errors[1] == "line 3: JSON nested too deeply"
    assert summary.errors[2].startswith("line 4: an example of 10,012 characters, longer than "
                                        "8,192")
    assert _kept(context, project_id) == 2


def test_a_stopped_import_keeps_its_batches_and_the_rest_follows(
        context: AppContext, tmp_path: Path) -> None:
    project_id = ProjectService(context).create("Big").id
    path = tmp_path / "many.jsonl"
    path.write_text("\n".join(_line(i) for i in range(IMPORT_BATCH * 2 + 500)) + "\n",
                    encoding="utf-8")
    cancel = CancelToken()
    seen: list[str] = []

    def progress(fraction: float, message: str) -> None:
        seen.append(message)
        cancel.cancel()  # stop after the first batch

    stopped = DatasetService(context).import_file(project_id, path, progress=progress,
                                                  cancel=cancel)
    assert stopped.stopped and stopped.imported == IMPORT_BATCH == _kept(context, project_id)
    assert seen == [f"many.jsonl: line {IMPORT_BATCH:,} of {IMPORT_BATCH * 2 + 500:,}, "
                    f"{IMPORT_BATCH:,} imported"]
    rest = DatasetService(context).import_file(project_id, path)
    assert (rest.imported, rest.duplicates) == (IMPORT_BATCH + 500, IMPORT_BATCH)
    assert _kept(context, project_id) == IMPORT_BATCH * 2 + 500


def test_long_examples_go_in_smaller_batches(context: AppContext, tmp_path: Path) -> None:
    """A batch ends at IMPORT_BATCH_BYTES of encoded rows: a hundred thousand long examples
    would be gigabytes held at once, and text that encodes large (quotes, escaped twice) is
    counted as it is held."""
    project_id = ProjectService(context).create("Long").id
    plain, quoted = tmp_path / "long.jsonl", tmp_path / "quoted.jsonl"
    for path, letter in ((plain, "q"), (quoted, '"')):
        path.write_text("\n".join(json.dumps({"messages": [
            {"role": "user", "content": f"{i:05d}" + letter * 2_995},
            {"role": "assistant", "content": "a" * 5_000}]}) for i in range(5_000)) + "\n",
            encoding="utf-8")
    for path, row_bytes in ((plain, 8_000), (quoted, 4 * 2_995 + 5_000)):
        seen: list[str] = []
        summary = DatasetService(context).import_file(
            project_id, path, progress=lambda _fraction, message, seen=seen: seen.append(message))
        assert summary.imported == 5_000
        ends = [int(message.split("line ")[1].split(" of")[0].replace(",", ""))
                for message in seen]
        sizes = [end - start for start, end in zip([0, *ends], ends, strict=False)]
        assert ends[-1] == 5_000 and len(sizes) >= 2
        # each batch ends at the first row that reaches the bound (rows carry ~200 more bytes)
        assert all(IMPORT_BATCH_BYTES // (row_bytes + 300) <= size
                   <= IMPORT_BATCH_BYTES // row_bytes + 1 for size in sizes[:-1]), sizes
    assert _kept(context, project_id) == 10_000


def test_the_checks_that_an_import_turns_off_are_on_again_for_every_other_write(
        context: AppContext, tmp_path: Path) -> None:
    project_id = ProjectService(context).create("Checks").id
    path = tmp_path / "few.jsonl"
    path.write_text("\n".join(_line(i) for i in range(3)) + "\n", encoding="utf-8")
    assert DatasetService(context).import_file(project_id, path).imported == 3
    with pytest.raises(IntegrityError, match="CHECK constraint failed"), \
            context.transaction() as tx:
        tx.session.execute(text(
            "INSERT INTO dataset_examples (project_id, split, messages, status, content_hash, "
            "hash_key, source, created_at, updated_at) VALUES (:project, 'train', '[]', 'bogus', "
            "'x', 1, 'imported', '2026-01-01', '2026-01-01')"), {"project": project_id})
    assert _kept(context, project_id) == 3


def test_a_file_over_the_size_limit_of_the_settings_is_refused_before_reading(
        context: AppContext, tmp_path: Path) -> None:
    project_id = ProjectService(context).create("Huge").id
    path = tmp_path / "huge.jsonl"
    path.write_text((_line(1) + "\n") * 20_000, encoding="utf-8")  # about 1.6 MB
    AppSettings(max_dataset_mb=1).save(context.home)
    with pytest.raises(UserError, match=r"huge.jsonl is 2 MB; a dataset file can have at most "
                                        r"1 MB: split it and import the parts, or raise the "
                                        r"limit in Settings \(finetuneflow settings "
                                        r"--max-dataset-mb N\).$"):
        DatasetService(context).import_file(project_id, path)
    assert _kept(context, project_id) == 0
    assert not list(context.home.root.rglob("huge.jsonl"))  # no copy kept either


def test_the_line_and_example_limits_are_settings_of_the_cli(home: Path,
                                                            tmp_path: Path) -> None:
    """Low limits set with `finetuneflow settings` reject the long line and the long example
    with their reasons; the other lines are imported."""
    from tests.helpers.cli import run_cli, run_cli_json

    project_id = run_cli_json(home, "project", "create", "Low limits")["id"]
    shown = run_cli_json(home, "settings", "--max-line-mb", "1",
                         "--example-chars-per-token", "1")
    assert (shown["max_line_mb"], shown["example_chars_per_token"]) == (1, 1)
    assert shown["max_dataset_mb"] == 2048
    long_line = json.dumps({"messages": [{"role": "user", "content": "x" * 1_100_000},
                                         {"role": "assistant", "content": "y"}]})
    long_example = json.dumps({"messages": [{"role": "user", "content": "Tell me all."},
                                            {"role": "assistant", "content": "z" * 3000}]})
    path = tmp_path / "limits.jsonl"
    path.write_text("\n".join([_line(1), long_line, long_example, _line(2)]) + "\n",
                    encoding="utf-8")
    summary = run_cli_json(home, "dataset", "import", project_id, str(path), "--json")
    assert (summary["imported"], summary["rejected"]) == (2, 2)
    assert summary["errors"] == [
        "line 2: a line longer than 1,048,576 bytes",
        "line 3: an example of 3,012 characters, longer than 1,024 (1× the training's max "
        "length in tokens)"]
    too_low = run_cli(home, "settings", "--max-line-mb", "0")
    assert too_low.returncode == 1
    assert "The dataset line length limit must be between 1 MB and 1,024 MB." in too_low.stderr
    assert run_cli_json(home, "settings")["max_line_mb"] == 1  # the refused value not saved


def test_a_killed_import_keeps_its_batches_and_a_rerun_adds_the_rest(
        home: Path, tmp_path: Path) -> None:
    """kill -9 of `dataset import` mid-file: the stored batches stay whole, the process that
    reads the file for it ends too, and importing the file again ends with every line exactly
    once."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.helpers.cli import REPO_ROOT, cli_env, run_cli_json

    project_id = run_cli_json(home, "project", "create", "Killed")["id"]
    lines = IMPORT_BATCH * 4
    path = tmp_path / "many.jsonl"
    path.write_text("\n".join(_line(i) for i in range(lines)) + "\n", encoding="utf-8")
    child = subprocess.Popen([sys.executable, "-m", "finetuneflow", "dataset", "import",
                              project_id, str(path)], env=cli_env(home), cwd=REPO_ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db_path = home / "finetuneflow.db"
    deadline = time.monotonic() + 120
    stored = 0
    while stored < IMPORT_BATCH and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
        if db_path.exists():
            with sqlite3.connect(db_path, timeout=30) as db:
                stored = db.execute("SELECT COUNT(*) FROM dataset_examples").fetchone()[0]
    assert child.poll() is None, "the import ended before it could be killed"
    readers = psutil.Process(child.pid).children()  # the file is read by a child of its own
    assert len(readers) == 1
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    _, left = psutil.wait_procs(readers, timeout=60)  # its next write fails: it ends too
    assert not left
    assert (home / "logs" / READER_LOG).read_text(encoding="utf-8") == ""  # quietly
    with sqlite3.connect(db_path, timeout=30) as db:
        kept = db.execute("SELECT COUNT(*) FROM dataset_examples").fetchone()[0]
    assert 0 < kept < lines and kept % IMPORT_BATCH == 0  # whole batches only
    summary = run_cli_json(home, "dataset", "import", project_id, str(path))
    assert (summary["imported"], summary["duplicates"]) == (lines - kept, kept)
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT content_hash) FROM "
                          "dataset_examples").fetchone() == (lines, lines)


def test_ctrl_c_stops_an_import_after_its_batch_and_says_what_it_kept(
        home: Path, tmp_path: Path) -> None:
    """Ctrl-C of `dataset import`: the batch being stored is finished, the summary says how
    many lines were imported, the exit code is 130, and a rerun adds the rest. The terminal
    sends it to the whole process group: the process that reads the file ignores it."""
    import os
    import signal
    import subprocess
    import sys

    from tests.helpers.cli import REPO_ROOT, cli_env, run_cli_json

    project_id = run_cli_json(home, "project", "create", "Interrupted")["id"]
    lines = IMPORT_BATCH * 4
    path = tmp_path / "many.jsonl"
    path.write_text("\n".join(_line(i) for i in range(lines)) + "\n", encoding="utf-8")
    child = subprocess.Popen([sys.executable, "-m", "finetuneflow", "dataset", "import",
                              project_id, str(path), "--json"], env=cli_env(home), cwd=REPO_ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    assert child.stderr is not None
    first = child.stderr.readline()  # the first batch's progress line: the import is under way
    assert "imported" in first, first
    os.killpg(child.pid, signal.SIGINT)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    summary = json.loads(out)
    assert summary["stopped"] and 0 < summary["imported"] < lines
    assert summary["imported"] == _kept_in(home, project_id)
    assert "Stopping after the lines being stored" in err and "unexpected" not in err
    assert "Traceback" not in (home / "logs" / READER_LOG).read_text(encoding="utf-8")
    rest = run_cli_json(home, "dataset", "import", project_id, str(path))
    assert (rest["imported"], rest["duplicates"]) == (lines - summary["imported"],
                                                      summary["imported"])
    assert _kept_in(home, project_id) == lines


def test_two_imports_of_one_file_at_once_store_it_once_and_both_succeed(
        home: Path, tmp_path: Path) -> None:
    """Two commands (or windows) import the same file into one project at the same time:
    each batch looks up and inserts under the write lock, so neither meets the other's rows
    in the unique index, and their counts add up to the file."""
    import subprocess
    import sys

    from tests.helpers.cli import REPO_ROOT, cli_env, run_cli_json

    project_id = run_cli_json(home, "project", "create", "Twice")["id"]
    lines = IMPORT_BATCH * 4
    path = tmp_path / "many.jsonl"
    path.write_text("\n".join(_line(i) for i in range(lines)) + "\n", encoding="utf-8")
    children = [subprocess.Popen([sys.executable, "-m", "finetuneflow", "dataset", "import",
                                  project_id, str(path), "--json"], env=cli_env(home),
                                 cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for _ in range(2)]
    results = [child.communicate(timeout=300) for child in children]
    assert [child.returncode for child in children] == [0, 0], [err for _out, err in results]
    summaries = [json.loads(out) for out, _err in results]
    assert sum(summary["imported"] for summary in summaries) == lines
    assert sum(summary["duplicates"] for summary in summaries) == lines
    assert _kept_in(home, project_id) == lines


def _kept_in(home: Path, project_id: str) -> int:
    with sqlite3.connect(home / "finetuneflow.db") as db:
        return int(db.execute("SELECT COUNT(*) FROM dataset_examples WHERE project_id = ? "
                              "AND status != 'rejected'", (project_id,)).fetchone()[0])


def test_the_duplicate_lookup_of_a_batch_reads_by_hash_not_the_whole_project(
        context: AppContext) -> None:
    """Through the project alone each batch would read every row of the project: a
    million-line import would slow down quadratically."""
    from sqlalchemy.dialects import sqlite

    from finetuneflow.storage.examples import _known_keys
    from finetuneflow.storage.tables import EXAMPLE_KEY_INDEX

    query = _known_keys("some-project", [1, -2]).compile(
        dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True})
    with sqlite3.connect(context.home.db_path) as db:
        plan = " ".join(row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {query}"))
    assert f"USING INDEX {EXAMPLE_KEY_INDEX} (hash_key=? AND project_id=?)" in plan, plan


def test_an_import_gives_its_page_cache_back(context: AppContext, tmp_path: Path) -> None:
    """The batches run with a large SQLite page cache; the app must not keep it after."""
    from sqlalchemy import text

    from finetuneflow.storage.examples import DEFAULT_CACHE_KB

    project_id = ProjectService(context).create("Cache").id
    path = tmp_path / "few.jsonl"
    path.write_text("\n".join(_line(i) for i in range(3)) + "\n", encoding="utf-8")
    assert DatasetService(context).import_file(project_id, path).imported == 3
    with context.database.session() as session:
        assert session.scalar(text("PRAGMA cache_size")) == -DEFAULT_CACHE_KB
