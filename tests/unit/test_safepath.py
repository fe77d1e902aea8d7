from __future__ import annotations

import os
from pathlib import Path

import pytest

from finetuneflow.core.safepath import UnsafePathError, check_name, safe_child, slugify
from finetuneflow.storage.home import PROJECT_SUBDIRS, Home, default_home


@pytest.mark.parametrize("name", [
    "..", ".", "", "a/b", "a\\b", "/etc/passwd", "C:\\x", "nul\x00", "tab\tname", "bell\x07",
    "trailing.", "trailing ", "CON", "com1.txt", "what?", "a:b",
])
def test_unsafe_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsafePathError):
        safe_child(tmp_path, name)


@pytest.mark.parametrize("name", ["report.pdf", "Étude_2024 v2.docx", "日本語.txt", ".hidden"])
def test_ordinary_names_are_kept(tmp_path: Path, name: str) -> None:
    assert safe_child(tmp_path, name) == tmp_path / name
    assert check_name(name) == name


def test_absolute_and_nested_traversal(tmp_path: Path) -> None:
    with pytest.raises(UnsafePathError):
        safe_child(tmp_path, "sub", "..")
    with pytest.raises(UnsafePathError):
        safe_child(tmp_path, str(tmp_path / "x"))


def test_symlink_out_of_the_base_is_refused(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, base / "link")
    with pytest.raises(UnsafePathError):
        safe_child(base, "link", "file.txt")


def test_slugify_makes_portable_stems() -> None:
    assert slugify("Résumé: Q&A / 2024") == "Resume-Q-A-2024"
    assert slugify("../../etc") == "etc"
    assert slugify("日本語") == "file"
    assert slugify("CON") == "file"
    assert len(slugify("x" * 500)) == 60


def test_home_comes_from_the_environment(home: Path) -> None:
    assert default_home() == home
    assert Home.default().root == home


def test_project_dirs_and_files_stay_inside(home: Path) -> None:
    layout = Home(home).ensure()
    root = layout.create_project_dirs("0b4f0b1e-aaaa-bbbb-cccc-000000000000")
    assert sorted(p.name for p in root.iterdir()) == sorted(PROJECT_SUBDIRS)
    assert layout.project_file(root.name, "raw", "a.pdf") == root / "raw" / "a.pdf"
    with pytest.raises(UnsafePathError):
        layout.project_file(root.name, "raw", "../../db")
    with pytest.raises(UnsafePathError):
        layout.project_dir("../escape")
    with pytest.raises(ValueError, match="unknown project folder"):
        layout.project_subdir(root.name, "secrets")
