"""Did fine-tuning help? A finished run's model against its base on held-out questions.

An evaluation is a job of kind "eval" in two stages, each resumable:
1. answers: the trainer child (`trainer answer`) answers each question with both models and
   reports each variant's loss on the evaluation split; every answer is stored as it arrives,
   with its overlap and grounding scores, and a resume sends only the questions still missing
   an answer;
2. the judge (optional): the project's LLM compares the two answers of each question in both
   orders; each verdict is stored as it arrives, and a resume asks only for those missing or
   unreadable.
The questions are the run's held-out evaluation split (grouped by chunk, so their passages
were never trained on), at most `max_questions` of them chosen by a hash of their content (the
same ones every time), plus any the person types. The project's latest unfinished evaluation
of a run is resumed instead of starting a new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import statistics
import tempfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from finetuneflow.core.chat_template import chat_token_counter
from finetuneflow.core.child_protocol import (
    BASE,
    FINETUNED,
    AnswerJob,
    ErrorEvent,
    EvalLossEvent,
    QuestionAnswerEvent,
)
from finetuneflow.core.evaluation import (
    SAME_ANSWERS,
    VERDICT_SCHEMA,
    JudgeCase,
    JudgeCost,
    Order,
    Outcome,
    Verdict,
    check_grounding,
    combine,
    estimate_judge_cost,
    headline,
    judge_messages,
    needs_judging,
    parse_verdict,
    rouge_l,
    tally,
    token_f1,
    unreadable,
)
from finetuneflow.core.evaluation.judge import ORDERS
from finetuneflow.core.evaluation.results import (
    Evaluation,
    EvaluationSummary,
    QuestionResult,
    RunScores,
)
from finetuneflow.core.export import bundle
from finetuneflow.core.generation import LLMClient, LLMError, LLMSettings, QuotaExhaustedError
from finetuneflow.core.generation.client import estimated_prompt_tokens
from finetuneflow.core.progress import Cancelled, CancelToken, ProgressSink, ignore_progress, scaled
from finetuneflow.services.errors import UserError
from finetuneflow.services.finished_runs import FinishedRun, FinishedRuns, last_user_text
from finetuneflow.services.generation import GenerationService, one_line, retry_policy
from finetuneflow.services.jobs import JobService, ThrottledProgress
from finetuneflow.services.projects import ProjectService
from finetuneflow.services.secrets import Secret, get_secret
from finetuneflow.services.settings import AppSettings
from finetuneflow.services.trainer_process import read_event, run_trainer
from finetuneflow.storage.evaluations import HeldOut, NewQuestion, Scores
from finetuneflow.storage.tables import JobKind, JobStatus

if TYPE_CHECKING:
    from finetuneflow.core.generation.quality import CountTokens
    from finetuneflow.services.context import AppContext
    from finetuneflow.storage.tables import EvaluationQuestion, EvaluationRecord

log = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 256
ANSWER_BATCH = 8
ANSWERS_SHARE = 0.5  # of the progress bar, when the judge runs after the answers
NO_JUDGE = "The judge was not used: run the evaluation with the judge to get a win rate."
CostCallback = Callable[[JudgeCost], None]


class EvaluationFailed(UserError):
    """The evaluation stopped on an error; what it had done is kept and a resume continues."""


@dataclass(frozen=True)
class _Request:
    question_id: int
    case: JudgeCase
    order: Order


# --- starting and resuming ----------------------------------------------------------------------

def start_evaluation(context: AppContext, project_id: str, run_id: int | None = None, *,
                     judge: bool, max_questions: int | None,
                     extra_questions: Sequence[str] = (),
                     max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                     progress: ProgressSink = ignore_progress, cancel: CancelToken | None = None,
                     on_cost: CostCallback | None = None) -> int:
    """Evaluate the run (the latest finished one by default), resuming its unfinished
    evaluation if it has one; the job's id. A stop keeps what is done (the job is cancelled,
    the evaluation stopped); an error fails both with the cause (EvaluationFailed).
    `on_cost` hears the judge's cost before its first request."""
    if max_questions is not None and max_questions < 1:
        raise UserError("Ask for at least 1 question, or leave the maximum out for all.")
    if max_new_tokens < 1:
        raise UserError("The answers need a budget of at least 1 token.")
    jobs = JobService(context)
    if jobs.alive(kind=JobKind.TRAIN):
        raise UserError("A training is running and needs the GPU: evaluate when it is done, "
                        "or stop it first.")
    run = FinishedRuns(context).get(project_id, run_id)
    job_id = jobs.create(run.project_id, JobKind.EVAL, {"run_id": run.id, "judge": judge})
    jobs.start(job_id)
    token = cancel or CancelToken()
    evaluation_id: int | None = None
    try:
        evaluation_id = _open(context, run, job_id, judge, max_questions, extra_questions,
                              max_new_tokens)
        _Evaluator(context, run, evaluation_id, job_id, progress, token, on_cost).run(judge)
    except BaseException as error:  # the job must not stay `running` after it died
        _end_on_error(context, job_id, evaluation_id, error)
        raise
    return job_id


