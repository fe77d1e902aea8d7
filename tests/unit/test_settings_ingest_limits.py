"""The zip-part limits of documents are app settings: saved, shown by the CLI, checked, and
applied when documents are added."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from finetuneflow.core.ingest.model import DEFAULT_LIMITS
from finetuneflow.services.base_model import ModelService
from finetuneflow.services.context import AppContext
from finetuneflow.services.errors import UserError
from finetuneflow.services.ingest import IngestService
from finetuneflow.services.projects import ProjectService
from finetuneflow.services.settings import MB, AppSettings
from finetuneflow.storage.home import Home
from tests.helpers.cli import run_cli, run_cli_json
from tests.unit.test_ingest_limits import _bomb


def test_the_defaults_are_the_ingest_defaults() -> None:
    assert AppSettings().ingest_limits() == DEFAULT_LIMITS


def test_the_limits_round_trip_through_the_cli(home: Path) -> None:
    shown = run_cli_json(home, "settings")
    assert (shown["max_part_mb"], shown["max_unpacked_mb"], shown["max_zip_ratio"]) == (
        128, 512, 200)
    changed = run_cli_json(home, "settings", "--max-part-mb", "2", "--max-unpacked-mb", "8",
                           "--max-zip-ratio", "50")
    assert (changed["max_part_mb"], changed["max_unpacked_mb"], changed["max_zip_ratio"]) == (
        2, 8, 50)
    assert run_cli_json(home, "settings")["max_part_mb"] == 2
    limits = AppSettings.load(Home(home)).ingest_limits()
    assert (limits.max_part_bytes, limits.max_unpacked_bytes, limits.max_ratio) == (
        2 * MB, 8 * MB, 50.0)
    too_big = run_cli(home, "settings", "--max-part-mb", "9")  # more than the total
    assert too_big.returncode == 1 and "no larger than the total" in too_big.stderr
    ratio = run_cli(home, "settings", "--max-zip-ratio", "1")
    assert ratio.returncode == 1 and "between 2 and 100,000" in ratio.stderr
    assert run_cli_json(home, "settings")["max_part_mb"] == 2  # nothing changed


def test_bad_limits_are_refused(context: AppContext) -> None:
    with pytest.raises(UserError, match="no larger than the total"):
        AppSettings(max_part_mb=600).save(context.home)
    with pytest.raises(UserError, match="between 1 MB"):
        AppSettings(max_part_mb=0).save(context.home)


def test_a_low_part_limit_refuses_a_docx(context: AppContext, tmp_path: Path,
                                         tiny_model_dir: Path) -> None:
    project_id = ProjectService(context).create("Limits").id
    ModelService(context).choose(project_id, str(tiny_model_dir))
    document = _bomb(tmp_path / "long.docx", repeats=40_000)  # 2.2 MB of XML
    replace(AppSettings(), max_part_mb=1).save(context.home)
    [refused] = IngestService(context).ingest(project_id, [document])
    assert refused.status == "error" and refused.chunks == 0
    assert refused.message.startswith("This document was not read: unpacked, "
                                      "word/document.xml would take 2 MB (the limit is 1 MB "
                                      "per part).")
    assert "--max-part-mb" in refused.message
    AppSettings().save(context.home)
    [read] = IngestService(context).ingest(project_id, [document])
    assert read.status == "ok" and read.chunks > 0
