from __future__ import annotations

from pathlib import Path

import pytest

from finetuneflow.core import atomic
from finetuneflow.core.atomic import atomic_copy
from finetuneflow.core.progress import Cancelled, CancelToken


def test_atomic_copy_copies_with_progress_per_percent(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(atomic, "CHUNK", 10)  # many chunks from a small file
    source = tmp_path / "a.zip"
    source.write_bytes(bytes(range(256)) * 20)
    reports: list[float] = []
    atomic_copy(source, tmp_path / "out" / "b.zip", progress=lambda f, _m: reports.append(f))
    assert (tmp_path / "out" / "b.zip").read_bytes() == source.read_bytes()
    assert reports[-1] == 1.0 and 50 < len(reports) <= 101
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["b.zip"]


def test_a_cancelled_copy_keeps_the_older_file_and_leaves_nothing_else(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(atomic, "CHUNK", 10)
    source, target = tmp_path / "a.zip", tmp_path / "b.zip"
    source.write_bytes(b"new" * 100)
    target.write_bytes(b"older")
    cancel = CancelToken()

    def halfway(fraction: float, _message: str) -> None:
        if fraction > 0.5:
            cancel.cancel()

    with pytest.raises(Cancelled):
        atomic_copy(source, target, progress=halfway, cancel=cancel)
    assert target.read_bytes() == b"older"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip", "b.zip"]
