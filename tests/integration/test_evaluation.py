"""The evaluation job end to end: a short real training run of the tiny model, the real
`trainer answer` child, the judge on the fake LLM server scripted per question (wins, losses,
ties, a judge that always prefers the first answer, unreadable verdicts, failures), a kill -9
and a resume, and the CLI's numbers against the database.

One module-scoped fixture trains once; each test works on its own copy of that home.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from finetuneflow.core.evaluation import rouge_l, token_f1
from finetuneflow.core.export.report import evaluation_json, score_rows
from finetuneflow.core.generation import LLMSettings
from finetuneflow.services.base_model import ModelService
from finetuneflow.services.context import AppContext
from finetuneflow.services.datasets import DatasetService
from finetuneflow.services.errors import UserError
from finetuneflow.services.evaluation import (
    answer_scores,
    estimate_judge,
    evaluation,
    run_scores,
    start_evaluation,
)
from finetuneflow.services.export import ExportOptions, ExportService
from finetuneflow.services.generation import GenerationService
from finetuneflow.services.jobs import JobService
from finetuneflow.services.projects import ProjectService
from finetuneflow.storage.evaluations import NewQuestion
from finetuneflow.storage.home import Home
from finetuneflow.storage.tables import EvaluationQuestion, ExampleSplit, JobKind, JobStatus
from tests.helpers.cli import REPO_ROOT, cli_env, run_cli
from tests.helpers.fake_llm import FakeLLMServer, Fault, last_user_text
from tests.helpers.finished_run import arithmetic_chats, train

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Trained:
    home: Path
    project_id: str
    run_id: int


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    root = tmp_path_factory.mktemp("evaluation")
    patch = pytest.MonkeyPatch()
    patch.setenv("OMP_NUM_THREADS", "1")  # the tiny model gains nothing from threads
    context = AppContext.open(Home(root / "home"))
    try:
        project_id = ProjectService(context).create("Arithmetic").id
        ModelService(context).choose(project_id, str(tiny_model_dir))
        DatasetService(context).import_file(project_id,
                                            arithmetic_chats(root / "chats.jsonl", 200))
        train(context, project_id)
        with context.transaction() as tx:
            run = tx.runs.latest_succeeded(project_id)
            assert run is not None
            run_id = run.id
    finally:
        context.close()
    yield Trained(root / "home", project_id, run_id)
    patch.undo()


@pytest.fixture
def project(trained: Trained, home: Path) -> str:
    """This test's own copy of the trained home (the adapter stays where it was trained)."""
    shutil.copytree(trained.home, home)
    return trained.project_id


@pytest.fixture
def ctx(project: str) -> Iterator[AppContext]:
    context = AppContext.open()
    yield context
    context.close()


# --- the judge, scripted per question -------------------------------------------------------

PLAN = ["tuned", "tuned", "tuned", "tuned", "tuned", "base", "base", "tie", "tie",
        "first", "unreadable"]  # 5 wins, 2 losses, 3 ties (one from a flip), 1 not judged


def verdicts(plan: dict[str, str]) -> Any:
    """A judge that answers each question as `plan` says: "tuned" or "base" (that answer wins
    in both orders), "tie", "first" (always A: position bias), "unreadable" (no JSON)."""
    def respond(request: dict[str, Any], _api: Any) -> str:
        text = last_user_text(request)
        question = text.split("Question:\n", 1)[1].split("\n\n", 1)[0]
        first = text.split("Answer A:\n", 1)[1].split("\n\n", 1)[0]
        behaviour = plan[question]
        if behaviour == "unreadable":
            return "Both answers look fine to me, honestly."
        tuned_letter = "A" if first.startswith("tuned") else "B"
        winner = {"tuned": tuned_letter, "base": "B" if tuned_letter == "A" else "A",
                  "tie": "tie", "first": "A"}[behaviour]
        return json.dumps({"winner": winner, "reason": f"{behaviour} for {question}"})
    return respond


def use_fake_llm(context: AppContext, project_id: str, server: FakeLLMServer,
                 concurrency: int = 4) -> None:
    GenerationService(context).set_llm_settings(project_id, LLMSettings(
        provider="ollama", base_url=server.base_url, model="gpt-oss:20b",
        concurrency=concurrency))


