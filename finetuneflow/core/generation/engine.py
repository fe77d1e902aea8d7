"""Generating examples from chunks: one chunk at a time, or a whole run over a thread pool.

Qt-free: the GUI's QThreadPool workers call generate_for_chunk; the CLI and the benchmarks call
run_generation. Nothing here touches storage: results go to the caller's `on_result`, which
persists each chunk's examples in one transaction, so a resumed run skips the chunks it finds
done.
"""

from __future__ import annotations

import logging
import math
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from finetuneflow.core.generation.client import CancelHook, LLMClient, TokenUsage
from finetuneflow.core.generation.errors import AnswerUnreadableError, LLMError
from finetuneflow.core.generation.parse import (
    ParseOutcome,
    build_repair_messages,
    parse_answer,
)
from finetuneflow.core.generation.quality import (
    FLAG_DUPLICATE,
    FLAG_NEAR_DUPLICATE,
    FLAG_TOO_LONG,
    FLAG_UNGROUNDED,
    GROUNDING_THRESHOLD,
    CountTokens,
    Deduplicator,
    content_hash,
    grounding_score,
)
from finetuneflow.core.generation.tasks import Item, Message, Task
from finetuneflow.core.progress import Cancelled, CancelToken

log = logging.getLogger(__name__)

ChunkT = TypeVar("ChunkT", bound="ChunkLike")
StartWorker = Callable[[Callable[[], None]], None]
STOP_GRACE_S = 1.5  # after a cancel, how long requests already in flight may still finish
POLL_S = 0.05
MAX_RAW_CHARS = 50_000  # an unreadable answer is kept whole for review, up to this size


class ChunkLike(Protocol):
    """What the engine reads from a chunk (storage's Chunk rows fit, as does ChunkInput)."""

    @property
    def id(self) -> Hashable: ...

    @property
    def text(self) -> str: ...


@dataclass(frozen=True)
class ChunkInput:
    id: Hashable
    text: str
    file_id: Hashable = None
    ordinal: int = 0


@dataclass(frozen=True)
class QualityOptions:
    grounding_threshold: float = GROUNDING_THRESHOLD
    count_tokens: CountTokens | None = None  # the base model's chat template, from the caller
    max_seq_length: int | None = None
    llm_repair: bool = True  # one repair request when nothing usable came back


@dataclass
class GeneratedExample:
    messages: list[Message]  # system prompt of the task, user, assistant
    item: Item  # the fields the LLM returned (question, answer, quote…)
    content_hash: str
    flags: list[str] = field(default_factory=list)  # ungrounded, duplicate, near_duplicate…
    notes: dict[str, Any] = field(default_factory=dict)  # grounding score, duplicate_of…
    token_count: int | None = None

    @property
    def accepted(self) -> bool:
        return not self.flags

    @property
    def reject_reason(self) -> str | None:
        """The flags in words, short enough for a database column (200 characters)."""
        if not self.flags:
            return None
        parts = []
        for flag in self.flags:
            if flag == FLAG_UNGROUNDED:
                score = self.notes.get("grounding")
                parts.append(f"ungrounded: the quote is not in the chunk (best match {score:.2f})")
            elif flag in (FLAG_DUPLICATE, FLAG_NEAR_DUPLICATE):
                parts.append(f"{flag.replace('_', ' ')} of {self.notes.get('duplicate_of')}")
            elif flag == FLAG_TOO_LONG:
                parts.append(f"too long: {self.token_count} tokens")
            else:
                parts.append(flag)
        return "; ".join(parts)[:200]


@dataclass(frozen=True)
class RejectedExample:
    reason: str  # short, for people and the reject_reason column
    raw: str  # what came back, so nothing is silently lost


@dataclass
class ChunkResult:
    chunk_id: Hashable
    examples: list[GeneratedExample]
    rejects: list[RejectedExample]
    usage: TokenUsage
    latency_s: float  # wall time for the chunk, repairs and retries included
    requests: int
    repaired_by_llm: bool = False
    unreadable: AnswerUnreadableError | None = None  # the answer itself could not be read

    @property
    def accepted(self) -> list[GeneratedExample]:
        return [e for e in self.examples if e.accepted]

    @property
    def flagged(self) -> list[GeneratedExample]:
        return [e for e in self.examples if not e.accepted]


# -- one chunk ------------------------------------------------------------------------------


