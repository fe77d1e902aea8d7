"""The judge's cost estimate: requests, prompt tokens, the answer budget."""

from __future__ import annotations

from pathlib import Path

from finetuneflow.core.chat_template import chat_token_counter
from finetuneflow.core.evaluation.cost import estimate_judge_cost, every_request
from finetuneflow.core.evaluation.judge import JudgeCase, Order, judge_messages

CASES = [
    JudgeCase("How many loops?", "Coolant flows through twelve loops.", "Twelve.",
              "Eight.", "Twelve loops."),
    JudgeCase("Who staffs the room?", "Four engineers staff the control room.",
              "Four engineers.", "Nobody.", "Four engineers, at all times."),
    JudgeCase("When?", "On Mondays.", "Mondays.", "", "On Monday mornings."),
]


def characters(messages: list[dict[str, str]]) -> int:
    return sum(len(message["content"]) for message in messages)


def test_two_requests_per_question_in_both_orders() -> None:
    requests = list(every_request(CASES))
    assert len(requests) == 2 * len(CASES)
    assert [order for _, order in requests[:2]] == ["base_first", "tuned_first"]


def test_prompt_tokens_count_every_request_and_the_budget_bounds_the_answers() -> None:
    cost = estimate_judge_cost(every_request(CASES), characters, answer_budget=512)
    expected_prompt = sum(characters(judge_messages(case, order))
                          for case in CASES for order in ("base_first", "tuned_first"))
    assert cost.requests == 6
    assert cost.prompt_tokens == expected_prompt
    assert cost.completion_tokens == 6 * 512
    assert cost.total_tokens == expected_prompt + 6 * 512


def test_questions_with_the_same_answers_cost_nothing() -> None:
    same = JudgeCase("Q?", "P.", "R.", "Twelve.", "Twelve.")
    assert [case for case, _ in every_request([same, CASES[0]])] == [CASES[0], CASES[0]]


def test_a_resumed_evaluation_costs_only_what_is_left() -> None:
    left: list[tuple[JudgeCase, Order]] = [(CASES[2], "tuned_first")]
    cost = estimate_judge_cost(left, characters, answer_budget=100)
    assert cost.requests == 1
    assert cost.prompt_tokens == characters(judge_messages(CASES[2], "tuned_first"))
    assert estimate_judge_cost([], characters, 100).total_tokens == 0


def test_counted_with_the_base_models_tokenizer(tiny_model_dir: Path) -> None:
    count = chat_token_counter(tiny_model_dir)
    cost = estimate_judge_cost(every_request(CASES), count, answer_budget=256)
    assert cost.prompt_tokens == sum(count(judge_messages(case, order))
                                     for case, order in every_request(CASES))
    # A byte-level BPE gives fewer tokens than characters, and more than none.
    assert 0 < cost.prompt_tokens < estimate_judge_cost(every_request(CASES), characters,
                                                        256).prompt_tokens
