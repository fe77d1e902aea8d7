"""The judge's outcomes summed up: wins, ties, losses, a win rate and its 95 % interval.

The win rate counts a tie as half a win: (wins + ties / 2) / judged. So the base model's rate
is exactly 1 − the tuned model's, and a result of mostly ties reads as about 50 %, "no
difference", rather than as a loss (ties counted as non-wins) or as a certainty drawn from a
handful of decided questions (ties left out). Unjudged questions (an unreadable verdict) are
in no count but their own.

The interval is Wilson's score interval, which stays inside 0–100 % and holds up for small
samples and rates near the ends, where the normal approximation does not. The headline writes
it as "± half its width", as the issue asks, unless that would reach past 0 or 100 %
(the interval is lopsided there); then it names both ends.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from statistics import NormalDist

from finetuneflow.core.evaluation.judge import Outcome

Z_95 = NormalDist().inv_cdf(0.975)  # 1.95996…


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def wilson_interval(successes: float, n: int, z: float = Z_95) -> Interval:
    """Wilson's score interval for `successes` out of `n` (successes may be fractional)."""
    if n <= 0:
        return Interval(0.0, 1.0)  # nothing observed: any rate is possible
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    spread = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Interval(max(0.0, centre - spread), min(1.0, centre + spread))


@dataclass(frozen=True)
class Tally:
    """Outcomes for the fine-tuned model over the questions of one evaluation."""

    wins: int = 0
    ties: int = 0
    losses: int = 0
    unjudged: int = 0

    @property
    def judged(self) -> int:
        return self.wins + self.ties + self.losses

    @property
    def rate(self) -> float | None:
        """The win rate, a tie counted as half; None when no question was judged."""
        return (self.wins + self.ties / 2) / self.judged if self.judged else None

    @property
    def interval(self) -> Interval | None:
        if not self.judged:
            return None
        return wilson_interval(self.wins + self.ties / 2, self.judged)


def tally(outcomes: Iterable[Outcome | None]) -> Tally:
    """Count the outcomes of the questions; None is an unjudged question."""
    counts = {"win": 0, "tie": 0, "loss": 0, None: 0}
    for outcome in outcomes:
        counts[outcome] += 1
    return Tally(counts["win"], counts["tie"], counts["loss"], counts[None])


def percent(share: float) -> str:
    return f"{round(share * 100)} %"


def rate_text(result: Tally) -> str:
    """"77 % ± 11 %", or "100 % (95 % interval 93–100 %)" where ± would pass an end."""
    rate, interval = result.rate, result.interval
    if rate is None or interval is None:
        return "no rate"
    half = round(interval.half_width * 100)
    if 0 <= round(rate * 100) - half and round(rate * 100) + half <= 100:
        return f"{percent(rate)} ± {half} %"
    low, high = round(interval.low * 100), round(interval.high * 100)
    return f"{percent(rate)} (95 % interval {low}–{high} %)"


def headline(result: Tally) -> str:
    """The sentence the report and the Export page lead with."""
    if not result.judged:
        return "No question could be judged: every verdict was missing or unreadable."
    sentence = (f"The fine-tuned model wins {result.wins} of {result.judged}, ties {result.ties}, "
                f"loses {result.losses} — {rate_text(result)}")
    if result.unjudged:
        sentence += f"; {result.unjudged} more not judged"
    return sentence