def generate_for_chunk(
    client: LLMClient,
    task: Task,
    chunk_text: str,
    chunk_id: Hashable,
    n: int | None = None,
    cancel: CancelHook | None = None,
    *,
    quality: QualityOptions | None = None,
    dedup: Deduplicator | None = None,
) -> ChunkResult:
    """Ask for `n` examples of `task` from one chunk; parse, repair, check and return them.

    Raises LLMError when the request failed after its retries (the chunk is then not done)
    and Cancelled on cancel. `dedup` is shared across chunks; without it, only duplicates
    within this chunk are found.
    """
    quality = quality or QualityOptions()
    started = time.monotonic()
    usage = TokenUsage()
    try:
        answer = client.chat(
            task.generation_messages(chunk_text, n), schema=task.response_schema(),
            cancel=cancel)
    except AnswerUnreadableError as error:
        return _unreadable_result(chunk_id, error, time.monotonic() - started)
    usage.add(answer.prompt_tokens, answer.completion_tokens)
    outcome = parse_answer(answer.content, task.item_schema)
    repaired_by_llm = False
    if outcome.needs_llm_repair and quality.llm_repair:
        outcome, repaired_by_llm = _repair_with_llm(
            client, task, answer.content, outcome, usage, cancel
        )
    examples = [_checked_example(task, item, chunk_text, quality) for item in outcome.items]
    _flag_duplicates(task, chunk_id, examples, dedup if dedup is not None else Deduplicator())
    return ChunkResult(
        chunk_id=chunk_id,
        examples=examples,
        rejects=_rejects_of(outcome, answer.content, cut=answer.was_cut),
        usage=usage,
        latency_s=time.monotonic() - started,
        requests=usage.requests,
        repaired_by_llm=repaired_by_llm,
    )


def _unreadable_result(
    chunk_id: Hashable, error: AnswerUnreadableError, latency_s: float
) -> ChunkResult:
    """An answer too large, too long a line or too deep: the chunk is done, rejected with the
    reason and the answer's start, so a resumed run does not ask for it again."""
    reject = RejectedExample(f"unreadable answer: {error.reason}"[:200], error.raw)
    return ChunkResult(chunk_id=chunk_id, examples=[], rejects=[reject], usage=TokenUsage(),
                       latency_s=latency_s, requests=1, unreadable=error)


def _repair_with_llm(
    client: LLMClient,
    task: Task,
    bad_text: str,
    outcome: ParseOutcome,
    usage: TokenUsage,
    cancel: CancelHook | None,
) -> tuple[ParseOutcome, bool]:
    """One repair request; the original outcome stands if it fails or brings nothing."""
    error = outcome.error or "; ".join(r.reason for r in outcome.rejects[:5])
    messages = build_repair_messages(bad_text, error, task.response_schema())
    try:
        repair = client.chat(messages, schema=task.response_schema(), cancel=cancel)
    except LLMError as exc:
        if exc.stops_run:
            raise
        log.warning("The repair request failed (%s); keeping the answer as rejected", exc)
        return outcome, False
    usage.add(repair.prompt_tokens, repair.completion_tokens)
    repaired = parse_answer(repair.content, task.item_schema)
    if not repaired.items:
        if outcome.error is not None:
            outcome.error += "; the repair request did not help either"
        return outcome, False
    return repaired, True


def _checked_example(
    task: Task, item: Item, chunk_text: str, quality: QualityOptions
) -> GeneratedExample:
    messages = task.example_messages(item, chunk_text)
    example = GeneratedExample(messages=messages, item=item, content_hash=content_hash(messages))
    quote = task.grounding_quote(item)
    if quote is not None:
        score = grounding_score(quote, chunk_text)
        example.notes["grounding"] = round(score, 3)
        if score < quality.grounding_threshold:
            example.flags.append(FLAG_UNGROUNDED)
    if quality.count_tokens is not None:
        example.token_count = quality.count_tokens(messages)
        if quality.max_seq_length is not None and example.token_count > quality.max_seq_length:
            example.flags.append(FLAG_TOO_LONG)
    return example


