"""Evaluation of a fine-tuned model against its base: overlap with the reference answer,
the pairwise LLM judge (prompt, verdicts, outcome per question), the win rate and its
interval, the judge's cost and the grounding score.

Pure Python, no Qt, no storage: the evaluation job and the interfaces build on it.
"""

from finetuneflow.core.evaluation.cost import JudgeCost, estimate_judge_cost, every_request
from finetuneflow.core.evaluation.grounding import (
    GroundingCheck,
    GroundingShare,
    check_grounding,
    grounding_share,
)
from finetuneflow.core.evaluation.judge import (
    ORDERS,
    SAME_ANSWERS,
    VERDICT_SCHEMA,
    JudgeCase,
    Order,
    Outcome,
    QuestionOutcome,
    Verdict,
    combine,
    judge_messages,
    needs_judging,
    parse_verdict,
    unreadable,
)
from finetuneflow.core.evaluation.overlap import rouge_l, token_f1
from finetuneflow.core.evaluation.stats import Interval, Tally, headline, tally, wilson_interval

__all__ = [
    "ORDERS",
    "SAME_ANSWERS",
    "VERDICT_SCHEMA",
    "GroundingCheck",
    "GroundingShare",
    "Interval",
    "JudgeCase",
    "JudgeCost",
    "Order",
    "Outcome",
    "QuestionOutcome",
    "Tally",
    "Verdict",
    "check_grounding",
    "combine",
    "estimate_judge_cost",
    "every_request",
    "grounding_share",
    "headline",
    "judge_messages",
    "needs_judging",
    "parse_verdict",
    "rouge_l",
    "tally",
    "token_f1",
    "unreadable",
    "wilson_interval",
]