def _end_on_error(context: AppContext, job_id: int, evaluation_id: int | None,
                  error: BaseException) -> None:
    """A spent quota interrupts (resume later), as in generation; anything else fails."""
    if isinstance(error.__cause__, QuotaExhaustedError):
        JobService(context).interrupt(job_id, str(error))
        _end(context, job_id, evaluation_id, "stopped", str(error))
        return
    message = (str(error) if isinstance(error, UserError) else
               f"An unexpected error stopped the evaluation ({type(error).__name__}); "
               "what was done is kept, details are in the log.")
    _end(context, job_id, evaluation_id, "failed", one_line(message))


def _open(context: AppContext, run: FinishedRun, job_id: int, judge: bool,
          max_questions: int | None, extra_questions: Sequence[str], max_new_tokens: int) -> int:
    """The run's unfinished evaluation, else a new one with its questions; now running."""
    system = FinishedRuns(context).trained_system_prompt(run)
    typed = [_typed_question(text, system) for text in extra_questions if text.strip()]
    with context.transaction() as tx:
        record = tx.evaluations.latest(run.id)
        if record is None or record.status == "succeeded":
            held = _choose(tx.evaluations.held_out(run.project_id), max_questions)
            record = tx.evaluations.add(run.id, judge=judge, max_questions=max_questions,
                                        max_new_tokens=max_new_tokens)
            tx.evaluations.add_questions(record.id, [_held_out_question(h) for h in held])
        tx.evaluations.add_questions(record.id, typed)
        if not tx.evaluations.questions(record.id):
            raise UserError(f"Run {run.id} has no held-out questions (its dataset has no "
                            "evaluation split): type questions of your own to evaluate it.")
        tx.evaluations.begin(record.id, job_id, judge)
        return record.id


def _choose(held: list[HeldOut], max_questions: int | None) -> list[HeldOut]:
    """Up to `max_questions` examples, the same ones every time, spread over the split: those
    whose content hashes lowest, in id order."""
    usable = [h for h in held if bundle.prompt_and_reference(h.messages) is not None]
    if max_questions is not None:
        usable = sorted(usable, key=lambda h: hashlib.sha256(
            f"evaluation:{h.content_hash}".encode()).digest())[:max_questions]
    return sorted(usable, key=lambda h: h.example_id)


def _held_out_question(held: HeldOut) -> NewQuestion:
    pair = bundle.prompt_and_reference(held.messages)
    assert pair is not None  # _choose keeps only examples with an answer
    prompt, reference = pair
    return NewQuestion(f"example:{held.example_id}", held.example_id, prompt,
                       last_user_text(prompt), reference, held.passage)


def _typed_question(text: str, system_prompt: str) -> NewQuestion:
    digest = hashlib.sha256(text.strip().encode()).hexdigest()[:32]
    prompt = ([{"role": "system", "content": system_prompt}] if system_prompt.strip()
              else []) + [{"role": "user", "content": text.strip()}]
    return NewQuestion(f"typed:{digest}", None, prompt, text.strip(), None, None)