def _flag_duplicates(
    task: Task, chunk_id: Hashable, examples: list[GeneratedExample], dedup: Deduplicator
) -> None:
    """Keys are (chunk id, position in the chunk) so a duplicate names where its original is."""
    for index, example in enumerate(examples):
        text = task.dedup_text(example.item)
        duplicate = dedup.check((chunk_id, index), example.content_hash, text)
        if duplicate is not None:
            exact = duplicate.kind == "exact"
            example.flags.append(FLAG_DUPLICATE if exact else FLAG_NEAR_DUPLICATE)
            example.notes["duplicate_of"] = duplicate.of
            example.notes["similarity"] = round(duplicate.similarity, 3)


def _rejects_of(outcome: ParseOutcome, answer_text: str, *, cut: bool) -> list[RejectedExample]:
    rejects = [RejectedExample(r.reason, r.raw) for r in outcome.rejects]
    if outcome.error is not None:
        # A model that spent max_tokens (often on thinking) needs a higher limit, not a retry.
        why = "unreadable answer (cut at max tokens)" if cut else "unreadable answer"
        reason = f"{why}: {outcome.error}"[:200]
        rejects.append(RejectedExample(reason, answer_text[:MAX_RAW_CHARS]))
    return rejects


# -- a whole run ----------------------------------------------------------------------------


@dataclass
class RunSummary:
    chunks_done: int = 0
    chunks_skipped: int = 0
    chunks_failed: dict[Hashable, str] = field(default_factory=dict)  # id -> why
    examples: int = 0
    accepted: int = 0
    rejects: int = 0
    usage: TokenUsage = field(default_factory=TokenUsage)
    elapsed_s: float = 0.0
    cancelled: bool = False
    error: LLMError | None = None  # what stopped the run (quota, key, model…)
    failures: Counter[str] = field(default_factory=Counter)  # cause -> failed chunks
    last_failure: LLMError | None = None  # the latest chunk failure, for its full message
    unreadable: int = 0  # chunks done whose answer could not be read (rejected, with why)
    last_unreadable: AnswerUnreadableError | None = None

    @property
    def failed_requests(self) -> int:
        return sum(self.failures.values())

    @property
    def nothing_succeeded(self) -> bool:
        """Chunks were tried and no answer could be used (none came back, or none could be
        read): a failed run, whatever stopped it."""
        tried = self.failed_requests > 0 or self.unreadable > 0
        return tried and self.chunks_done == self.unreadable

    @property
    def failure(self) -> LLMError | None:
        """The error that explains a run where nothing succeeded."""
        return self.last_failure or self.last_unreadable

    def describe_failures(self) -> str | None:
        """"7 requests failed: 5 timed out, 2 HTTP 502", or None when none failed."""
        if not self.failures:
            return None
        total = self.failed_requests
        causes = ", ".join(f"{n} {cause}" for cause, n in self.failures.most_common())
        return f"{total} request{'s' if total != 1 else ''} failed: {causes}"

    @property
    def stopped(self) -> bool:
        return self.cancelled or self.error is not None

    def raise_if_stopped(self) -> None:
        if self.error is not None:
            raise self.error
        if self.cancelled:
            raise Cancelled()


class _Run:
    """State shared by the workers of one run_generation call."""

    def __init__(
        self,
        chunks: Iterator[ChunkLike],
        skip_done: Callable[[Hashable], bool],
        on_result: Callable[[ChunkResult], None],
        max_consecutive_failures: int,
    ) -> None:
        self.chunks = chunks
        self.skip_done = skip_done
        self.on_result = on_result
        self.max_consecutive_failures = max_consecutive_failures
        self.stop = CancelToken()  # set on the caller's cancel and on a run-stopping error
        self.summary = RunSummary()
        self.bug: BaseException | None = None
        self.closed = False
        self.consecutive_failures = 0
        self.take_lock = threading.Lock()
        self.deliver_lock = threading.Lock()
        self.active_workers = 0
        self.all_done = threading.Event()

    def worker_finished(self) -> None:
        with self.take_lock:
            self.active_workers -= 1
            if self.active_workers <= 0:
                self.all_done.set()

    def next_chunk(self) -> ChunkLike | None:
        with self.take_lock:
            for chunk in self.chunks:
                if self.skip_done(chunk.id):
                    self.summary.chunks_skipped += 1
                    continue
                return chunk
            return None

    def deliver(self, result: ChunkResult) -> None:
        with self.deliver_lock:
            if self.closed:
                return  # the run already returned: the chunk stays undone and is redone later
            self.on_result(result)
            s = self.summary
            s.chunks_done += 1
            s.examples += len(result.examples)
            s.accepted += len(result.accepted)
            s.rejects += len(result.rejects) + len(result.flagged)
            s.usage.merge(result.usage)
            if result.unreadable is None:
                self.consecutive_failures = 0
                return
            # A server sending only unreadable answers stops the run as failures in a row do.
            s.unreadable += 1
            s.last_unreadable = result.unreadable
            self._count_failure_in_a_row(result.unreadable)

    def _count_failure_in_a_row(self, error: LLMError) -> None:
        self.consecutive_failures += 1
        if self.consecutive_failures >= self.max_consecutive_failures:
            self.stop_with(error)

    def fail_chunk(self, chunk: ChunkLike, error: LLMError) -> None:
        with self.deliver_lock:
            self.summary.chunks_failed[chunk.id] = str(error)
            self.summary.failures[error.cause] += 1
            self.summary.last_failure = error
            self._count_failure_in_a_row(error)

    def stop_with(self, error: LLMError) -> None:
        if self.summary.error is None:
            self.summary.error = error
        self.stop.cancel()