def answered_evaluation(context: AppContext, project_id: str, run_id: int,
                        count: int = len(PLAN)) -> dict[str, str]:
    """A stopped evaluation whose `count` held-out questions both models have answered (the
    answers written as the trainer's would be), with its losses: a resume only judges.
    Its plan, by question text."""
    with context.transaction() as tx:
        held = tx.evaluations.held_out(project_id)[:count]
        assert len(held) == count
        record = tx.evaluations.add(run_id, judge=True, max_questions=None, max_new_tokens=32)
        tx.evaluations.add_questions(record.id, [NewQuestion(
            f"example:{h.example_id}", h.example_id, h.messages[:-1],
            h.messages[-2]["content"], h.messages[-1]["content"],
            f"Twice that number is {h.messages[-1]['content']}.") for h in held])
        for number, question in enumerate(tx.evaluations.questions(record.id)):
            for variant, text in (("base", f"base says {number + 1000}"),
                                  ("finetuned", f"tuned says {question.reference}")):
                tx.evaluations.record_answer(record.id, question.id, variant, text, answer_scores(
                    text, question.reference, question.passage))
        for variant, loss in (("base", 2.5), ("finetuned", 1.5)):
            tx.evaluations.record_loss(record.id, variant, loss, 2.0 ** loss)
        tx.evaluations.finish(record.id, "stopped", "stopped before the judge")
        questions = [q.question for q in tx.evaluations.questions(record.id)]
    return dict(zip(questions, PLAN[:count], strict=True))


def judge_requests(server: FakeLLMServer) -> list[str]:
    return [last_user_text(r.payload) for r in server.requests if r.path == "/api/chat"]


