from __future__ import annotations

from pathlib import Path

from finetuneflow import __version__
from tests.helpers.cli import run_cli, run_cli_json
from tests.helpers.images import assert_not_blank


def test_version(home: Path) -> None:
    result = run_cli(home, "--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"FineTuneFlow {__version__}"


def test_project_create_list_delete(home: Path) -> None:
    created = run_cli_json(home, "project", "create", "Tax forms")
    assert set(created) == {"id", "name"} and created["name"] == "Tax forms"
    plain = run_cli(home, "project", "create", "Manuals")
    assert plain.returncode == 0 and len(plain.stdout.strip()) == 36

    listed = run_cli_json(home, "project", "list")
    assert {p["name"] for p in listed} == {"Tax forms", "Manuals"}
    assert {"id", "name", "base_model", "current_step", "latest_job"} <= set(listed[0])

    deleted = run_cli(home, "project", "delete", created["id"], "--yes")
    assert deleted.returncode == 0 and deleted.stdout == ""
    assert [p["name"] for p in run_cli_json(home, "project", "list")] == ["Manuals"]


def test_project_rename_and_duplicate(home: Path) -> None:
    created = run_cli_json(home, "project", "create", "Garden")
    renamed = run_cli_json(home, "project", "rename", created["id"][:8], "Community garden")
    assert renamed["id"] == created["id"] and renamed["name"] == "Community garden"
    copy = run_cli_json(home, "project", "duplicate", "Community garden")
    assert copy["name"] == "Community garden (copy)" and copy["id"] != created["id"]
    assert {"id", "name", "base_model", "current_step", "latest_job"} <= set(copy)
    plain = run_cli(home, "project", "duplicate", created["id"], "--name", "Spare")
    assert plain.returncode == 0 and len(plain.stdout.strip()) == 36
    assert "Spare" in plain.stderr
    names = {p["name"] for p in run_cli_json(home, "project", "list")}
    assert names == {"Community garden", "Community garden (copy)", "Spare"}
    quiet = run_cli(home, "project", "rename", "Spare", "Spare beds")
    assert quiet.returncode == 0 and quiet.stdout == ""


def test_settings_default_preset(home: Path) -> None:
    assert run_cli_json(home, "settings")["default_preset"] == "balanced"
    assert run_cli_json(home, "settings", "--default-preset", "quick")["default_preset"] == "quick"
    assert run_cli(home, "settings", "--default-preset", "fastest").returncode == 2


def test_user_errors_are_one_line_without_traceback(home: Path) -> None:
    for args in (["project", "delete", "no-such-project"], ["project", "create", "  "],
                 ["project", "rename", "no-such-project", "x"],
                 ["project", "duplicate", "no-such-project"],
                 ["project", "frobnicate"], ["gui", "--page", "nowhere"]):
        result = run_cli(home, *args)
        assert result.returncode != 0, args
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("finetuneflow"), result.stderr
        assert "Traceback" not in result.stderr


def test_gui_screenshot_writes_a_png(home: Path, tmp_path: Path) -> None:
    project = run_cli_json(home, "project", "create", "Screens")
    shot = tmp_path / "dashboard.png"
    result = run_cli(home, "gui", "--screenshot", str(shot))
    assert result.returncode == 0, result.stderr
    page_shot = tmp_path / "data.png"
    result = run_cli(home, "gui", "--project", project["id"], "--page", "data",
                     "--screenshot", str(page_shot))
    assert result.returncode == 0, result.stderr
    for path in (shot, page_shot):
        assert_not_blank(path)
