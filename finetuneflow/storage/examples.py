"""Dataset examples: the one content hash, inserts, filters, counts and the split.

Every row's `content_hash` is `core.generation.quality.content_hash(row.messages)`, written
here and nowhere else, and its `hash_key` (core/dataset/keys.py) the indexed short form that
lookups go through. A *kept* example (not rejected, not in the preview) is unique by
(project, hash key): the unique index EXAMPLE_KEY_INDEX (storage/tables.py) enforces it,
and the writes below turn a copy of a kept example into a rejected "duplicate of <id>" row
instead of letting the index refuse it. Preview rows are a scratch sample that the next preview
replaces and training never reads, so a full run may repeat them.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    cast,
    delete,
    func,
    or_,
    select,
    update,
)

from finetuneflow.core.dataset.keys import hash_key
from finetuneflow.core.dataset.split import assign_splits
from finetuneflow.core.generation.quality import content_hash
from finetuneflow.storage.import_batch import MAX_REASON, ImportBatch, ImportCounts
from finetuneflow.storage.tables import (
    Chunk,
    DatasetExample,
    ExampleSource,
    ExampleSplit,
    ExampleStatus,
    SourceFile,
    utcnow,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from finetuneflow.core.generation.engine import ChunkResult

Messages = list[dict[str, str]]
AnySelect = Select[*tuple[Any, ...]]  # a select of any columns


def _kept(*, excluding: int | None = None) -> tuple[ColumnElement[bool], ...]:
    """The rows the partial unique index covers."""
    found = (DatasetExample.status != ExampleStatus.REJECTED,
             DatasetExample.split != ExampleSplit.PREVIEW)
    return found if excluding is None else (*found, DatasetExample.id != excluding)


class DuplicateExampleError(ValueError):
    """The change would make an example a copy of another kept one."""

    def __init__(self, example_id: int, original_id: int) -> None:
        super().__init__(f"example {example_id} would copy example {original_id}")
        self.example_id = example_id
        self.original_id = original_id


@dataclass(frozen=True)
class ExampleFilter:
    """What the review table shows. Empty fields match everything."""

    search: str = ""
    status: str | None = None  # accepted | rejected | edited
    reason: str | None = None  # a reason label, as in stats().rejected_by_reason
    file_id: int | None = None
    include_preview: bool = False


@dataclass(frozen=True)
class TrainingSplit:
    train: list[Messages]
    eval: list[Messages]


@dataclass(frozen=True)
class SourcedExample:
    """An example with the file and chunk it came from (None for imported ones)."""

    example: DatasetExample
    file_name: str | None
    ordinal: int | None
    chunk_text: str | None = None  # read for the preview only: chunks are long


_SOURCED = (select(DatasetExample, SourceFile.original_name, Chunk.ordinal)
            .outerjoin(Chunk, Chunk.id == DatasetExample.chunk_id)
            .outerjoin(SourceFile, SourceFile.id == Chunk.file_id))


class ExampleRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    # --- writing --------------------------------------------------------------------------------

    def add_imported(self, project_id: str, batch: ImportBatch) -> ImportCounts:
        """One batch of an import. Good lines become kept examples and bad ones rejected rows
        holding the raw line. A line whose example is already in the project (kept or rejected,
        a bad line imported before too) is skipped: importing the same file again adds
        nothing. Only this batch's hashes are looked up, so a million-line import needs no
        set of every hash in memory."""
        connection = self._session.connection()
        connection.exec_driver_sql(f"PRAGMA cache_size=-{IMPORT_CACHE_KB}")  # until end_import()
        # The write lock first, so no other import of this project (a second window, the
        # command line) stores these examples between the lookup and the insert: the unique
        # index would then fail the whole batch.
        connection.exec_driver_sql(
            "UPDATE projects SET updated_at = updated_at WHERE id = ?", (project_id,))
        if known := set(self._session.scalars(_known_keys(project_id, batch.keys))):
            batch = batch.without(known)
        if not batch.keys:
            return batch.counts
        # A statement per part, SQLite unpacking its JSON list itself: as fast as `executemany`
        # over a tuple per row, and the batch waits as encoded text, a fifth of the memory.
        # The CHECKs on split, status and source are off for it: every value is the enum's
        # own, and testing them took 6 of the 30 s that a million rows took to insert.
        now = str(utcnow())  # as SQLAlchemy stores a DateTime in SQLite
        connection.exec_driver_sql("PRAGMA ignore_check_constraints=ON")
        try:
            for part in batch.parts:
                connection.exec_driver_sql(IMPORT_INSERT, (project_id, now, now, part.decode()))
        finally:  # unless Ctrl-C dropped the connection (and the setting with it)
            if not connection.invalidated:
                connection.exec_driver_sql("PRAGMA ignore_check_constraints=OFF")
        return batch.counts

    def end_import(self) -> None:
        """Give back the import's page cache (see IMPORT_CACHE_KB)."""
        self._session.connection().exec_driver_sql(f"PRAGMA cache_size=-{DEFAULT_CACHE_KB}")

    def add_generated(self, project_id: str, split: ExampleSplit, result: ChunkResult) -> None:
        """One chunk's examples, flagged ones and unreadable replies (kept raw) included. An
        example that copies one kept meanwhile (an edit, an import) is stored as its duplicate."""
        for example in result.examples:
            digest = content_hash(example.messages)
            reason = example.reject_reason
            if reason is None and split != ExampleSplit.PREVIEW:
                original = self._kept_with_hash(project_id, digest)
                reason = None if original is None else f"duplicate of {original}"
            self._add(project_id, example.messages, digest, ExampleSource.GENERATED,
                      split=split, chunk_id=result.chunk_id, reject_reason=reason,
                      token_count=example.token_count)
            self._session.flush()  # the next example's check sees this one
        for reject in result.rejects:
            messages = [{"role": "assistant", "content": reject.raw}]
            self._add(project_id, messages, content_hash(messages), ExampleSource.GENERATED,
                      split=split, chunk_id=result.chunk_id, reject_reason=reject.reason)
        self._session.flush()

    def _add(self, project_id: str, messages: Messages, digest: str, source: ExampleSource, *,
             split: ExampleSplit = ExampleSplit.TRAIN, chunk_id: Any = None,
             reject_reason: str | None = None, token_count: int | None = None) -> None:
        status = ExampleStatus.REJECTED if reject_reason else ExampleStatus.ACCEPTED
        self._session.add(DatasetExample(
            project_id=project_id, chunk_id=chunk_id, split=split, messages=messages,
            status=status, reject_reason=reject_reason[:MAX_REASON] if reject_reason else None,
            content_hash=digest, token_count=token_count, source=source))

    def _kept_with_hash(self, project_id: str, digest: str, *,
                        excluding: int | None = None) -> int | None:
        """The kept example with this content, if there is one."""
        return self._session.scalar(select(DatasetExample.id).where(
            DatasetExample.project_id == project_id, DatasetExample.hash_key == hash_key(digest),
            *_kept(excluding=excluding)).limit(1))

    def edit(self, example_id: int, messages: Messages, tokens: int | None) -> bool:
        """Replace the turns and mark the example edited (and so kept). False when it is gone;
        DuplicateExampleError when the new turns copy another kept example."""
        example = self._session.get(DatasetExample, example_id)
        if example is None:
            return False
        digest = content_hash(messages)
        if example.split != ExampleSplit.PREVIEW:
            original = self._kept_with_hash(example.project_id, digest, excluding=example_id)
            if original is not None:
                raise DuplicateExampleError(example_id, original)
        example.messages = messages
        example.content_hash = digest
        example.status = ExampleStatus.EDITED
        example.reject_reason = None
        example.token_count = tokens
        return True

    def reject(self, example_ids: Sequence[int], reason: str) -> None:
        self._session.execute(update(DatasetExample).where(DatasetExample.id.in_(example_ids))
                              .values(status=ExampleStatus.REJECTED, reject_reason=reason))

    def restore(self, example_ids: Sequence[int]) -> list[DuplicateExampleError]:
        """Keep these examples after all; one that copies a kept example stays rejected (and
        is returned, naming the example it copies)."""
        refused = []
        for example in self._session.scalars(select(DatasetExample).where(
                DatasetExample.id.in_(example_ids)).order_by(DatasetExample.id)):
            if example.split != ExampleSplit.PREVIEW:
                original = self._kept_with_hash(example.project_id, example.content_hash,
                                                excluding=example.id)
                if original is not None:
                    refused.append(DuplicateExampleError(example.id, original))
                    continue
            example.status = ExampleStatus.ACCEPTED
            example.reject_reason = None
            self._session.flush()
        return refused

    def delete(self, example_ids: Sequence[int]) -> None:
        self._session.execute(delete(DatasetExample).where(DatasetExample.id.in_(example_ids)))

    def clear_preview(self, project_id: str) -> None:
        self._session.execute(delete(DatasetExample).where(
            DatasetExample.project_id == project_id,
            DatasetExample.split == ExampleSplit.PREVIEW))

    def split_for_training(self, project_id: str, eval_fraction: float,
                           seed: int) -> TrainingSplit:
        """Assign the kept examples to train or eval and return both sides' turns. Examples
        from one chunk stay on one side (near-identical questions would leak into eval)."""
        usable = self._session.scalars(select(DatasetExample).where(
            DatasetExample.project_id == project_id, *_kept()).order_by(DatasetExample.id)).all()
        sides = assign_splits({_group_key(e) for e in usable}, eval_fraction, seed)
        for example in usable:
            example.split = ExampleSplit(sides[_group_key(example)])
        return TrainingSplit([e.messages for e in usable if e.split == ExampleSplit.TRAIN],
                             [e.messages for e in usable if e.split == ExampleSplit.EVAL])

    # --- reading --------------------------------------------------------------------------------

    def get(self, example_id: int) -> DatasetExample | None:
        return self._session.get(DatasetExample, example_id)

    def count(self, project_id: str, filters: ExampleFilter) -> int:
        query = _filtered(select(func.count(DatasetExample.id)), project_id, filters)
        return int(self._session.scalar(query) or 0)

    def page(self, project_id: str, filters: ExampleFilter, after_id: int,
             limit: int) -> list[SourcedExample]:
        """Up to `limit` rows with ids above `after_id`, in id order (by key: fast anywhere)."""
        query = _filtered(_SOURCED, project_id, filters).where(DatasetExample.id > after_id)
        return self._sourced(query.order_by(DatasetExample.id).limit(limit))

    def sourced(self, example_ids: Iterable[int]) -> list[SourcedExample]:
        return self._sourced(_SOURCED.where(DatasetExample.id.in_(list(example_ids))))

    def preview(self, project_id: str) -> list[SourcedExample]:
        """The last preview's examples, with their chunk's text, in chunk order."""
        return self._sourced(_SOURCED.add_columns(Chunk.text).where(
            DatasetExample.project_id == project_id,
            DatasetExample.split == ExampleSplit.PREVIEW,
        ).order_by(DatasetExample.chunk_id, DatasetExample.id))

    def _sourced(self, query: AnySelect) -> list[SourcedExample]:
        return [SourcedExample(*row) for row in self._session.execute(query).all()]

    def status_counts(self, project_id: str) -> dict[ExampleStatus, int]:
        """Examples by status, the preview left out (counted in SQL: 100,000 rows stay fast)."""
        return dict(self._session.execute(
            select(DatasetExample.status, func.count()).where(*_dataset(project_id))
            .group_by(DatasetExample.status)).all())

    def reject_reasons(self, project_id: str) -> list[tuple[str | None, int]]:
        """(reason, count) of the rejected examples, the preview left out."""
        return [(reason, count) for reason, count in self._session.execute(
            select(DatasetExample.reject_reason, func.count()).where(
                *_dataset(project_id), DatasetExample.status == ExampleStatus.REJECTED)
            .group_by(DatasetExample.reject_reason)).all()]

    def kept_token_counts(self, project_id: str) -> list[int]:
        return list(self._session.scalars(select(DatasetExample.token_count).where(
            DatasetExample.project_id == project_id, *_kept(),
            DatasetExample.token_count.is_not(None))))

    def kept(self, project_id: str) -> list[tuple[int, str, Messages]]:
        """(id, content hash, turns) of the kept examples: what later runs must not repeat."""
        return [(row.id, row.content_hash, row.messages) for row in self._session.execute(
            select(DatasetExample.id, DatasetExample.content_hash, DatasetExample.messages)
            .where(DatasetExample.project_id == project_id, *_kept()))]

    def last_change(self, project_id: str) -> datetime | None:
        """When the dataset's examples (not the preview's) last changed."""
        return self._session.scalar(select(func.max(DatasetExample.updated_at)).where(
            *_dataset(project_id)))

    def revision(self, project_id: str) -> tuple[object, ...]:
        """Changes whenever the project's examples or chunks do (a row added, edited, rejected
        or deleted): a view of them reads them again only when it differs."""
        examples = self._session.execute(select(
            func.count(DatasetExample.id), func.max(DatasetExample.id),
            func.max(DatasetExample.updated_at)).where(DatasetExample.project_id == project_id))
        chunks = self._session.execute(select(func.count(Chunk.id), func.max(Chunk.id))
                                       .where(Chunk.project_id == project_id))
        return (*examples.one(), *chunks.one())

    def training_chats(self, project_id: str) -> list[Messages]:
        """The turns of every example a training would use (kept, not the preview's)."""
        return list(self._session.scalars(select(DatasetExample.messages).where(
            DatasetExample.project_id == project_id, *_kept())))

    def has_generated(self, project_id: str) -> bool:
        """Whether a generation (not an import) made any dataset example."""
        return self._session.scalar(select(DatasetExample.id).where(
            *_from_chunks(project_id)).limit(1)) is not None

    def project_has_any(self, project_id: str) -> bool:
        """Whether the project has an example (imported ones count as training material)."""
        return self._session.scalar(select(DatasetExample.id).where(
            DatasetExample.project_id == project_id).limit(1)) is not None

    def count_made_from_file(self, file_id: int) -> int:
        """Examples generated from the chunks of one file (they stay when the file goes)."""
        return self._session.scalar(select(func.count()).select_from(DatasetExample).join(
            Chunk, DatasetExample.chunk_id == Chunk.id).where(Chunk.file_id == file_id)) or 0

    def chunks_with_examples(self, project_id: str) -> set[int]:
        """Chunks a full run has stored examples for (rejected ones too): done on resume."""
        return set(self._session.scalars(select(DatasetExample.chunk_id).distinct().where(
            *_from_chunks(project_id))))

    def count_chunks_without_examples(self, project_id: str) -> int:
        done = select(DatasetExample.chunk_id).where(*_from_chunks(project_id))
        return int(self._session.scalar(select(func.count(Chunk.id)).where(
            Chunk.project_id == project_id, Chunk.id.not_in(done))) or 0)

    # --- the documents' side, read by generation and review -------------------------------------

    def chunks(self, project_id: str) -> list[tuple[int, str, int, int]]:
        """(id, text, file id, ordinal) of every chunk, in document order."""
        return [tuple(row) for row in self._session.execute(  # type: ignore[misc]
            select(Chunk.id, Chunk.text, Chunk.file_id, Chunk.ordinal)
            .where(Chunk.project_id == project_id).order_by(Chunk.file_id, Chunk.ordinal))]

    def has_chunks(self, project_id: str) -> bool:
        return self._session.scalar(select(Chunk.id).where(Chunk.project_id == project_id)
                                    .limit(1)) is not None

    def source_files(self, project_id: str) -> list[tuple[int, str]]:
        """(id, name) of the project's documents, to filter the examples by."""
        return [(row.id, row.original_name) for row in self._session.execute(
            select(SourceFile.id, SourceFile.original_name)
            .where(SourceFile.project_id == project_id).order_by(SourceFile.id))]

    # --- counts shown to people (issue 14): read back from the rows, never tallied apart ------

    def chunk_status_counts(self, project_id: str, chunk_id: Hashable, *,
                            preview: bool) -> tuple[int, int]:
        """(kept, rejected) examples stored for one chunk, in the preview or in the dataset:
        what a generation run reports is what the database holds."""
        where = ((DatasetExample.project_id == project_id,
                  DatasetExample.split == ExampleSplit.PREVIEW) if preview
                 else _dataset(project_id))
        rows = self._session.execute(
            select(DatasetExample.status, func.count()).where(
                *where, DatasetExample.chunk_id == chunk_id).group_by(DatasetExample.status))
        counts = {status: int(count) for status, count in rows.all()}
        rejected = counts.pop(ExampleStatus.REJECTED, 0)
        return sum(counts.values()), rejected

    def preview_count(self, project_id: str) -> int:
        """Examples the last preview wrote."""
        return int(self._session.scalar(select(func.count(DatasetExample.id)).where(
            DatasetExample.project_id == project_id,
            DatasetExample.split == ExampleSplit.PREVIEW)) or 0)