def _end(context: AppContext, job_id: int, evaluation_id: int | None, status: str,
         message: str) -> None:
    jobs = JobService(context)
    if status == "failed":
        jobs.fail(job_id, message)
    elif status == "stopped" and jobs.get(job_id).status is JobStatus.RUNNING:
        jobs.cancel(job_id, message)
    if evaluation_id is not None:
        with context.transaction() as tx:
            tx.evaluations.finish(evaluation_id, status, "" if status == "succeeded"
                                  else message)


# --- the work ------------------------------------------------------------------------------------

class _Evaluator:
    def __init__(self, context: AppContext, run: FinishedRun, evaluation_id: int, job_id: int,
                 progress: ProgressSink, cancel: CancelToken,
                 on_cost: CostCallback | None) -> None:
        self._context = context
        self._run = run
        self._id = evaluation_id
        self._job_id = job_id
        self._jobs = JobService(context)
        self._progress = progress
        self._cancel = cancel
        self._on_cost = on_cost

    def run(self, judge: bool) -> None:
        """The answers, then the judge; the judge's server is checked first, so a dead LLM
        fails the job before the answers take their time."""
        report = self._reporter(ThrottledProgress(self._jobs, self._job_id))
        try:
            checked = self._judge_client() if judge else contextlib.nullcontext()
        except Cancelled:  # stopped while the judge's server was being checked
            answered = False
        else:
            with checked as client:
                answered = self._answer(scaled(report, 0.0, ANSWERS_SHARE if judge else 1.0))
                if answered and client is not None:
                    answered = self._judge(client, scaled(report, ANSWERS_SHARE, 1.0))
        if not answered:
            _end(self._context, self._job_id, self._id, "stopped",
                 "Stopped; the answers and verdicts so far are kept: evaluate again to resume.")
            return
        summary = evaluation_summary(self._context, self._id)
        with self._context.transaction() as tx:
            tx.evaluations.finish(self._id, "succeeded")
        self._jobs.succeed(self._job_id, {"evaluation_id": self._id, "run_id": self._run.id},
                           summary.headline)

    def _reporter(self, sink: ProgressSink) -> ProgressSink:
        def report(fraction: float, message: str) -> None:
            sink(fraction, message)
            self._progress(fraction, message)
        return report

    # --- answers ---------------------------------------------------------------------------------

    def _answer(self, progress: ProgressSink) -> bool:
        """Both models' answers to every question still missing one; False when stopped."""
        with self._context.transaction() as tx:
            record = _record(tx.evaluations.get(self._id))
            questions = tx.evaluations.questions(self._id)
            held = tx.evaluations.held_out(self._run.project_id)
            wanted = [(q.id, list(q.prompt), _missing_variants(q)) for q in questions]
            # The losses are measured on the whole split, once; typed questions have none.
            needs_loss = (record.base_eval_loss is None or record.tuned_eval_loss is None) and any(
                q.example_id is not None for q in questions)
            loss_split = [h.messages for h in held] if needs_loss else []
            max_new_tokens = record.max_new_tokens
            scoring = {q.id: (q.reference, q.passage) for q in questions}
        todo = [(qid, prompt) for qid, prompt, missing in wanted if missing]
        variants = [v for v in (BASE, FINETUNED) if any(v in m for _, _, m in wanted)]
        if not todo and not loss_split:
            return True
        writer = _AnswerWriter(self._context, self._id, scoring, len(todo) * len(variants),
                               progress)
        with tempfile.TemporaryDirectory(dir=self._run.folder) as folder:
            eval_path = (_write_chats(Path(folder) / "eval.jsonl", loss_split) if loss_split
                         else None)
            job = AnswerJob(model_path=str(self._run.model_dir),
                            adapter_dir=str(self._run.adapter_dir),
                            questions=[{"id": qid, "messages": prompt} for qid, prompt in todo],
                            variants=variants or [BASE, FINETUNED],
                            max_new_tokens=max_new_tokens, batch_size=ANSWER_BATCH,
                            eval_path=str(eval_path) if eval_path else None,
                            seed=int(self._run.config.get("seed") or 0),
                            **_loss_settings(self._run.config))
            log_path = self._context.home.project_file(self._run.project_id, "logs",
                                                       f"eval-{self._run.id}.log")
            progress(0.0, f"Answering {len(todo)} questions with both models…")
            code = run_trainer(["answer", str(job.write(Path(folder) / "answer-job.json"))],
                               log_path, writer.handle, self._cancel)
        if writer.failure is not None:
            raise EvaluationFailed(one_line(writer.failure.message))
        if self._cancel.cancelled:
            return False
        if code != 0:
            raise EvaluationFailed(f"The answering process ended unexpectedly (exit code "
                                   f"{code}); its log is {log_path}. Evaluate again to resume.")
        return True

    # --- the judge --------------------------------------------------------------------------------

    def _judge_client(self) -> LLMClient:
        """A client for the project's LLM, as generation makes it, past its preflight."""
        settings = GenerationService(self._context).llm_settings(self._run.project_id)
        limits = AppSettings.load(self._context.home).response_limits()
        client = LLMClient(settings, get_secret(Secret.LLM_API_KEY), retry=retry_policy(),
                           limits=limits)
        try:
            client.preflight(cancel=self._cancel)
        except LLMError as error:
            client.close()
            raise EvaluationFailed(f"The judge cannot be used: {one_line(str(error))}") from error
        except BaseException:
            client.close()
            raise
        return client

    def _judge(self, client: LLMClient, progress: ProgressSink) -> bool:
        """Both verdicts of every question still missing one; False when stopped."""
        requests = self._pending_requests()
        if not requests:
            return True
        longest = max((judge_messages(r.case, r.order) for r in requests),
                      key=estimated_prompt_tokens)
        try:
            client.require_prompt_fits(longest, client.settings.max_tokens)
        except LLMError as error:
            raise EvaluationFailed(f"The judge cannot be used: {one_line(str(error))}") from error
        cost = estimate_judge_cost(((r.case, r.order) for r in requests),
                                   judge_token_counter(self._run), answer_budget(client.settings))
        if self._on_cost is not None:
            self._on_cost(cost)
        return _JudgeRound(self._context, self._id, client, requests, progress,
                           self._cancel).run()

    def _pending_requests(self) -> list[_Request]:
        """The verdicts still missing; a question whose answers are the same is a tie now."""
        requests: list[_Request] = []
        with self._context.transaction() as tx:
            for question in tx.evaluations.questions(self._id):
                case = judge_case(question)
                if case is None or question.outcome is not None:
                    continue
                if not needs_judging(case):
                    tx.evaluations.record_outcome(question.id, SAME_ANSWERS.outcome,
                                                  SAME_ANSWERS.reason)
                    continue
                requests += [_Request(question.id, case, order) for order in ORDERS
                             if _verdict(question, order).winner is None]
        return requests


