"""Writing training examples from the chunks with an LLM: the task, the preview, the full run.

Each finished chunk's examples are stored in one transaction from `on_result`, which the engine
never calls twice at once: one writer, so never "database is locked". A chunk counts as done
once it has stored examples (accepted or rejected), so a resumed run skips it.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from finetuneflow.core.chat_template import chat_token_counter
from finetuneflow.core.generation import (
    ChunkInput,
    ChunkResult,
    ConnectionCheck,
    Deduplicator,
    LLMClient,
    LLMError,
    LLMSettings,
    Measurement,
    QualityOptions,
    QuotaExhaustedError,
    RetryPolicy,
    RunEstimate,
    RunSummary,
    StartWorker,
    Task,
    TaskSettings,
    TaskType,
    TokenUsage,
    estimate_from_measurement,
    measure,
    pick_representative_chunks,
    plain_http_key_warning,
    run_generation,
    test_connection,
)
from finetuneflow.core.generation.client import (
    Message,
    structured_fallback_notice,
    structured_mode_used,
)
from finetuneflow.core.progress import (
    Cancelled,
    CancelToken,
    ProgressSink,
    both,
    ignore_progress,
)
from finetuneflow.core.units import format_duration
from finetuneflow.services.errors import UserError
from finetuneflow.services.jobs import JobService, ThrottledProgress
from finetuneflow.services.missing_step import missing_chunks
from finetuneflow.services.projects import ProjectService
from finetuneflow.services.secrets import Secret, get_secret
from finetuneflow.services.settings import AppSettings
from finetuneflow.storage.tables import ExampleSplit, JobKind

if TYPE_CHECKING:
    from finetuneflow.services.context import AppContext

log = logging.getLogger(__name__)

RETRY_BASE_ENV = "FINETUNEFLOW_LLM_RETRY_BASE_S"
PREVIEW_CHUNKS = 4
PREVIEW_PER_CHUNK = 3


@dataclass(frozen=True)
class GenerationResult:
    job_id: int
    chunks_done: int
    chunks_skipped: int
    examples: int
    accepted: int
    rejected: int
    prompt_tokens: int | None
    completion_tokens: int | None
    cancelled: bool
    failed_requests: int = 0  # chunks whose request failed after its retries
    failures: str | None = None  # "7 requests failed: 5 timed out, 2 HTTP 502"
    unreadable: int = 0  # chunks rejected because their answer could not be read
    unreadable_reason: str | None = None  # the last such answer's cause, in one line
    structured_output: str = "json_schema"  # the mode the requests went out in
    structured_notice: str | None = None  # why it is not json_schema, when auto fell back

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FullRunEstimate:
    chunks: int
    per_chunk: int
    concurrency: int
    run: RunEstimate | None  # None until a preview has measured latency and tokens

    def describe(self) -> str:
        head = (f"{self.chunks} chunks → {self.chunks} requests for about "
                f"{self.chunks * self.per_chunk} examples at concurrency {self.concurrency}")
        if self.run is None:
            return head + "; run a preview first to estimate the time and tokens."
        tokens = (f"about {self.run.total_tokens:,} tokens" if self.run.total_tokens is not None
                  else "tokens unknown (the server does not report them)")
        return f"{head}: {tokens}, about {format_duration(self.run.seconds)}."

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class GenerationFailed(UserError):
    """A run that produced nothing, or was stopped by an error: the cause, on one line.

    `error` is the LLM client's typed error, so each interface can word its own hint."""

    def __init__(self, message: str, error: LLMError) -> None:
        super().__init__(message)
        self.error = error


def retry_policy() -> RetryPolicy:
    """The client's backoff; FINETUNEFLOW_LLM_RETRY_BASE_S shortens (tests) or lengthens
    (a flaky link) the first wait, which the later ones double."""
    try:
        base = float(os.environ.get(RETRY_BASE_ENV, ""))
    except ValueError:
        return RetryPolicy()
    return RetryPolicy(base_s=base, cap_s=max(base * 16, base)) if base > 0 else RetryPolicy()


def one_line(text: str) -> str:
    """Error texts go to one line of stderr or one status label: no line breaks."""
    return " ".join(text.split())


def _longest_prompt(task: Task, chunks: list[ChunkInput], done: set[int],
                    per_chunk: int | None) -> list[Message] | None:
    """The generation request of the longest chunk still to do: the one most likely not to
    fit the server's context."""
    todo = [chunk for chunk in chunks if chunk.id not in done]
    if not todo:
        return None
    return task.generation_messages(max(todo, key=lambda c: len(c.text)).text, per_chunk)