# An import's batches keep the hash-key index's pages cached between them: its keys are random,
# so with SQLite's default 2 MB cache each batch reads and writes most index pages again (a
# million rows make 57 MB of it). 64 MB holds it; with 32 MB a million rows took 3 s longer to
# store. Setting the size back frees the pages.
IMPORT_CACHE_KB = 64 * 1024
DEFAULT_CACHE_KB = 2000
# Each element of the JSON list: [messages as JSON text, status, reject reason, content hash,
# hash key]. The messages as text, not as a JSON list: SQLite then copies them out instead of
# writing them again, which took a tenth longer.
IMPORT_INSERT = (
    "INSERT INTO dataset_examples (project_id, split, messages, status, reject_reason, "
    "content_hash, hash_key, source, created_at, updated_at) "
    f"SELECT ?, '{ExampleSplit.TRAIN.value}', json_extract(value, '$[0]'), "
    "json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]'), "
    f"json_extract(value, '$[4]'), '{ExampleSource.IMPORTED.value}', ?, ? FROM json_each(?)")


def _known_keys(project_id: str, keys: Iterable[int]) -> Select[int]:
    """Which of these hash keys the project's dataset holds, a few index entries read per key
    (EXAMPLE_KEY_INDEX). The keys go in as one JSON list: as a parameter each, a batch took
    longer to render than to look up, and a batch over SQLite's 32,766 parameters would fail."""
    listed = func.json_each(orjson.dumps(list(keys)).decode()).table_valued("value")
    return select(DatasetExample.hash_key).where(
        DatasetExample.project_id == project_id,
        DatasetExample.split != ExampleSplit.PREVIEW,
        DatasetExample.hash_key.in_(select(listed.c.value)))


def _dataset(project_id: str) -> tuple[ColumnElement[bool], ...]:
    return (DatasetExample.project_id == project_id,
            DatasetExample.split != ExampleSplit.PREVIEW)


def _from_chunks(project_id: str) -> tuple[ColumnElement[bool], ...]:
    return (*_dataset(project_id), DatasetExample.chunk_id.is_not(None))


def _group_key(example: DatasetExample) -> str:
    # Examples from one chunk stay together; imported ones stand alone.
    if example.chunk_id is not None:
        return f"chunk:{example.chunk_id}"
    return f"example:{example.content_hash}"


def _filtered(query: AnySelect, project_id: str, filters: ExampleFilter) -> AnySelect:
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
