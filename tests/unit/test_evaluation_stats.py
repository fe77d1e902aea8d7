"""Win/tie/loss counts, the win rate with its Wilson interval, and the headline."""

from __future__ import annotations

import math

import pytest

from finetuneflow.core.evaluation.stats import Tally, headline, rate_text, tally, wilson_interval


# Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I,
# method 3 (Wilson score, no continuity correction).
@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611),
     (1, 29, 0.0061, 0.1718)],
)
def test_wilson_matches_published_values(successes: int, n: int, low: float, high: float) -> None:
    interval = wilson_interval(successes, n)
    assert interval.low == pytest.approx(low, abs=5e-5)
    assert interval.high == pytest.approx(high, abs=5e-5)


def test_wilson_hand_computed_with_half_successes() -> None:
    # 34 wins + 9 ties / 2 = 38.5 of 50: p = 0.77, z = 1.96, z²/n = 0.076829.
    # centre = (0.77 + 0.038415) / 1.076829 = 0.750739
    # spread = 1.96 / 1.076829 · √(0.77·0.23/50 + 3.8415/10000) = 0.114047
    interval = wilson_interval(38.5, 50)
    assert interval.low == pytest.approx(0.750739 - 0.114047, abs=1e-5)
    assert interval.high == pytest.approx(0.750739 + 0.114047, abs=1e-5)


def test_wilson_edges() -> None:
    assert wilson_interval(0, 0) == wilson_interval(3, 0)  # nothing observed
    assert (wilson_interval(0, 0).low, wilson_interval(0, 0).high) == (0.0, 1.0)
    everything = wilson_interval(10, 10)
    assert everything.high == 1.0 and everything.low == pytest.approx(0.7225, abs=5e-5)


def test_tally_counts_and_rates_ties_as_half() -> None:
    result = tally(["win"] * 34 + ["tie"] * 9 + ["loss"] * 7 + [None] * 2)  # type: ignore[list-item]
    assert result == Tally(wins=34, ties=9, losses=7, unjudged=2)
    assert result.judged == 50
    assert result.rate == pytest.approx(0.77)
    assert result.interval == wilson_interval(38.5, 50)


def test_all_ties_is_an_even_rate() -> None:
    assert Tally(ties=20).rate == 0.5
    assert Tally(wins=5, losses=5).rate == 0.5


def test_the_base_rate_mirrors_the_tuned_rate() -> None:
    tuned, base = Tally(wins=12, ties=5, losses=3), Tally(wins=3, ties=5, losses=12)
    assert tuned.rate is not None and base.rate is not None
    assert math.isclose(tuned.rate + base.rate, 1.0)


def test_headline_in_the_issues_words() -> None:
    assert headline(Tally(34, 9, 7)) == (
        "The fine-tuned model wins 34 of 50, ties 9, loses 7 — 77 % ± 11 %")
    # 3.5 of 10: spread = 1.96 / 1.38415 · √(0.35·0.65/10 + 3.8415/400) = 0.2547.
    assert headline(Tally(3, 1, 6, unjudged=2)) == (
        "The fine-tuned model wins 3 of 10, ties 1, loses 6 — 35 % ± 25 %; 2 more not judged")


def test_a_lopsided_interval_names_both_ends() -> None:
    # 50 of 50: Wilson gives 92.9–100 %; "100 % ± 4 %" would reach past 100 %.
    # 0 of 8: the upper end is z²/(n + z²) = 3.8415 / 11.8415 = 32.4 %.
    assert rate_text(Tally(wins=50)) == "100 % (95 % interval 93–100 %)"
    assert rate_text(Tally(losses=8)) == "0 % (95 % interval 0–32 %)"


def test_nothing_judged() -> None:
    result = tally([None, None])
    assert result.rate is None and result.interval is None
    assert headline(result) == (
        "No question could be judged: every verdict was missing or unreadable.")
    assert headline(Tally()) == headline(result)
