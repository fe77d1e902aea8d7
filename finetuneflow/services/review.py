"""Reviewing generated and imported examples: find, read, edit, reject, restore, delete.

Pages of rows are fetched by key (id > last id), so a table over 100,000 examples stays fast
at any scroll position. Edits keep the example's identity (content hash) current so the
duplicate checks of later runs see the edited text.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, String, cast, delete, func, or_, select, update

from finetuneflow.services.datasets import content_hash, reason_label
from finetuneflow.services.errors import NotFoundError, UserError
from finetuneflow.services.projects import ProjectService
from finetuneflow.storage.tables import (
    Chunk,
    DatasetExample,
    ExampleSplit,
    ExampleStatus,
    SourceFile,
)

if TYPE_CHECKING:
    from finetuneflow.services.context import AppContext

REJECTED_BY_PERSON = "rejected in review"
DUPLICATE_REASONS = ("duplicate", "near duplicate")
PREVIEW_TEXT = 160


@dataclass(frozen=True)
class ExampleFilter:
    """What the review table shows. Empty fields match everything."""

    search: str = ""
    status: str | None = None  # accepted | rejected | edited
    reason: str | None = None  # a reason label, as in stats().rejected_by_reason
    file_id: int | None = None
    include_preview: bool = False


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


_ROWS = (select(DatasetExample, SourceFile.original_name, Chunk.ordinal)
         .outerjoin(Chunk, Chunk.id == DatasetExample.chunk_id)
         .outerjoin(SourceFile, SourceFile.id == Chunk.file_id))


class ReviewService:
    def __init__(self, context: AppContext) -> None:
        self._context = context
        self._projects = ProjectService(context)

    # --- reading --------------------------------------------------------------------------------

    def count(self, project_ref: str, filters: ExampleFilter) -> int:
        project_id = self._projects.get(project_ref).id
        query = self._filtered(select(func.count(DatasetExample.id)), project_id, filters)
        with self._context.session() as session:
            return int(session.scalar(query) or 0)

    def page(self, project_ref: str, filters: ExampleFilter, after_id: int = 0,
             limit: int = 200) -> list[ExampleRow]:
        """Up to `limit` rows with ids above `after_id`, in id order."""
        project_id = self._projects.get(project_ref).id
        query = self._filtered(_ROWS, project_id, filters)
        query = query.where(DatasetExample.id > after_id).order_by(DatasetExample.id).limit(limit)
        with self._context.session() as session:
            return [_row(*found) for found in session.execute(query).all()]

    def rows(self, example_ids: set[int]) -> dict[int, ExampleRow]:
        """These examples as table rows (after an edit or a reject), by id."""
        with self._context.session() as session:
            found = session.execute(_ROWS.where(DatasetExample.id.in_(example_ids))).all()
        return {row.id: row for row in (_row(*values) for values in found)}

    def _filtered(self, query: Select[Any], project_id: str, filters: ExampleFilter
                  ) -> Select[Any]:
        query = query.where(DatasetExample.project_id == project_id)
        if not filters.include_preview:
            query = query.where(DatasetExample.split != ExampleSplit.PREVIEW)
        if filters.status:
            query = query.where(DatasetExample.status == ExampleStatus(filters.status))
        if filters.reason:
            query = query.where(or_(DatasetExample.reject_reason == filters.reason,
                                    DatasetExample.reject_reason.like(f"{filters.reason}%"),
                                    DatasetExample.reject_reason.like(f"%: {filters.reason}%")))
        if filters.file_id is not None:
            query = query.where(DatasetExample.chunk_id.in_(
                select(Chunk.id).where(Chunk.file_id == filters.file_id)))
        if filters.search.strip():
            # Messages are stored as JSON text with non-ASCII characters kept as they are.
            needle = f"%{filters.search.strip()}%"
            query = query.where(cast(DatasetExample.messages, String).ilike(needle))
        return query

    def example(self, example_id: int) -> dict[str, Any]:
        with self._context.session() as session:
            example = session.get(DatasetExample, example_id)
            if example is None:
                raise NotFoundError(f"Example {example_id} no longer exists.")
            return {"id": example.id, "messages": list(example.messages),
                    "status": example.status.value, "reject_reason": example.reject_reason,
                    "tokens": example.token_count, "split": example.split.value}

    def stats(self, project_ref: str) -> ReviewStats:
        """Counted in SQL: the panel is refreshed after every reject, also at 100,000 rows."""
        project_id = self._projects.get(project_ref).id
        mine = (DatasetExample.project_id == project_id,
                DatasetExample.split != ExampleSplit.PREVIEW)
        with self._context.session() as session:
            statuses: dict[ExampleStatus, int] = dict(session.execute(
                select(DatasetExample.status, func.count()).where(*mine)
                .group_by(DatasetExample.status)).all())
            by_reason = session.execute(
                select(DatasetExample.reject_reason, func.count()).where(
                    *mine, DatasetExample.status == ExampleStatus.REJECTED)
                .group_by(DatasetExample.reject_reason)).all()
            lengths = list(session.scalars(select(DatasetExample.token_count).where(
                *mine, DatasetExample.status != ExampleStatus.REJECTED,
                DatasetExample.token_count.is_not(None))))
        reasons: Counter[str] = Counter()
        for reason, count in by_reason:
            reasons[reason_label(reason)] += count
        duplicates = sum(n for reason, n in reasons.items() if reason.startswith(DUPLICATE_REASONS))
        return ReviewStats(statuses.get(ExampleStatus.ACCEPTED, 0),
                           statuses.get(ExampleStatus.EDITED, 0), dict(reasons.most_common()),
                           duplicates, lengths)

    def files(self, project_ref: str) -> list[tuple[int, str]]:
        project_id = self._projects.get(project_ref).id
        with self._context.session() as session:
            return [(row.id, row.original_name) for row in session.execute(
                select(SourceFile.id, SourceFile.original_name)
                .where(SourceFile.project_id == project_id).order_by(SourceFile.id))]

    def preview_groups(self, project_ref: str) -> list[PreviewGroup]:
        """The last preview's examples, grouped under the chunk they came from."""
        project_id = self._projects.get(project_ref).id
        with self._context.session() as session:
            rows = session.execute(
                select(DatasetExample, Chunk.text, Chunk.ordinal, SourceFile.original_name)
                .outerjoin(Chunk, Chunk.id == DatasetExample.chunk_id)
                .outerjoin(SourceFile, SourceFile.id == Chunk.file_id)
                .where(DatasetExample.project_id == project_id,
                       DatasetExample.split == ExampleSplit.PREVIEW)
                .order_by(DatasetExample.chunk_id, DatasetExample.id)).all()
        groups: dict[int | None, PreviewGroup] = {}
        for example, text, ordinal, name in rows:
            group = groups.setdefault(example.chunk_id, PreviewGroup(
                example.chunk_id, _source(name, ordinal), text or "", []))
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
        with self._context.session() as session:
            example = session.get(DatasetExample, example_id)
            if example is None:
                raise NotFoundError(f"Example {example_id} no longer exists.")
            example.messages = messages
            example.content_hash = content_hash(messages)
            example.status = ExampleStatus.EDITED
            example.reject_reason = None
            example.token_count = tokens

    def reject(self, example_ids: list[int], reason: str = REJECTED_BY_PERSON) -> None:
        self._set_status(example_ids, ExampleStatus.REJECTED, reason)

    def restore(self, example_ids: list[int]) -> None:
        """Keep examples after all (a flagged one too: the person read it and decided)."""
        self._set_status(example_ids, ExampleStatus.ACCEPTED, None)

    def _set_status(self, example_ids: list[int], status: ExampleStatus,
                    reason: str | None) -> None:
        with self._context.session() as session:
            session.execute(update(DatasetExample).where(DatasetExample.id.in_(example_ids))
                            .values(status=status, reject_reason=reason))

    def delete(self, example_ids: list[int]) -> None:
        with self._context.session() as session:
            session.execute(delete(DatasetExample).where(DatasetExample.id.in_(example_ids)))


def _source(file_name: str | None, ordinal: int | None) -> str:
    if file_name is None:
        return "imported"
    return f"{file_name} · chunk {(ordinal or 0) + 1}"


def _turn(messages: list[dict[str, str]], role: str) -> str:
    text = next((m.get("content", "") for m in messages if m.get("role") == role), "")
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW_TEXT else flat[:PREVIEW_TEXT - 1] + "…"


def _row(example: DatasetExample, file_name: str | None, ordinal: int | None) -> ExampleRow:
    return ExampleRow(example.id, example.split.value, example.status.value,
                      example.reject_reason, example.token_count, _source(file_name, ordinal),
                      _turn(example.messages, "user"), _turn(example.messages, "assistant"))
