"""`finetuneflow evaluate` and `finetuneflow runs`: did fine-tuning help, and runs compared."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING

from finetuneflow.cli.common import (
    EXIT_INTERRUPTED,
    add_json,
    ctrl_c_cancels,
    open_context,
    print_json,
    stderr_progress,
)
from finetuneflow.core.evaluation.results import Evaluation
from finetuneflow.core.evaluation.stats import rate_text
from finetuneflow.core.export.report import evaluation_json, outcome_label, score_rows
from finetuneflow.core.progress import CancelToken
from finetuneflow.core.statuses import JobStatus
from finetuneflow.core.terminal import printable
from finetuneflow.services.errors import UserError
from finetuneflow.services.evaluation import (
    DEFAULT_MAX_NEW_TOKENS,
    evaluation,
    run_scores,
    start_evaluation,
)
from finetuneflow.services.jobs import JobService

if TYPE_CHECKING:
    from finetuneflow.core.evaluation import JudgeCost
    from finetuneflow.core.evaluation.results import RunScores

LOOK_FIRST = 5  # questions printed under the scores, those needing a look first
TEXT_CHARS = 100


def cmd_evaluate(args: argparse.Namespace) -> int:
    context = open_context()
    cancel = CancelToken()
    with ctrl_c_cancels(cancel, "Stopping; the answers and verdicts so far are kept…"):
        job_id = start_evaluation(
            context, args.project, args.run, judge=args.judge, max_questions=args.max_questions,
            extra_questions=args.question or (), max_new_tokens=args.max_new_tokens,
            progress=stderr_progress, cancel=cancel, on_cost=_print_cost)
    job = JobService(context).get(job_id)
    result = evaluation(context, job.project_id, int(job.params["run_id"]))
    if result is None:  # the run was deleted meanwhile
        raise UserError("The evaluation's run no longer exists.")
    if args.json:
        print_json(evaluation_json(result))
    else:
        _print_evaluation(result)
    if job.status is not JobStatus.SUCCEEDED:
        print("Stopped: run the same command again to resume.", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _print_cost(cost: JudgeCost) -> None:
    print(f"The judge: {cost.requests:,} requests, about {cost.prompt_tokens:,} prompt tokens "
          f"and at most {cost.completion_tokens:,} answer tokens "
          f"({cost.total_tokens:,} in all). Ctrl-C stops it; a rerun resumes.",
          file=sys.stderr, flush=True)


def _print_evaluation(result: Evaluation) -> None:
    summary = result.summary
    print(f"Run {summary.run_id}: {summary.answered} of {summary.questions} questions answered "
          f"by both models ({summary.status}).")
    print(printable(summary.headline))
    width = max(len(label) for label, _, _ in score_rows(summary))
    print(f"  {'':{width}}  {'base':>10}  {'fine-tuned':>10}")
    for label, base, tuned in score_rows(summary):
        print(f"  {label:{width}}  {base:>10}  {tuned:>10}")
    if summary.judge_requests:
        print(f"  judge: {summary.judge_requests:,} requests, {summary.judge_tokens:,} tokens")
    rows = [row for row in result.needing_a_look()[:LOOK_FIRST] if row.outcome != "win"]
    if rows:
        print("Look at first:")
    for row in rows:
        print(f"  #{row.question_id} [{outcome_label(row)}] {_short(row.question)}"
              + (f" — {_short(row.reason)}" if row.reason else ""))


def _short(text: str) -> str:
    line = printable(" ".join(text.split()))
    return line if len(line) <= TEXT_CHARS else line[:TEXT_CHARS - 1] + "…"


def cmd_runs(args: argparse.Namespace) -> int:
    runs = run_scores(open_context(), args.project)
    if args.json:
        print_json({"runs": [_run_json(run) for run in runs]})
        return 0
    if not runs:
        print("No training runs yet: finetuneflow train PROJECT", file=sys.stderr)
        return 0
    header = ("run", "status", "method", "rank", "lr", "epochs", "steps", "eval loss",
              "F1 base", "F1 tuned", "judge")
    table = [header] + [_run_row(run) for run in runs]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
              .rstrip())
    return 0


def _run_json(run: RunScores) -> dict[str, object]:
    data = asdict(run)
    if run.evaluation is not None:  # the same summary `evaluate --json` prints
        data["evaluation"] = evaluation_json(Evaluation(run.evaluation))["summary"]
    return data


def _run_row(run: RunScores) -> tuple[str, ...]:
    settings = run.settings
    scores = ({label: (base, tuned) for label, base, tuned in score_rows(run.evaluation)}
              if run.evaluation else {})
    f1 = scores.get("Token F1", ("", ""))
    tally = run.evaluation.tally if run.evaluation is not None else None
    judge = rate_text(tally) if tally is not None else ""
    return (str(run.run_id), run.status, run.method, str(settings.get("lora_r", "")),
            str(settings.get("learning_rate", "")), str(settings.get("num_epochs", "")),
            str(settings.get("max_steps", "")),
            f"{run.final_eval_loss:.4f}" if run.final_eval_loss is not None else "n/a",
            f1[0], f1[1], judge)


def register(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "evaluate", help="compare the fine-tuned model with its base on held-out questions")
    evaluate.add_argument("project")
    evaluate.add_argument("--run", type=int, metavar="RUN",
                          help="the finished run to evaluate (default: the latest)")
    evaluate.add_argument("--judge", action=argparse.BooleanOptionalAction, default=True,
                          help="let the project's LLM judge the two answers of each question, "
                          "in both orders (default: yes; its cost is printed first)")
    evaluate.add_argument("--max-questions", type=int, metavar="N",
                          help="at most N held-out questions, the same ones every time "
                          "(default: all)")
    evaluate.add_argument("--question", action="append", metavar="TEXT",
                          help="a question of your own, asked to both models (repeatable)")
    evaluate.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS,
                          metavar="N", help=f"the longest answer, in tokens "
                          f"({DEFAULT_MAX_NEW_TOKENS})")
    add_json(evaluate)
    evaluate.set_defaults(handler=cmd_evaluate)

    runs = commands.add_parser("runs", help="the project's training runs with their settings "
                               "and evaluation scores")
    runs.add_argument("project")
    add_json(runs)
    runs.set_defaults(handler=cmd_runs)
