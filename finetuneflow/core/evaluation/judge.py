"""The pairwise LLM judge: its prompt, reading its verdict, and one outcome per question.

Each question is judged twice, base-first and tuned-first, so a judge that prefers whichever
answer comes first (position bias) cannot make either model win: only a preference that
survives the swap counts. Two orders that disagree make a tie. A question counts only when
both verdicts could be read: one order alone would bring the bias back, so an unreadable
verdict leaves the question unjudged, with the reason, and the job may ask again.
Two answers that are the same are a tie without asking (SAME_ANSWERS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from finetuneflow.core.generation.parse import parse_answer
from finetuneflow.core.generation.quality import content_hash

Message = dict[str, str]
Winner = Literal["A", "B", "tie"]
Outcome = Literal["win", "tie", "loss"]  # for the fine-tuned model
Order = Literal["base_first", "tuned_first"]
ORDERS: tuple[Order, Order] = ("base_first", "tuned_first")
MAX_REASON_CHARS = 300

JUDGE_SYSTEM_PROMPT = (
    "You are a strict, impartial judge of answers to questions about a document. "
    "You answer with JSON only."
)
JUDGE_INSTRUCTIONS = (
    "Compare the two answers to the question. The better answer is the one that is correct "
    "according to the passage and the reference answer, and answers the question completely; "
    "length, style and confidence do not count. If both are equally good or equally bad, say "
    "tie. The order of the answers means nothing.\n"
    'Reply with JSON only: {"winner": "A" or "B" or "tie", "reason": "one short sentence"}'
)

# Sent as structured output; reading the answer is more lenient (_READ_SCHEMA, _winner_of).
VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "winner": {"type": "string", "enum": ["A", "B", "tie"]},
        "reason": {"type": "string", "description": "one short sentence"},
    },
    "required": ["winner", "reason"],
    "additionalProperties": False,
}
_READ_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"winner": {"type": "string", "minLength": 1}, "reason": {"type": "string"}},
    "required": ["winner"],
}
_WINNER_WORDS: dict[str, Winner] = {
    "a": "A", "answer a": "A", "b": "B", "answer b": "B",
    "tie": "tie", "draw": "tie", "equal": "tie", "both": "tie", "neither": "tie",
}


@dataclass(frozen=True)
class JudgeCase:
    """What the judge sees about one question."""

    question: str
    passage: str  # the source passage the question was made from
    reference: str  # the reference answer
    base_answer: str
    tuned_answer: str


@dataclass(frozen=True)
class QuestionOutcome:
    """One question's result for the fine-tuned model; `outcome` None: not judged."""

    outcome: Outcome | None
    reason: str
    orders_agree: bool


def needs_judging(case: JudgeCase) -> bool:
    """False when both models said the same, up to spacing (case and punctuation count:
    "2+2=4" is not "2*2=4"): a tie that costs no request."""
    return _identity(case.base_answer) != _identity(case.tuned_answer)


def _identity(answer: str) -> str:
    return content_hash([{"role": "assistant", "content": answer}])


SAME_ANSWERS = QuestionOutcome("tie", "both models gave the same answer", True)


def judge_messages(case: JudgeCase, order: Order) -> list[Message]:
    """The chat for one verdict; `order` says which model's answer is shown as A."""
    first, second = ((case.base_answer, case.tuned_answer) if order == "base_first"
                     else (case.tuned_answer, case.base_answer))
    user = (
        f"Passage:\n{case.passage.strip()}\n\n"
        f"Question:\n{case.question.strip()}\n\n"
        f"Reference answer:\n{case.reference.strip()}\n\n"
        f"Answer A:\n{first.strip() or '(empty)'}\n\n"
        f"Answer B:\n{second.strip() or '(empty)'}\n\n"
        f"{JUDGE_INSTRUCTIONS}"
    )
    return [{"role": "system", "content": JUDGE_SYSTEM_PROMPT},
            {"role": "user", "content": user}]


@dataclass(frozen=True)
class Verdict:
    """One order's verdict; `winner` is None when the answer could not be read, and then
    `reason` says why."""

    winner: Winner | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"winner": self.winner, "reason": self.reason}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        winner = data.get("winner")
        return cls(_winner_of(winner) if isinstance(winner, str) else None,
                   str(data.get("reason", "")))


def unreadable(why: str) -> Verdict:
    """A verdict that could not be had (unparseable answer, failed request): a reason."""
    return Verdict(None, _one_line(why))


def parse_verdict(text: str) -> Verdict:
    """The verdict in the judge's answer, repaired like generated examples are; never raises."""
    outcome = parse_answer(text, _READ_SCHEMA)
    if not outcome.items:
        why = outcome.error or (outcome.rejects[0].reason if outcome.rejects else "no verdict")
        # The parser words its errors for examples; here the JSON was to hold a verdict.
        return unreadable(f"unreadable verdict: {why.replace('list of examples', 'verdict')}")
    item = outcome.items[0]
    winner = _winner_of(str(item["winner"]))
    if winner is None:
        return unreadable(f"unreadable verdict: winner {str(item['winner'])[:40]!r} is not "
                          "A, B or tie")
    return Verdict(winner, _one_line(str(item.get("reason", ""))))


def _winner_of(word: str) -> Winner | None:
    return _WINNER_WORDS.get(" ".join(word.strip(" .!\"'").casefold().split()))


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MAX_REASON_CHARS else line[: MAX_REASON_CHARS - 1] + "…"


def tuned_outcome(verdict: Verdict, order: Order) -> Outcome | None:
    """The verdict as a win, tie or loss of the fine-tuned model; None when unreadable."""
    if verdict.winner is None:
        return None
    if verdict.winner == "tie":
        return "tie"
    tuned_letter = "B" if order == "base_first" else "A"
    return "win" if verdict.winner == tuned_letter else "loss"


def combine(base_first: Verdict, tuned_first: Verdict) -> QuestionOutcome:
    """One outcome from the two orders: what both say, a tie when they disagree."""
    first = tuned_outcome(base_first, "base_first")
    second = tuned_outcome(tuned_first, "tuned_first")
    if first is None or second is None:
        missing = [f"{name}: {verdict.reason}" for name, verdict, outcome in
                   (("base first", base_first, first), ("tuned first", tuned_first, second))
                   if outcome is None]
        return QuestionOutcome(None, _one_line("not judged — " + "; ".join(missing)), False)
    if first == second:
        return QuestionOutcome(first, base_first.reason or tuned_first.reason, True)
    return QuestionOutcome("tie", _one_line(
        f"the two orders disagree ({_said(first)} base first, {_said(second)} tuned first): "
        f"{base_first.reason} / {tuned_first.reason}"), False)


def _said(outcome: Outcome) -> str:
    return {"win": "tuned wins", "loss": "base wins", "tie": "tie"}[outcome]

