"""Which checkpoint a resume continues from.

transformers writes trainer_state.json last, and not atomically, so a checkpoint counts as
complete only when that file exists and parses. A folder left half-written by a crash or a
hard kill is renamed (out of transformers' `checkpoint-*` pattern), so the trainer neither
resumes from it, nor saves into it, nor counts it among the checkpoints it keeps.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

TRAINER_STATE = "trainer_state.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")

log = logging.getLogger(__name__)


def checkpoint_step(path: Path) -> int | None:
    match = _CHECKPOINT.match(path.name)
    return int(match.group(1)) if match else None


def is_complete(path: Path) -> bool:
    try:
        state = json.loads((path / TRAINER_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and "global_step" in state


def checkpoints(folder: Path) -> list[Path]:
    """checkpoint-N folders, oldest first."""
    if not folder.is_dir():
        return []
    found = [path for path in folder.iterdir()
             if path.is_dir() and checkpoint_step(path) is not None]
    return sorted(found, key=lambda path: checkpoint_step(path) or 0)


def latest_complete(folder: Path) -> Path | None:
    complete = [path for path in checkpoints(folder) if is_complete(path)]
    return complete[-1] if complete else None


def set_aside_incomplete(folder: Path) -> list[Path]:
    """Rename incomplete checkpoint folders to `incomplete-checkpoint-N` (kept for a look)."""
    moved = []
    for path in checkpoints(folder):
        if is_complete(path):
            continue
        target = path.with_name(f"incomplete-{path.name}")
        suffix = 1
        while target.exists():
            suffix += 1
            target = path.with_name(f"incomplete-{path.name}.{suffix}")
        path.rename(target)
        log.warning("Checkpoint %s is incomplete (interrupted while saving); moved it to %s",
                    path.name, target.name)
        moved.append(target)
    return moved
