"""The train/eval split: seeded, and grouped by source so no chunk feeds both sides.

Each group's side comes from a hash of (seed, group key), not from a shuffle of the current
list: adding examples later never moves an existing group to the other side.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

DEFAULT_EVAL_FRACTION = 0.1
DEFAULT_SEED = 42
TRAIN, EVAL = "train", "eval"


def _draw(seed: int, group: str) -> float:
    digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(groups: Iterable[str], eval_fraction: float = DEFAULT_EVAL_FRACTION,
                  seed: int = DEFAULT_SEED) -> dict[str, str]:
    """Group key → "train" | "eval". With two or more groups, eval is never empty."""
    if not 0 <= eval_fraction < 1:
        raise ValueError("The eval share must be at least 0 and below 1.")
    draws = {group: _draw(seed, group) for group in set(groups)}
    if len(draws) < 2:  # nothing to evaluate against: everything trains
        return dict.fromkeys(draws, TRAIN)
    sides = {group: EVAL if draw < eval_fraction else TRAIN for group, draw in draws.items()}
    if eval_fraction > 0 and EVAL not in sides.values():
        sides[min(draws, key=draws.__getitem__)] = EVAL  # a tiny dataset still gets an eval set
    if TRAIN not in sides.values():
        sides[max(draws, key=draws.__getitem__)] = TRAIN
    return sides
