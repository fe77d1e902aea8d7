from __future__ import annotations

from finetuneflow.core.dataset.split import EVAL, TRAIN, assign_splits


def test_about_ten_percent_of_groups_go_to_eval() -> None:
    groups = [f"chunk-{i}" for i in range(2000)]
    sides = assign_splits(groups)
    share = sum(side == EVAL for side in sides.values()) / len(groups)
    assert 0.08 < share < 0.12


def test_seeded_stable_and_independent_of_other_groups() -> None:
    first = assign_splits([f"g{i}" for i in range(100)], seed=7)
    more = assign_splits([f"g{i}" for i in range(300)], seed=7)
    assert all(more[group] == side for group, side in first.items())
    assert assign_splits([f"g{i}" for i in range(100)], seed=8) != first


def test_small_datasets_get_both_sides() -> None:
    sides = assign_splits(["a", "b"])
    assert sorted(sides.values()) == [EVAL, TRAIN]
    assert assign_splits(["only"]) == {"only": TRAIN}
    assert set(assign_splits(["a", "b", "c"], eval_fraction=0).values()) == {TRAIN}


def test_a_single_group_always_trains() -> None:
    for seed in range(50):
        assert assign_splits(["only"], seed=seed) == {"only": TRAIN}
