"""What the judge will cost, shown before it runs: requests and tokens.

Prompt tokens are counted exactly as generation counts an example's length: the whole chat
through a `CountTokens` (core/generation/quality.py), in practice the base model's tokenizer
and chat template (core/chat_template.chat_token_counter). The judge's own tokenizer differs,
so the count is an estimate, usually within a few per cent for the same language. Completion
tokens are the answer budget (max tokens per request), an upper bound: a verdict is a line, but
a thinking model may spend the budget on its trace.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from finetuneflow.core.evaluation.judge import (
    ORDERS,
    JudgeCase,
    Order,
    judge_messages,
    needs_judging,
)
from finetuneflow.core.generation.quality import CountTokens


@dataclass(frozen=True)
class JudgeCost:
    requests: int
    prompt_tokens: int
    completion_tokens: int  # at most: requests × the answer budget

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def every_request(cases: Sequence[JudgeCase]) -> Iterator[tuple[JudgeCase, Order]]:
    """Both orders of every question the judge must see: a fresh evaluation's requests."""
    for case in cases:
        if needs_judging(case):
            for order in ORDERS:
                yield case, order


def estimate_judge_cost(
    requests: Iterable[tuple[JudgeCase, Order]], count_tokens: CountTokens, answer_budget: int
) -> JudgeCost:
    """The cost of the requests still to send (a resumed evaluation passes only those)."""
    count, prompt = 0, 0
    for case, order in requests:
        count += 1
        prompt += count_tokens(judge_messages(case, order))
    return JudgeCost(count, prompt, count * answer_budget)
