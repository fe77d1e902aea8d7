"""One database transaction and the repositories that work inside it.

Services never write SQL: they open `context.transaction()` and call the repository of each
aggregate they touch. Everything done through one `Transaction` commits together or not at all.

    with context.transaction() as tx:
        project = tx.projects.resolve(ref)
        tx.examples.add_generated(project.id, rows)
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from finetuneflow.storage.documents import DocumentRepository
    from finetuneflow.storage.evaluations import EvaluationRepository
    from finetuneflow.storage.examples import ExampleRepository
    from finetuneflow.storage.projects import ProjectRepository
    from finetuneflow.storage.runs import JobRepository, RunRepository


class Transaction:
    def __init__(self, session: Session) -> None:
        self.session = session  # for the repositories (and tests); services never use it

    @cached_property
    def projects(self) -> ProjectRepository:
        from finetuneflow.storage.projects import ProjectRepository

        return ProjectRepository(self.session)

    @cached_property
    def documents(self) -> DocumentRepository:
        from finetuneflow.storage.documents import DocumentRepository

        return DocumentRepository(self.session)

    @cached_property
    def examples(self) -> ExampleRepository:
        from finetuneflow.storage.examples import ExampleRepository

        return ExampleRepository(self.session)

    @cached_property
    def jobs(self) -> JobRepository:
        from finetuneflow.storage.runs import JobRepository

        return JobRepository(self.session)

    @cached_property
    def runs(self) -> RunRepository:
        from finetuneflow.storage.runs import RunRepository

        return RunRepository(self.session)

    @cached_property
    def evaluations(self) -> EvaluationRepository:
        from finetuneflow.storage.evaluations import EvaluationRepository

        return EvaluationRepository(self.session)
