"""Reviewing generated and imported examples: find, read, edit, reject, restore, delete.

Pages of rows are fetched by key (id > last id), so a table over 100,000 examples stays fast
at any scroll position. Edits keep the example's identity (content hash) current so the
duplicate checks of later runs see the edited text.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from finetuneflow.services.datasets import reason_label
from finetuneflow.services.errors import NotFoundError, UserError
from finetuneflow.services.projects import ProjectService
from finetuneflow.storage.examples import DuplicateExampleError, ExampleFilter, SourcedExample
from finetuneflow.storage.tables import ExampleStatus

if TYPE_CHECKING:
    from finetuneflow.services.context import AppContext

REJECTED_BY_PERSON = "rejected in review"
DUPLICATE_REASONS = ("duplicate", "near duplicate")
PREVIEW_TEXT = 160


@dataclass(frozen=True)
class ExampleRow:
    id: int
    split: str
    status: str
    reject_reason: str | None
    tokens: int | None
    source: str  # "file.pdf · chunk 3", or "imported"
    prompt: str  # the user turn, shortened
    reply: str  # the assistant turn, shortened


@dataclass(frozen=True)
class ReviewStats:
    accepted: int
    edited: int
    rejected_by_reason: dict[str, int]
    duplicates_removed: int
    token_lengths: list[int]

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_reason.values())

    @property
    def usable(self) -> int:
        return self.accepted + self.edited


@dataclass(frozen=True)
class PreviewGroup:
    """One preview chunk and the examples written from it."""

    chunk_id: int | None
    source: str
    chunk_text: str
    examples: list[dict[str, Any]]  # messages, status, reject_reason, tokens


class ReviewService:
    def __init__(self, context: AppContext) -> None:
        self._context = context
        self._projects = ProjectService(context)

    # --- reading --------------------------------------------------------------------------------

    def count(self, project_ref: str, filters: ExampleFilter) -> int:
        project_id = self._projects.get(project_ref).id
        with self._context.transaction() as tx:
            return tx.examples.count(project_id, filters)

    def page(self, project_ref: str, filters: ExampleFilter, after_id: int = 0,
             limit: int = 200) -> list[ExampleRow]:
        """Up to `limit` rows with ids above `after_id`, in id order."""
        project_id = self._projects.get(project_ref).id
        with self._context.transaction() as tx:
            return [_row(found) for found in tx.examples.page(project_id, filters, after_id,
                                                               limit)]

    def rows(self, example_ids: set[int]) -> dict[int, ExampleRow]:
        """These examples as table rows (after an edit or a reject), by id."""
        with self._context.transaction() as tx:
            return {found.example.id: _row(found) for found in tx.examples.sourced(example_ids)}

    def example(self, example_id: int) -> dict[str, Any]:
        with self._context.transaction() as tx:
            example = tx.examples.get(example_id)
            if example is None:
                raise NotFoundError(f"Example {example_id} no longer exists.")
            return {"id": example.id, "messages": list(example.messages),
                    "status": example.status.value, "reject_reason": example.reject_reason,
                    "tokens": example.token_count, "split": example.split.value}

    def stats(self, project_ref: str) -> ReviewStats:
        """Counted in SQL: the panel is refreshed after every reject, also at 100,000 rows."""
        project_id = self._projects.get(project_ref).id
        with self._context.transaction() as tx:
            statuses = tx.examples.status_counts(project_id)
            by_reason = tx.examples.reject_reasons(project_id)
            lengths = tx.examples.kept_token_counts(project_id)
        reasons: Counter[str] = Counter()
        for reason, count in by_reason:
            reasons[reason_label(reason)] += count
        duplicates = sum(n for reason, n in reasons.items() if reason.startswith(DUPLICATE_REASONS))
        return ReviewStats(statuses.get(ExampleStatus.ACCEPTED, 0),
                           statuses.get(ExampleStatus.EDITED, 0), dict(reasons.most_common()),
                           duplicates, lengths)

    def revision(self, project_ref: str) -> tuple[object, ...]:
        """Differs after any change to the project's examples or chunks (see the page)."""
        project_id = self._projects.get(project_ref).id
        with self._context.transaction() as tx:
            return tx.examples.revision(project_id)

    def files(self, project_ref: str) -> list[tuple[int, str]]:
        project_id = self._projects.get(project_ref).id
        with self._context.transaction() as tx:
            return tx.examples.source_files(project_id)

    def preview_groups(self, project_ref: str) -> list[PreviewGroup]:
        """The last preview's examples, grouped under the chunk they came from."""
        project_id = self._projects.get(project_ref).id
        with self._context.transaction() as tx:
            rows = tx.examples.preview(project_id)
        groups: dict[int | None, PreviewGroup] = {}
        for found in rows:
            example = found.example
            group = groups.setdefault(example.chunk_id, PreviewGroup(
                example.chunk_id, _source(found.file_name, found.ordinal),
                found.chunk_text or "", []))
            group.examples.append({"messages": example.messages, "status": example.status.value,
                                   "reject_reason": example.reject_reason,
                                   "tokens": example.token_count})
        return list(groups.values())

    # --- changing -------------------------------------------------------------------------------

    def edit(self, example_id: int, messages: list[dict[str, str]],
             tokens: int | None = None) -> None:
        """Replace the turns; the example is then marked edited (and so kept)."""
        if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
            raise UserError("An example needs a reply: write the assistant's answer.")
        try:
            with self._context.transaction() as tx:
                if not tx.examples.edit(example_id, messages, tokens):
                    raise NotFoundError(f"Example {example_id} no longer exists.")
        except DuplicateExampleError as error:
            raise UserError(f"This edit makes example {example_id} the same as example "
                            f"{error.original_id}, which is kept: change the text, or reject "
                            "one of the two.") from None

    def reject(self, example_ids: list[int], reason: str = REJECTED_BY_PERSON) -> None:
        with self._context.transaction() as tx:
            tx.examples.reject(example_ids, reason)

    def restore(self, example_ids: list[int]) -> None:
        """Keep examples after all (a flagged one too: the person read it and decided). A copy
        of a kept example stays rejected: the others are restored, then a UserError names it."""
        with self._context.transaction() as tx:
            refused = tx.examples.restore(example_ids)
        if refused:
            pairs = ", ".join(f"{e.example_id} (a copy of {e.original_id})" for e in refused[:5])
            raise UserError(f"These examples stay rejected because they copy kept ones: "
                            f"{pairs}. Reject the kept one first to keep the other.")

    def delete(self, example_ids: list[int]) -> None:
        with self._context.transaction() as tx:
            tx.examples.delete(example_ids)


def _source(file_name: str | None, ordinal: int | None) -> str:
    if file_name is None:
        return "imported"
    return f"{file_name} · chunk {(ordinal or 0) + 1}"


def _turn(messages: list[dict[str, str]], role: str) -> str:
    text = next((m.get("content", "") for m in messages if m.get("role") == role), "")
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW_TEXT else flat[:PREVIEW_TEXT - 1] + "…"


def _row(found: SourcedExample) -> ExampleRow:
    example = found.example
    return ExampleRow(example.id, example.split.value, example.status.value,
                      example.reject_reason, example.token_count,
                      _source(found.file_name, found.ordinal),
                      _turn(example.messages, "user"), _turn(example.messages, "assistant"))