class _AnswerWriter:
    """Stores each answer and loss the child reports, one small transaction each."""

    def __init__(self, context: AppContext, evaluation_id: int,
                 scoring: dict[int, tuple[str | None, str | None]], expected: int,
                 progress: ProgressSink) -> None:
        self._context = context
        self._id = evaluation_id
        self._scoring = scoring
        self._expected = max(expected, 1)
        self._received = 0
        self._progress = progress
        self.failure: ErrorEvent | None = None

    def handle(self, line: str) -> None:
        event = read_event(line)
        if isinstance(event, QuestionAnswerEvent) and event.question_id in self._scoring:
            reference, passage = self._scoring[event.question_id]
            with self._context.transaction() as tx:
                tx.evaluations.record_answer(self._id, event.question_id, event.variant,
                                             event.text, answer_scores(event.text, reference,
                                                                       passage))
            self._received += 1
            self._progress(self._received / self._expected,
                           f"{self._received} of {self._expected} answers")
        elif isinstance(event, EvalLossEvent):
            with self._context.transaction() as tx:
                tx.evaluations.record_loss(self._id, event.variant, event.loss,
                                           event.perplexity)
        elif isinstance(event, ErrorEvent):
            self.failure = event


class _JudgeRound:
    """Sends the judge's requests, at the LLM settings' concurrency; the verdicts are stored
    here, on the calling thread, as they arrive."""

    def __init__(self, context: AppContext, evaluation_id: int, client: LLMClient,
                 requests: list[_Request], progress: ProgressSink, cancel: CancelToken) -> None:
        self._context = context
        self._id = evaluation_id
        self._client = client
        self._requests = requests
        self._progress = progress
        self._cancel = cancel
        self._halt = CancelToken()  # the user's stop, or a failure every request would share
        self._done = 0
        self._failed: list[LLMError] = []

    def run(self) -> bool:
        workers = self._client.settings.resolved_concurrency
        with ThreadPoolExecutor(workers, thread_name_prefix="judge") as pool:
            pending: set[Future[tuple[_Request, Verdict | None, int]]] = {
                pool.submit(self._ask, request) for request in self._requests}
            try:
                while pending:
                    finished, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                    if self._cancel.cancelled:
                        self._halt.cancel()
                    for future in finished:
                        self._store(*future.result())
            except BaseException:
                self._halt.cancel()  # the requests not sent yet are not sent
                raise
        if self._cancel.cancelled:
            return False
        self._raise_failure()
        return True

    def _ask(self, request: _Request) -> tuple[_Request, Verdict | None, int]:
        """One verdict, or why it could not be had, and the tokens the request used; no
        verdict when the request was not sent (a stop): it stays missing for the resume."""
        if self._halt.cancelled:
            return request, None, 0
        try:
            result = self._client.chat(judge_messages(request.case, request.order),
                                       schema=VERDICT_SCHEMA, schema_name="verdict",
                                       cancel=self._halt, temperature=0.0)
        except Cancelled:
            return request, None, 0
        except LLMError as error:
            if error.stops_run:
                self._halt.cancel()
            self._failed.append(error)
            return request, unreadable(f"request failed: {error}"), 0
        tokens = (result.prompt_tokens or 0) + (result.completion_tokens or 0)
        return request, parse_verdict(result.content), tokens

    def _store(self, request: _Request, verdict: Verdict | None, tokens: int) -> None:
        if verdict is None:
            return
        with self._context.transaction() as tx:
            tx.evaluations.count_judge_usage(self._id, 1, tokens)
            tx.evaluations.record_verdict(request.question_id, request.order, verdict.winner,
                                          verdict.reason)
            question = tx.evaluations.question(request.question_id)
            if question.base_first_reason is not None and question.tuned_first_reason is not None:
                outcome = combine(_verdict(question, "base_first"),
                                  _verdict(question, "tuned_first"))
                tx.evaluations.record_outcome(question.id, outcome.outcome, outcome.reason)
        self._done += 1
        self._progress(self._done / len(self._requests),
                       f"{self._done} of {len(self._requests)} verdicts")

    def _raise_failure(self) -> None:
        """Generation's rules: a failure that stops a run (a dead or refusing LLM, a spent
        quota) fails the evaluation, and so do failures of every request; single failures
        leave their question unjudged, asked again on resume."""
        if not self._failed:
            return
        fatal = next((e for e in self._failed if e.stops_run), None)
        if fatal is None and len(self._failed) < len(self._requests):
            log.warning("Evaluation %s: %d judge requests failed", self._id, len(self._failed))
            return
        error = fatal or self._failed[-1]
        hint = (" Resume later: the verdicts so far are kept."
                if isinstance(error, QuotaExhaustedError) else "")
        raise EvaluationFailed(f"The judge failed: {one_line(str(error))}{hint}") from error