def run_generation(
    client: LLMClient,
    task: Task,
    chunks: Iterable[ChunkLike],
    *,
    on_result: Callable[[ChunkResult], None],
    n: int | None = None,
    concurrency: int | None = None,
    cancel: CancelHook | None = None,
    skip_done: Collection[Hashable] | Callable[[Hashable], bool] = (),
    quality: QualityOptions | None = None,
    dedup: Deduplicator | None = None,
    max_consecutive_failures: int | None = None,
    start_worker: StartWorker | None = None,
) -> RunSummary:
    """Generate for every chunk not in `skip_done`, `concurrency` requests at a time.

    Each worker takes the next chunk as soon as it is free. `on_result` is called once per
    finished chunk, from worker threads, one call at a time, never after this returns. The
    run stops promptly (within about 2 s) on cancel, on an error that would fail every chunk
    (quota, key, access, unknown model, configuration) and after `max_consecutive_failures`
    chunks in a row failed their retries; the summary says why. Chunks that failed are not
    reported to on_result, so a resumed run does them again.
    """
    workers = max(1, concurrency or client.settings.resolved_concurrency)
    run = _Run(
        chunks=iter(chunks),
        skip_done=skip_done if callable(skip_done) else skip_done.__contains__,
        on_result=on_result,
        max_consecutive_failures=max_consecutive_failures or max(5, 2 * workers),
    )
    shared_dedup = dedup if dedup is not None else Deduplicator()
    started = time.monotonic()

    def work() -> None:
        try:
            _worker(client, task, run, n, quality, shared_dedup)
        finally:
            run.worker_finished()

    run.active_workers = workers
    for _ in range(workers):
        (start_worker or start_daemon_thread)(work)
    _wait_for_workers(run, cancel)
    with run.deliver_lock:
        run.closed = True
    run.summary.elapsed_s = time.monotonic() - started
    if run.bug is not None:
        raise run.bug
    return run.summary


def _worker(
    client: LLMClient,
    task: Task,
    run: _Run,
    n: int | None,
    quality: QualityOptions | None,
    dedup: Deduplicator,
) -> None:
    while not run.stop.cancelled:
        chunk = run.next_chunk()
        if chunk is None:
            return
        try:
            result = generate_for_chunk(
                client, task, chunk.text, chunk.id, n, run.stop, quality=quality, dedup=dedup
            )
            run.deliver(result)
        except Cancelled:
            return
        except LLMError as error:
            if error.stops_run:
                with run.deliver_lock:
                    run.summary.failures[error.cause] += 1
                    run.summary.last_failure = error
                run.stop_with(error)
                return
            log.warning("Chunk %s failed after its retries: %s", chunk.id, error)
            run.fail_chunk(chunk, error)
        except BaseException as error:  # a bug (ours or in on_result): stop and re-raise
            run.bug = run.bug or error
            run.stop.cancel()
            return


def start_daemon_thread(work: Callable[[], None]) -> None:
    # Daemon: a thread stuck in a long read must not keep the program alive after a cancel.
    threading.Thread(target=work, name="generate", daemon=True).start()


def _wait_for_workers(run: _Run, cancel: CancelHook | None) -> None:
    while not run.all_done.wait(POLL_S):
        if cancel is not None and cancel.cancelled and not run.stop.cancelled:
            run.summary.cancelled = True
            run.stop.cancel()
        if run.stop.cancelled:
            break
    # Backoff sleeps wake at once; a request in flight gets a moment to finish and be saved.
    run.all_done.wait(STOP_GRACE_S)


