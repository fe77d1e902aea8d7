"""When to stop training early: no improvement for a while, or a loss that blows up.

Pure logic, fed one evaluation loss at a time, so the rule is tested without a model and the
trainer can rebuild the state on resume by replaying the losses in the checkpoint's history.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

PATIENCE = "early_stopping"
DIVERGENCE = "divergence"


@dataclass
class StopDecision:
    reason: str  # PATIENCE or DIVERGENCE
    message: str


@dataclass
class EvalWatch:
    """Tracks the best evaluation loss; `observe` says when to stop.

    patience: evaluations without an improvement of more than `threshold` before stopping (0 = off).
    divergence_factor: stop when a loss exceeds factor × best, or is NaN/inf (0 = off).
    """

    patience: int = 0
    threshold: float = 0.0
    divergence_factor: float = 0.0
    best: float | None = None
    evaluations_without_improvement: int = 0

    def observe(self, loss: float) -> StopDecision | None:
        if not math.isfinite(loss):
            return self._diverged(loss) if self.divergence_factor else None
        if self.best is None or loss < self.best - self.threshold:
            self.best = loss if self.best is None else min(self.best, loss)
            self.evaluations_without_improvement = 0
            return None
        self.best = min(self.best, loss)
        self.evaluations_without_improvement += 1
        if self.divergence_factor and loss > self.divergence_factor * self.best:
            return self._diverged(loss)
        if self.patience and self.evaluations_without_improvement >= self.patience:
            return StopDecision(PATIENCE, (
                f"Stopped early: the evaluation loss has not improved for {self.patience} "
                f"evaluations (best {self.best:.4f}). More training would likely overfit."))
        return None

    def observe_train_loss(self, loss: float) -> StopDecision | None:
        """A NaN/inf training loss means the weights are already broken: stop at once."""
        if self.divergence_factor and not math.isfinite(loss):
            return StopDecision(DIVERGENCE, (
                f"Stopped: training diverged (training loss {loss}). Lower the learning rate and "
                "start again; the best checkpoint is kept."))
        return None

    def replay(self, losses: Iterable[float]) -> None:
        """Rebuild the state from earlier evaluations (after a resume); decisions are dropped."""
        for loss in losses:
            self.observe(loss)

    def _diverged(self, loss: float) -> StopDecision:
        best = "none yet" if self.best is None else f"best {self.best:.4f}"
        return StopDecision(DIVERGENCE, (
            f"Stopped: training diverged (evaluation loss {loss:.4g}, {best}). Lower the learning "
            "rate and start again; the best checkpoint is kept."))