# --- scores and cases ---------------------------------------------------------------------------

def answer_scores(answer: str, reference: str | None, passage: str | None) -> Scores:
    """Overlap with the reference (when there is one) and grounding in the passage."""
    return Scores(token_f1(answer, reference) if reference is not None else None,
                  rouge_l(answer, reference) if reference is not None else None,
                  check_grounding(answer, passage).grounded if passage else None)


def judge_case(question: EvaluationQuestion) -> JudgeCase | None:
    """What the judge sees; None until both models have answered. A typed question has no
    passage or reference: the judge is told so."""
    if question.base_answer is None or question.tuned_answer is None:
        return None
    return JudgeCase(question.question, question.passage or "(none)",
                     question.reference or "(none: judge by the question alone)",
                     question.base_answer, question.tuned_answer)


def judge_token_counter(run: FinishedRun) -> CountTokens:
    """The base model's tokenizer and template, as generation counts; a rough count without."""
    if (run.model_dir / "tokenizer.json").is_file():
        return chat_token_counter(run.model_dir)
    return estimated_prompt_tokens


def answer_budget(settings: LLMSettings) -> int:
    """Most tokens a verdict may take: the settings' cap, or their default when uncapped."""
    return settings.max_tokens or LLMSettings().max_tokens or 0


def _verdict(question: EvaluationQuestion, order: Order) -> Verdict:
    if order == "base_first":
        return Verdict.from_dict({"winner": question.base_first_winner,
                                  "reason": question.base_first_reason or ""})
    return Verdict.from_dict({"winner": question.tuned_first_winner,
                              "reason": question.tuned_first_reason or ""})