# -- preview helpers ------------------------------------------------------------------------


def pick_representative_chunks(chunks: Sequence[ChunkT], k: int = 4) -> list[ChunkT]:
    """`k` chunks spread over the files (largest first) and over positions within each file.

    Chunks much shorter than usual (a title page, a last line) are avoided when possible.
    Reads `file_id` and `ordinal` when the chunks have them.
    """
    if k <= 0 or not chunks:
        return []
    pool = _without_stubs(list(chunks), k)
    by_file: dict[Hashable, list[ChunkT]] = {}
    for chunk in pool:
        by_file.setdefault(getattr(chunk, "file_id", None), []).append(chunk)
    files = sorted(by_file.values(), key=len, reverse=True)
    quotas = _spread(min(k, len(pool)), [len(f) for f in files])
    picked: list[ChunkT] = []
    for file_chunks, quota in zip(files, quotas, strict=True):
        ordered = sorted(file_chunks, key=lambda c: getattr(c, "ordinal", 0))
        picked += [ordered[int((j + 0.5) * len(ordered) / quota)] for j in range(quota)]
    return picked


def _without_stubs(chunks: list[ChunkT], k: int) -> list[ChunkT]:
    median = statistics.median(len(c.text) for c in chunks)
    substantial = [c for c in chunks if len(c.text) >= 0.3 * median]
    return substantial if len(substantial) >= k else chunks


def _spread(k: int, sizes: list[int]) -> list[int]:
    """Round-robin `k` picks over files, never more picks than a file has chunks."""
    quotas = [0] * len(sizes)
    while sum(quotas) < k:
        for index, size in enumerate(sizes):
            if sum(quotas) < k and quotas[index] < size:
                quotas[index] += 1
    return quotas


@dataclass(frozen=True)
class Measurement:
    """What a preview measured, per request."""

    latency_s: float
    prompt_tokens: float | None
    completion_tokens: float | None
    examples_per_request: float


def measure(results: Sequence[ChunkResult], per_chunk: int) -> Measurement | None:
    """Average latency and tokens of finished chunks (a preview), for estimate_run."""
    if not results:
        return None
    latency = statistics.mean(r.latency_s for r in results)
    complete = [r for r in results if r.usage.complete and r.usage.requests]
    prompt = statistics.mean(r.usage.prompt_tokens for r in complete) if complete else None
    completion = statistics.mean(r.usage.completion_tokens for r in complete) if complete else None
    return Measurement(latency, prompt, completion, per_chunk)


@dataclass(frozen=True)
class RunEstimate:
    requests: int
    prompt_tokens: int | None  # None: the server did not report usage
    completion_tokens: int | None
    seconds: float

    @property
    def total_tokens(self) -> int | None:
        if self.prompt_tokens is None or self.completion_tokens is None:
            return None
        return self.prompt_tokens + self.completion_tokens


def estimate_run(
    n_chunks: int,
    per_chunk: int,
    latency_s: float,
    tokens: tuple[float | None, float | None] | None,
    concurrency: int,
    *,
    measured_per_chunk: float | None = None,
) -> RunEstimate:
    """Requests, tokens and time for a run of one request per chunk.

    `latency_s` and `tokens` (prompt, completion per request) come from a preview that asked
    `measured_per_chunk` examples per chunk; the answer's length, and so the completion tokens
    and most of the latency, grow in proportion to the examples asked for.
    """
    scale = per_chunk / measured_per_chunk if measured_per_chunk else 1.0
    rounds = math.ceil(n_chunks / max(1, concurrency))
    prompt, completion = tokens if tokens is not None else (None, None)
    return RunEstimate(
        requests=n_chunks,
        prompt_tokens=None if prompt is None else round(prompt * n_chunks),
        completion_tokens=None if completion is None else round(completion * scale * n_chunks),
        seconds=rounds * latency_s * scale,
    )


def estimate_from_measurement(
    n_chunks: int, per_chunk: int, measured: Measurement, concurrency: int
) -> RunEstimate:
    return estimate_run(
        n_chunks,
        per_chunk,
        measured.latency_s,
        (measured.prompt_tokens, measured.completion_tokens),
        concurrency,
        measured_per_chunk=measured.examples_per_request,
    )
