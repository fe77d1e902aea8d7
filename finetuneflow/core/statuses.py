"""The states a document, a job and an example can be in: shared by the database tables, the
services and the window (which shows them before the database layer has loaded)."""

from __future__ import annotations

import enum


class FileStatus(enum.StrEnum):
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"


class JobKind(enum.StrEnum):
    PREVIEW = "preview"
    GENERATE = "generate"
    TRAIN = "train"
    EVAL = "eval"
    EXPORT = "export"
    INGEST = "ingest"


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def is_final(self) -> bool:
        return self in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}


class ExampleSplit(enum.StrEnum):
    PREVIEW = "preview"
    TRAIN = "train"
    EVAL = "eval"


class ExampleStatus(enum.StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    EDITED = "edited"


class ExampleSource(enum.StrEnum):
    GENERATED = "generated"
    IMPORTED = "imported"
    EDITED = "edited"