def _loss_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The run's own max_seq_length and assistant_only_loss: the losses are then measured as
    the training's evaluation measured them."""
    return {name: config[name] for name in ("max_seq_length", "assistant_only_loss")
            if name in config}


def _missing_variants(question: EvaluationQuestion) -> set[str]:
    return ({BASE} if question.base_answer is None else set()) | (
        {FINETUNED} if question.tuned_answer is None else set())


def _record(record: EvaluationRecord | None) -> EvaluationRecord:
    if record is None:
        raise UserError("That evaluation no longer exists (its run was deleted).")
    return record


def _write_chats(path: Path, chats: Iterable[list[dict[str, str]]]) -> Path:
    path.write_text("".join(json.dumps({"messages": chat}, ensure_ascii=False) + "\n"
                            for chat in chats), encoding="utf-8")
    return path


# --- reading -------------------------------------------------------------------------------------

def estimate_judge(context: AppContext, project_id: str, run_id: int | None = None, *,
                   max_questions: int | None = None) -> JudgeCost:
    """The judge's cost before an evaluation starts: answers already stored count as they
    are, answers still to come as long as the reference (a guess; the exact cost is told
    again before the first request)."""
    run = FinishedRuns(context).get(project_id, run_id)
    with context.transaction() as tx:
        record = tx.evaluations.latest(run.id)
        if record is not None and record.status != "succeeded":
            cases = [_guessed_case(q.question, q.passage, q.reference, q.base_answer,
                                   q.tuned_answer)
                     for q in tx.evaluations.questions(record.id) if q.outcome is None]
        else:
            cases = [_guessed_case(n.question, n.passage, n.reference, None, None) for n in
                     map(_held_out_question, _choose(tx.evaluations.held_out(run.project_id),
                                                     max_questions))]
    settings = GenerationService(context).llm_settings(run.project_id)
    requests = ((case, order) for case in cases for order in ORDERS)
    return estimate_judge_cost(requests, judge_token_counter(run), answer_budget(settings))


def _guessed_case(question: str, passage: str | None, reference: str | None,
                  base: str | None, tuned: str | None) -> JudgeCase:
    guess = reference or ""
    return JudgeCase(question, passage or "(none)", reference or "(none)",
                     guess if base is None else base, guess if tuned is None else tuned)