def _failure_cause(error: LLMError, summary: RunSummary) -> str:
    """The error, preceded by how many requests failed when more than one did."""
    failures = summary.describe_failures()
    if failures and summary.failed_requests > 1:
        return one_line(f"{failures}. {error}")
    return one_line(str(error))


class GenerationService:
    def __init__(self, context: AppContext) -> None:
        self._context = context
        self._projects = ProjectService(context)
        self._jobs = JobService(context)

    # --- task and LLM settings ------------------------------------------------------------------

    def task_settings(self, project_ref: str) -> TaskSettings:
        with self._context.transaction() as tx:
            return tx.projects.settings(project_ref).task

    def set_task(self, project_ref: str, task_type: str, *, system_prompt: str | None = None,
                 per_chunk: int | None = None) -> TaskSettings:
        try:
            changes: dict[str, Any] = {"type": TaskType(task_type)}
        except ValueError:
            choices = ", ".join(t.value for t in TaskType)
            raise UserError(f"Unknown task {task_type!r}: choose one of {choices}.") from None
        if system_prompt is not None:
            changes["system_prompt"] = system_prompt
        if per_chunk is not None:
            changes["examples_per_chunk"] = per_chunk
        return self.update_task(project_ref, **changes)

    def update_task(self, project_ref: str, **changes: Any) -> TaskSettings:
        """Change the task's fields (type, prompts, language, style…), checked together."""
        settings = replace(self.task_settings(project_ref), **changes)
        with self._context.transaction() as tx:
            tx.projects.save_task(project_ref, settings)
        return settings

    def llm_settings(self, project_ref: str) -> LLMSettings:
        """The project's own settings, or the app's defaults (Settings) until it has some."""
        with self._context.transaction() as tx:
            stored = tx.projects.settings(project_ref).llm
        return stored or AppSettings.load(self._context.home).default_llm()

    def set_llm_settings(self, project_ref: str, settings: LLMSettings) -> None:
        with self._context.transaction() as tx:
            tx.projects.save_llm(project_ref, settings)

    def check_connection(self, settings: LLMSettings) -> ConnectionCheck:
        """A one-token chat with these settings and the stored key (tells the four failures
        apart: key, access, model name, server)."""
        return test_connection(settings, get_secret(Secret.LLM_API_KEY))

    def key_warning(self, settings: LLMSettings) -> str | None:
        """Said before a run: the stored API key would cross the network unencrypted."""
        return plain_http_key_warning(settings, get_secret(Secret.LLM_API_KEY) is not None)

    # --- running --------------------------------------------------------------------------------

    def run(self, project_ref: str, *, preview: bool, progress: ProgressSink = ignore_progress,
            cancel: CancelToken | None = None, max_chunks: int | None = None,
            start_worker: StartWorker | None = None) -> GenerationResult:
        """Generate for the preview chunks, or for every chunk not done yet (at most
        `max_chunks` of them: a budget). `start_worker` runs the worker loops (a QThreadPool
        in the GUI)."""
        project_id = self._projects.get(project_ref).id
        task = Task(self.task_settings(project_id))
        limits = AppSettings.load(self._context.home).response_limits()
        client = LLMClient(self.llm_settings(project_id), get_secret(Secret.LLM_API_KEY),
                           retry=retry_policy(), limits=limits)
        chunks, done = self._work_list(project_id, preview, max_chunks)
        per_chunk = min(PREVIEW_PER_CHUNK, task.settings.examples_per_chunk) if preview else None
        job_id = self._jobs.create(project_id, JobKind.PREVIEW if preview else JobKind.GENERATE,
                                   {"chunks": len(chunks), "skipped": len(done)})
        self._jobs.start(job_id)
        self._preflight(job_id, client, cancel, _longest_prompt(task, chunks, done, per_chunk))
        sink = both(ThrottledProgress(self._jobs, job_id), progress)
        split = ExampleSplit.PREVIEW if preview else ExampleSplit.TRAIN
        writer = _ChunkWriter(self._context, project_id, split, len(chunks) - len(done), sink)
        try:
            summary = run_generation(
                client, task, chunks, on_result=writer.store, n=per_chunk, cancel=cancel,
                skip_done=done, quality=self.quality_options(project_id),
                dedup=self._seeded_dedup(project_id, task), start_worker=start_worker)
        except BaseException as bug:  # the job must not stay `running` after it died
            self._jobs.fail(job_id, one_line(f"An unexpected error stopped the run "
                                             f"({type(bug).__name__}); finished chunks are "
                                             "kept, details are in the log."))
            raise
        # The counts are the stored rows' (the writer reads them back): the engine's tallies
        # counted a flagged example twice and missed duplicates found on storing.
        usage = summary.usage
        known = usage.complete and usage.requests > 0  # unreported usage is unknown, not 0
        result = GenerationResult(
            job_id, summary.chunks_done, summary.chunks_skipped, writer.kept + writer.rejected,
            writer.kept, writer.rejected,
            usage.prompt_tokens if known else None, usage.completion_tokens if known else None,
            summary.cancelled, summary.failed_requests, summary.describe_failures(),
            summary.unreadable,
            one_line(str(summary.last_unreadable)) if summary.last_unreadable else None,
            structured_mode_used(client.settings), structured_fallback_notice(client.settings))
        measured = measure(writer.results, per_chunk or task.settings.examples_per_chunk)
        self._close_job(job_id, summary, result, measured)
        return result

    def _preflight(self, job_id: int, client: LLMClient, cancel: CancelToken | None,
                   longest: list[Message] | None) -> None:
        """Reach the server, check the key, the model and that the longest prompt fits the
        server's context before any chunk: a run that cannot work fails at once with the
        cause."""
        try:
            client.preflight(cancel=cancel)
            if longest is not None:
                client.require_prompt_fits(longest, client.settings.max_tokens)
        except LLMError as error:
            client.close()
            log.error("Generation job %s: the preflight failed: %s", job_id, error)
            cause = one_line(str(error))
            self._jobs.fail(job_id, cause)
            raise GenerationFailed(cause, error) from error
        except Cancelled:
            client.close()
            self._jobs.cancel(job_id)
            raise

    def _work_list(self, project_id: str, preview: bool,
                   max_chunks: int | None) -> tuple[list[ChunkInput], set[int]]:
        chunks = self._chunks(project_id)
        if not chunks:
            raise missing_chunks(project_id)
        if preview:
            self._clear_preview(project_id)
            return pick_representative_chunks(chunks, PREVIEW_CHUNKS), set()
        done = self._done_chunks(project_id)
        if max_chunks is not None:
            todo = [chunk for chunk in chunks if chunk.id not in done][:max(0, max_chunks)]
            return todo, set()
        return chunks, done

    def quality_options(self, project_ref: str) -> QualityOptions:
        """Lengths are counted over the whole chat in the base model's template, when the
        model is chosen, and checked against the training's max_seq_length."""
        from finetuneflow.services.base_model import ModelService
        from finetuneflow.services.training import TrainingService

        choice = ModelService(self._context).current(project_ref)
        if choice is None or not (choice.folder / "tokenizer.json").is_file():
            return QualityOptions()
        limit = TrainingService(self._context).config_for(project_ref).max_seq_length
        return QualityOptions(count_tokens=chat_token_counter(choice.folder),
                              max_seq_length=limit)

    # --- the estimate before a full run ---------------------------------------------------------

    def estimate(self, project_ref: str, max_chunks: int | None = None) -> FullRunEstimate:
        """Requests, tokens and time of a full run, from what the last preview measured."""
        project_id = self._projects.get(project_ref).id
        remaining = self.remaining_chunks(project_id)
        if max_chunks is not None:
            remaining = min(remaining, max(0, max_chunks))
        settings = self.llm_settings(project_id)
        concurrency = settings.resolved_concurrency
        measured = self._last_measurement(project_id)
        per_chunk = self.task_settings(project_id).examples_per_chunk
        run = (estimate_from_measurement(remaining, per_chunk, measured, concurrency)
               if measured else None)
        return FullRunEstimate(remaining, per_chunk, concurrency, run)

    def remaining_chunks(self, project_ref: str) -> int:
        """Chunks without examples yet, counted in SQL (the page asks after every change)."""
        project_id = self._projects.get(project_ref).id
        with self._context.transaction() as tx:
            total = tx.examples.count_chunks_without_examples(project_id)
            if not total and not tx.examples.has_chunks(project_id):
                raise missing_chunks(project_id)
        return total

    def _last_measurement(self, project_id: str) -> Measurement | None:
        with self._context.transaction() as tx:
            results = tx.jobs.results_of_succeeded(project_id, JobKind.PREVIEW)
        for result in results:
            if result.get("measurement"):
                return Measurement(**result["measurement"])
        return None

    def _close_job(self, job_id: int, summary: RunSummary, result: GenerationResult,
                   measured: Measurement | None) -> None:
        error = summary.error
        if isinstance(error, QuotaExhaustedError):
            self._jobs.interrupt(job_id, one_line(f"{error} Resume later: finished chunks are "
                                                  "kept."))
            raise UserError(one_line(str(error)))
        if error is None and summary.nothing_succeeded and not summary.cancelled:
            error = summary.failure
        if error is not None:
            cause = _failure_cause(error, summary)
            log.error("Generation job %s failed: %s", job_id, error)
            self._jobs.fail(job_id, cause)
            raise GenerationFailed(cause, error)
        if summary.cancelled:
            self._jobs.cancel(job_id)
            return
        if result.failures:
            log.warning("Generation job %s: %s", job_id, result.failures)
        outcome = result.to_json() | {"measurement": asdict(measured) if measured else None}
        message = f"{result.accepted} examples accepted, {result.rejected} rejected"
        if result.unreadable:
            message += f"; {result.unreadable} unreadable answer(s): {result.unreadable_reason}"
        notes = [note for note in (result.failures, result.structured_notice) if note]
        self._jobs.succeed(job_id, outcome, "; ".join([message, *notes]))

    def _chunks(self, project_id: str) -> list[ChunkInput]:
        with self._context.transaction() as tx:
            return [ChunkInput(*row) for row in tx.examples.chunks(project_id)]

    def _done_chunks(self, project_id: str) -> set[int]:
        with self._context.transaction() as tx:
            return tx.examples.chunks_with_examples(project_id)

    def _clear_preview(self, project_id: str) -> None:
        with self._context.transaction() as tx:
            tx.examples.clear_preview(project_id)

    def _seeded_dedup(self, project_id: str, task: Task) -> Deduplicator:
        """Duplicates are judged against the examples earlier runs kept, too."""
        dedup = Deduplicator()
        with self._context.transaction() as tx:
            kept = tx.examples.kept(project_id)
        for example_id, digest, messages in kept:
            dedup.add(example_id, digest, task.dedup_text_of_messages(messages))
        return dedup