def test_the_judge_aggregates_as_computed_by_hand(
        ctx: AppContext, project: str, trained: Trained, fake_llm: FakeLLMServer) -> None:
    plan = answered_evaluation(ctx, project, trained.run_id)
    use_fake_llm(ctx, project, fake_llm)
    fake_llm.set_responder(verdicts(plan))
    estimate = estimate_judge(ctx, project)  # before it runs: the answers are stored
    costs = []
    job_id = start_evaluation(ctx, project, judge=True, max_questions=None,
                              on_cost=costs.append)
    assert costs == [estimate]
    assert JobService(ctx).get(job_id).status is JobStatus.SUCCEEDED
    result = evaluation(ctx, project, trained.run_id)
    assert result is not None
    summary = result.summary
    tally = summary.tally
    assert tally is not None
    assert (tally.wins, tally.ties, tally.losses, tally.unjudged) == (5, 3, 2, 1)
    # (5 + 3/2) / 10, and Wilson's interval for 6.5 of 10 at z = 1.95996…, by hand.
    assert tally.rate == pytest.approx(0.65)
    assert tally.interval is not None
    assert tally.interval.low == pytest.approx(0.35367072, abs=1e-7)
    assert tally.interval.high == pytest.approx(0.86306944, abs=1e-7)
    assert summary.headline == ("The fine-tuned model wins 5 of 10, ties 3, loses 2 — "
                                "65 % ± 25 %; 1 more not judged")
    # Two requests per question, all counted, and the cost was told before the first.
    assert len(judge_requests(fake_llm)) == 22 == summary.judge_requests
    assert costs and costs[0].requests == 22 and summary.judge_tokens > 0
    by_plan = {plan[row.question]: row for row in result.rows}
    assert by_plan["first"].outcome == "tie" and "disagree" in by_plan["first"].reason
    unjudged = by_plan["unreadable"]
    assert unjudged.outcome is None and "unreadable verdict" in unjudged.reason
    assert by_plan["base"].outcome == "loss" and by_plan["base"].reason == "base for " + \
        by_plan["base"].question
    assert [row.outcome for row in result.needing_a_look()[:3]] == ["loss", "loss", None]
    # Every tuned answer's number is in its passage, no base answer's is.
    assert (summary.base_grounded_share, summary.tuned_grounded_share) == (0.0, 1.0)
    assert summary.base_eval_loss == 2.5 and summary.tuned_perplexity == pytest.approx(2.0 ** 1.5)
    assert summary.tuned_f1 == pytest.approx(sum(
        token_f1(row.tuned_answer or "", row.reference or "") for row in result.rows) / 11)

    # The export's report.md and metrics.json carry the same read model.
    exported = ExportService(ctx).export(project, ExportOptions(
        merged=False, sample_prompts=1, sample_max_tokens=4))
    report = (exported.folder / "report.md").read_text(encoding="utf-8")
    assert f"**{summary.headline}**" in report and "| Eval loss | 2.5000 | 1.5000 |" in report
    metrics = json.loads((exported.folder / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["evaluation"] == json.loads(json.dumps(evaluation_json(result)))


def test_a_resume_asks_the_judge_only_what_is_missing(
        ctx: AppContext, project: str, trained: Trained, fake_llm: FakeLLMServer) -> None:
    plan = answered_evaluation(ctx, project, trained.run_id)
    use_fake_llm(ctx, project, fake_llm)
    fake_llm.set_responder(verdicts(plan))
    fake_llm.fail_next(Fault.UNAUTHORIZED)  # the first request: a run-stopping failure
    with pytest.raises(UserError, match="API key"):
        start_evaluation(ctx, project, judge=True, max_questions=None)
    job = JobService(ctx).latest(project, JobKind.EVAL)
    assert job is not None and job.status is JobStatus.FAILED and "API key" in (job.error or "")
    failed = evaluation(ctx, project, trained.run_id)
    assert failed is not None and failed.summary.status == "failed"
    with ctx.database.session() as session:  # the verdicts that came before the failure
        kept = sum(winner is not None for q in session.query(EvaluationQuestion).all()
                   for winner in (q.base_first_winner, q.tuned_first_winner))

    fake_llm.reset_counters()
    start_evaluation(ctx, project, judge=True, max_questions=None)
    first_pass = evaluation(ctx, project, trained.run_id)
    assert first_pass is not None and first_pass.summary.tally is not None
    assert first_pass.summary.tally.unjudged == 1  # the unreadable one
    asked = judge_requests(fake_llm)
    assert len(asked) == 22 - kept  # no verdict asked twice

    # The evaluation succeeded: a new one would start. A stopped one resumes: the judge's
    # unreadable question is asked again, and only it.
    unreadable = next(q for q, b in plan.items() if b == "unreadable")
    plan[unreadable] = "tuned"
    with ctx.transaction() as tx:
        record = tx.evaluations.latest(trained.run_id)
        assert record is not None
        tx.evaluations.finish(record.id, "stopped")
    fake_llm.reset_counters()
    start_evaluation(ctx, project, judge=True, max_questions=None)
    assert [unreadable in text for text in judge_requests(fake_llm)] == [True, True]
    final = evaluation(ctx, project, trained.run_id)
    assert final is not None and final.summary.tally is not None
    assert (final.summary.tally.wins, final.summary.tally.unjudged) == (6, 0)
    assert final.summary.evaluation_id == failed.summary.evaluation_id
    assert len(final.rows) == 11


def test_a_dead_llm_fails_the_job_with_the_cause_and_keeps_the_answers(
        ctx: AppContext, project: str, trained: Trained) -> None:
    answered_evaluation(ctx, project, trained.run_id, count=3)
    with FakeLLMServer() as server:
        use_fake_llm(ctx, project, server)
    # The server is gone: the preflight cannot reach it.
    with pytest.raises(UserError, match="judge cannot be used"):
        start_evaluation(ctx, project, judge=True, max_questions=None)
    job = JobService(ctx).latest(project, JobKind.EVAL)
    assert job is not None and job.status is JobStatus.FAILED
    result = evaluation(ctx, project, trained.run_id)
    assert result is not None and result.summary.status == "failed"
    assert all(row.base_answer and row.tuned_answer for row in result.rows)
    assert result.summary.message == job.error


def test_a_dead_llm_fails_a_judged_evaluation_before_any_answer(
        ctx: AppContext, project: str, trained: Trained) -> None:
    with FakeLLMServer() as server:
        use_fake_llm(ctx, project, server)
    with pytest.raises(UserError, match="judge cannot be used"):
        start_evaluation(ctx, project, judge=True, max_questions=2)
    result = evaluation(ctx, project, trained.run_id)
    assert result is not None and result.summary.status == "failed"
    assert result.summary.answered == 0 and len(result.rows) == 2
    assert not (ctx.home.project_file(project, "logs") / f"eval-{trained.run_id}.log").exists()


def test_every_request_failing_fails_the_job(
        ctx: AppContext, project: str, trained: Trained, fake_llm: FakeLLMServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINETUNEFLOW_LLM_RETRY_BASE_S", "0.01")
    answered_evaluation(ctx, project, trained.run_id, count=2)
    use_fake_llm(ctx, project, fake_llm, concurrency=1)
    fake_llm.set_fault_rate(1.0, [Fault.SERVER_ERROR])
    with pytest.raises(UserError, match="The judge failed"):
        start_evaluation(ctx, project, judge=True, max_questions=None)
    result = evaluation(ctx, project, trained.run_id)
    assert result is not None and result.summary.status == "failed"
    assert all(row.outcome is None for row in result.rows)
    assert all("request failed" in row.reason for row in result.rows)


# --- real answers of the tiny model ----------------------------------------------------------

def test_the_tiny_models_answers_are_stored_with_their_scores(
        ctx: AppContext, project: str, trained: Trained) -> None:
    job_id = start_evaluation(ctx, project, judge=False, max_questions=4,
                              extra_questions=["What is 2 plus 2?"], max_new_tokens=8)
    assert JobService(ctx).get(job_id).status is JobStatus.SUCCEEDED
    result = evaluation(ctx, project, trained.run_id)
    assert result is not None
    summary = result.summary
    assert summary.status == "succeeded" and summary.questions == summary.answered == 5
    assert summary.tally is None and "judge was not used" in summary.headline
    typed = [row for row in result.rows if row.reference is None]
    assert [row.question for row in typed] == ["What is 2 plus 2?"]
    for row in result.rows:
        assert row.base_answer is not None and row.tuned_answer is not None
        if row.reference is not None:
            assert row.tuned_f1 == token_f1(row.tuned_answer, row.reference)
            assert row.base_rouge_l == rouge_l(row.base_answer, row.reference)
        assert row.base_grounded is None  # imported examples have no passage
    assert summary.base_eval_loss is not None and summary.tuned_eval_loss is not None
    assert summary.tuned_perplexity is not None
    with ctx.transaction() as tx:  # the held-out split is the one the run evaluated on
        run = tx.runs.get(trained.run_id)
        assert run is not None
        final = run.metrics["final_eval_loss"]
    assert summary.tuned_eval_loss == pytest.approx(final, rel=1e-3)
    # The same four held-out questions every time (a stable choice).
    start_evaluation(ctx, project, judge=False, max_questions=4, max_new_tokens=8)
    again = evaluation(ctx, project, trained.run_id)
    assert again is not None and again.summary.evaluation_id != summary.evaluation_id
    assert [r.question for r in again.rows] == [r.question for r in result.rows
                                                 if r.reference is not None]
    scores = run_scores(ctx, project)
    assert [s.run_id for s in scores] == [trained.run_id]
    assert scores[0].evaluation == again.summary


def stored_answers(home: Path) -> dict[str, tuple[str | None, str | None]]:
    context = AppContext.open(Home(home))
    try:
        with context.database.session() as session:
            return {q.key: (q.base_answer, q.tuned_answer)
                    for q in session.query(EvaluationQuestion).all()}
    finally:
        context.close()


def test_kill_9_mid_answers_then_resume_loses_and_duplicates_nothing(
        project: str, home: Path) -> None:
    typed = [f"What is {n} times {n}?" for n in range(40)]
    args = [arg for text in typed for arg in ("--question", text)]
    child = subprocess.Popen(
        [sys.executable, "-m", "finetuneflow", "evaluate", project, "--no-judge",
         "--max-new-tokens", "24", *args], env=cli_env(home, OMP_NUM_THREADS="1"),
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if home.joinpath("finetuneflow.db").exists() and sum(
                    base is not None for base, _ in stored_answers(home).values()) >= 8:
                break
            assert child.poll() is None, "the evaluation ended before it could be killed"
            time.sleep(0.2)
        os.killpg(child.pid, signal.SIGKILL)  # the CLI and its trainer child at once
        child.wait()
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    before = stored_answers(home)
    partial = {key: answers for key, answers in before.items() if None not in answers}
    assert 0 < len([a for a in before.values() if a[0] is not None]) and len(partial) < len(before)

    resumed = run_cli(home, "evaluate", project, "--no-judge", "--max-new-tokens", "24",
                      "--json", *args, timeout=600, OMP_NUM_THREADS="1")
    assert resumed.returncode == 0, resumed.stderr
    after = stored_answers(home)
    assert set(after) == set(before)  # the same questions, none twice
    assert all(None not in answers for answers in after.values())
    for key, (base, tuned) in before.items():  # what was stored before the kill stays
        assert base is None or after[key][0] == base
        assert tuned is None or after[key][1] == tuned
    shown = json.loads(resumed.stdout)
    assert len(shown["questions"]) == len(after) and shown["summary"]["status"] == "succeeded"


# --- the command line ------------------------------------------------------------------------

def test_the_cli_prints_the_databases_numbers(
        project: str, home: Path, trained: Trained, fake_llm: FakeLLMServer) -> None:
    context = AppContext.open()
    try:
        plan = answered_evaluation(context, project, trained.run_id)
        use_fake_llm(context, project, fake_llm)
    finally:
        context.close()
    fake_llm.set_responder(verdicts(plan))
    human = run_cli(home, "evaluate", project)
    assert human.returncode == 0, human.stderr
    assert "The judge: 22 requests" in human.stderr
    context = AppContext.open()
    try:
        result = evaluation(context, project, trained.run_id)
    finally:
        context.close()
    assert result is not None
    assert result.summary.headline in human.stdout
    for label, base, tuned in score_rows(result.summary):
        assert re.search(rf"{re.escape(label)}\s+{re.escape(base)}\s+{re.escape(tuned)}",
                         human.stdout), label
    assert f"judge: {result.summary.judge_requests} requests" in human.stdout

    # --json: the read model as asdict, the rate and its interval beside the counts.
    context = AppContext.open()
    try:
        answered_evaluation(context, project, trained.run_id)  # another one, to judge
    finally:
        context.close()
    with_json = run_cli(home, "evaluate", project, "--json")
    assert with_json.returncode == 0, with_json.stderr
    shown = json.loads(with_json.stdout)
    assert set(shown) == {"summary", "questions"}
    context = AppContext.open()
    try:
        latest = evaluation(context, project, trained.run_id)
    finally:
        context.close()
    assert latest is not None and shown == json.loads(json.dumps(evaluation_json(latest)))
    assert shown["summary"]["tally"] | {} == {
        "wins": 5, "ties": 3, "losses": 2, "unjudged": 1, "judged": 10, "rate": 0.65,
        "interval_low": pytest.approx(0.35367072), "interval_high": pytest.approx(0.86306944)}
    assert set(shown["questions"][0]) == {
        "question_id", "question", "reference", "passage", "base_answer", "tuned_answer",
        "base_f1", "tuned_f1", "base_rouge_l", "tuned_rouge_l", "base_grounded",
        "tuned_grounded", "outcome", "reason"}

    runs = json.loads(run_cli(home, "runs", project, "--json").stdout)["runs"]
    assert [run["run_id"] for run in runs] == [trained.run_id]
    assert runs[0]["evaluation"] == shown["summary"]
    table = run_cli(home, "runs", project)
    assert table.returncode == 0 and "65 % ± 25 %" in table.stdout


def test_a_run_without_held_out_questions_or_typed_ones_is_refused(
        ctx: AppContext, project: str) -> None:
    with ctx.transaction() as tx:  # the dataset has no evaluation side any more
        for held in tx.evaluations.held_out(project):
            example = tx.examples.get(held.example_id)
            assert example is not None
            example.split = ExampleSplit.TRAIN
    with pytest.raises(UserError, match="no held-out questions"):
        start_evaluation(ctx, project, judge=False, max_questions=None)
    job = JobService(ctx).latest(project, JobKind.EVAL)
    assert job is not None and job.status is JobStatus.FAILED



def judging_in_a_child(project: str, home: Path, trained: Trained, fake_llm: FakeLLMServer,
                       requests: int, **popen: Any) -> subprocess.Popen[Any]:
    """`finetuneflow evaluate` in a child process, its answers already stored, once the slow
    judge has received `requests` requests."""
    context = AppContext.open()
    try:
        plan = answered_evaluation(context, project, trained.run_id)
        use_fake_llm(context, project, fake_llm, concurrency=1)
    finally:
        context.close()
    fake_llm.set_responder(verdicts(plan))
    fake_llm.set_latency(300)
    child = subprocess.Popen([sys.executable, "-m", "finetuneflow", "evaluate", project],
                             env=cli_env(home), cwd=REPO_ROOT, **popen)
    deadline = time.monotonic() + 120
    while len(judge_requests(fake_llm)) < requests and time.monotonic() < deadline:
        assert child.poll() is None, child.communicate()
        time.sleep(0.05)
    return child


def test_ctrl_c_mid_judge_keeps_the_verdicts_and_a_rerun_asks_only_the_rest(
        project: str, home: Path, trained: Trained, fake_llm: FakeLLMServer) -> None:
    child = judging_in_a_child(project, home, trained, fake_llm, requests=4,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert "Traceback" not in err and "run the same command again" in err
    assert "11 of 11 questions answered by both models (stopped)" in out
    context = AppContext.open()
    try:
        stopped = evaluation(context, project, trained.run_id)
        job = JobService(context).latest(project, JobKind.EVAL)
    finally:
        context.close()
    assert stopped is not None and stopped.summary.status == "stopped"
    assert job is not None and job.status is JobStatus.CANCELLED
    # The request in flight at the stop is dropped unanswered: asked again on resume.
    answered = stopped.summary.judge_requests
    assert 3 <= answered <= len(judge_requests(fake_llm)) < 22

    fake_llm.set_latency(0)
    fake_llm.reset_counters()
    resumed = run_cli(home, "evaluate", project, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert len(judge_requests(fake_llm)) == 22 - answered  # none answered twice
    summary = json.loads(resumed.stdout)["summary"]
    assert summary["judge_requests"] == 22 and summary["tally"]["judged"] == 10


def test_ctrl_c_mid_answers_stops_after_a_batch_and_a_rerun_finishes(
        project: str, home: Path) -> None:
    typed = [f"What is {n} minus one?" for n in range(40)]
    args = [arg for text in typed for arg in ("--question", text)]
    child = subprocess.Popen(
        [sys.executable, "-m", "finetuneflow", "evaluate", project, "--no-judge",
         "--max-new-tokens", "24", *args], env=cli_env(home, OMP_NUM_THREADS="1"),
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if home.joinpath("finetuneflow.db").exists() and any(
                base is not None for base, _ in stored_answers(home).values()):
            break
        assert child.poll() is None, child.communicate()
        time.sleep(0.2)
    os.killpg(child.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the CLI and its child
    out, err = child.communicate(timeout=300)
    assert child.returncode == 130, err
    assert "Traceback" not in err and "(stopped)" in out
    before = stored_answers(home)
    assert any(None in answers for answers in before.values())

    resumed = run_cli(home, "evaluate", project, "--no-judge", "--max-new-tokens", "24",
                      "--json", *args, timeout=600, OMP_NUM_THREADS="1")
    assert resumed.returncode == 0, resumed.stderr
    after = stored_answers(home)
    assert set(after) == set(before) and all(None not in a for a in after.values())
    assert all(after[key][0] == base for key, (base, _) in before.items() if base is not None)


def test_evaluating_a_project_without_a_finished_run_says_what_to_do(home: Path) -> None:
    created = run_cli(home, "project", "create", "Empty", "--json")
    project = json.loads(created.stdout)["id"]
    result = run_cli(home, "evaluate", project, "--no-judge")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "finetuneflow train" in result.stderr.splitlines()[-1]
    runs = run_cli(home, "runs", project, "--json")
    assert runs.returncode == 0 and json.loads(runs.stdout) == {"runs": []}


def test_kill_9_mid_judge_then_resume_asks_each_verdict_once(
        project: str, home: Path, trained: Trained, fake_llm: FakeLLMServer) -> None:
    child = judging_in_a_child(project, home, trained, fake_llm, requests=5,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    context = AppContext.open()
    try:
        killed = evaluation(context, project, trained.run_id)
    finally:
        context.close()
    assert killed is not None and killed.summary.status == "running"  # as the kill left it
    kept = killed.summary.judge_requests
    assert 4 <= kept < 22

    fake_llm.set_latency(0)
    fake_llm.reset_counters()
    resumed = run_cli(home, "evaluate", project, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert len(judge_requests(fake_llm)) == 22 - kept
    summary = json.loads(resumed.stdout)["summary"]
    assert summary["evaluation_id"] == killed.summary.evaluation_id
    assert summary["judge_requests"] == 22 and summary["tally"]["wins"] == 5