def evaluation(context: AppContext, project_id: str, run_id: int) -> Evaluation | None:
    """The run's latest evaluation, as every surface shows it; None when it has none."""
    with context.transaction() as tx:
        project = tx.projects.resolve(project_id)
        run = tx.runs.get(run_id)
        if project is None or run is None or run.project_id != project.id:
            return None
        record = tx.evaluations.latest(run_id)
        if record is None:
            return None
        rows = [question_result(q) for q in tx.evaluations.questions(record.id)]
        return Evaluation(summarise(record, rows), rows)


def evaluation_summary(context: AppContext, evaluation_id: int) -> EvaluationSummary:
    with context.transaction() as tx:
        record = _record(tx.evaluations.get(evaluation_id))
        rows = [question_result(q) for q in tx.evaluations.questions(record.id)]
        return summarise(record, rows)


def run_scores(context: AppContext, project_id: str) -> list[RunScores]:
    """Every run of the project, newest first, with its settings and latest evaluation."""
    project = ProjectService(context).get(project_id)
    with context.transaction() as tx:
        runs = []
        for run, record in tx.evaluations.runs_with_latest(project.id):
            summary = (summarise(record, [question_result(q) for q in
                                          tx.evaluations.questions(record.id)])
                       if record is not None else None)
            runs.append(RunScores(run.id, run.status.value, _base_model_of(context, project.id,
                                                                           run.id,
                                                                           project.base_model),
                                  str(run.config.get("method", "lora")), dict(run.config),
                                  _number(run.metrics.get("final_eval_loss")), summary))
    return runs


def _base_model_of(context: AppContext, project_id: str, run_id: int,
                   fallback: str | None) -> str:
    """The model the run trained: its job file's, shown as the Hub id when known."""
    from finetuneflow.core.child_protocol import ProtocolError, TrainJob

    job_path = context.home.project_file(project_id, "artifacts", f"run-{run_id}", "job.json")
    try:
        folder = Path(TrainJob.read(job_path).model_path)
    except (OSError, ProtocolError):
        return fallback or ""
    reference = bundle.hub_reference(folder) if folder.is_dir() else None
    return reference[0] if reference else (fallback or str(folder))


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def question_result(question: EvaluationQuestion) -> QuestionResult:
    outcome = cast("Outcome | None", question.outcome)  # the CHECK allows only these
    return QuestionResult(
        question.id, question.question, question.reference, question.passage,
        question.base_answer, question.tuned_answer, question.base_f1, question.tuned_f1,
        question.base_rouge_l, question.tuned_rouge_l, question.base_grounded,
        question.tuned_grounded, outcome, question.reason)


def summarise(record: EvaluationRecord, rows: list[QuestionResult]) -> EvaluationSummary:
    """The summary of an evaluation's stored rows: means over the answered questions."""
    answered = [r for r in rows if r.base_answer is not None and r.tuned_answer is not None]
    result = tally(r.outcome for r in answered) if record.judge else None
    return EvaluationSummary(
        evaluation_id=record.id, run_id=record.run_id, status=record.status,
        questions=len(rows), answered=len(answered), tally=result,
        headline=headline(result) if result is not None else NO_JUDGE,
        base_eval_loss=record.base_eval_loss, tuned_eval_loss=record.tuned_eval_loss,
        base_perplexity=record.base_perplexity, tuned_perplexity=record.tuned_perplexity,
        base_f1=_mean(r.base_f1 for r in answered),
        tuned_f1=_mean(r.tuned_f1 for r in answered),
        base_rouge_l=_mean(r.base_rouge_l for r in answered),
        tuned_rouge_l=_mean(r.tuned_rouge_l for r in answered),
        base_grounded_share=_share(r.base_grounded for r in answered),
        tuned_grounded_share=_share(r.tuned_grounded for r in answered),
        judge_requests=record.judge_requests, judge_tokens=record.judge_tokens,
        message=record.message)


def _mean(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known else None


def _share(values: Iterable[bool | None]) -> float | None:
    """Grounded answers among those with key facts to check (core.evaluation.grounding)."""
    known = [v for v in values if v is not None]
    return known.count(True) / len(known) if known else None