class _ChunkWriter:
    """Stores one chunk's examples per transaction and reports progress."""

    def __init__(self, context: AppContext, project_id: str, split: ExampleSplit, total: int,
                 progress: ProgressSink) -> None:
        self._context = context
        self._project_id = project_id
        self._split = split
        self._total = max(total, 1)
        self._done = 0
        self._progress = progress
        self.kept = 0  # examples stored as accepted, read back from the database
        self.rejected = 0
        self._usage = TokenUsage()
        self._started = time.monotonic()
        self.results: list[ChunkResult] = []  # a preview's, to measure latency and tokens

    def store(self, result: ChunkResult) -> None:
        with self._context.transaction() as tx:
            tx.examples.add_generated(self._project_id, self._split, result)
            kept, rejected = tx.examples.chunk_status_counts(
                self._project_id, result.chunk_id,
                preview=self._split == ExampleSplit.PREVIEW)
        self.kept += kept
        self.rejected += rejected
        if self._split == ExampleSplit.PREVIEW:
            self.results.append(result)
        self._done += 1
        self._usage.merge(result.usage)
        self._progress(self._done / self._total, self._describe_progress())

    def _describe_progress(self) -> str:
        """"12 of 40 chunks · 30 kept, 6 rejected (54/min) · 5,400 tokens · about 2 min
        left"."""
        elapsed = max(time.monotonic() - self._started, 1e-6)
        stored = self.kept + self.rejected
        parts = [f"{self._done} of {self._total} chunks",
                 f"{self.kept} kept, {self.rejected} rejected ({stored * 60 / elapsed:.0f}/min)"]
        if self._usage.requests > self._usage.requests_without_usage:
            parts.append(f"{self._usage.total_tokens:,} tokens")
        if self._done < self._total:
            left = elapsed / self._done * (self._total - self._done)
            parts.append(f"about {format_duration(left)} left")
        return " · ".join(parts)


def preload() -> None:
    """Do a first generation run's one-off work ahead: load the CA bundle, detect the keychain
    backend and load the template engine. Each holds the interpreter lock for tens of
    milliseconds; done in a background thread while the person is on the dashboard, the run
    later starts without the window stuttering."""
    import keyring

    from finetuneflow.core.chat_template import compiled_template
    from finetuneflow.core.generation.client import tls_context

    tls_context()
    keyring.get_keyring()  # finds the backend; reads nothing, so no keychain prompt
    compiled_template("{{ messages }}")

