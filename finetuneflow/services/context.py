"""The application context shared by the GUI and the CLI: home folder, database, start-up work."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from finetuneflow.services.logs import LOG_FILE_NAME, configure_logging
from finetuneflow.storage.db import make_engine, make_session_factory, upgrade_to_head
from finetuneflow.storage.home import Home
from finetuneflow.storage.transaction import Transaction

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker


@dataclass
class AppContext:
    home: Home
    engine: Engine
    sessions: sessionmaker[Session]

    @classmethod
    def open(cls, home: Home | None = None) -> AppContext:
        """Create the home folder, migrate the database to head, mark orphaned jobs interrupted."""
        from finetuneflow.services.jobs import JobService

        home = (home or Home.default()).ensure()
        configure_logging(home.logs_dir)
        engine = make_engine(home.db_path)
        upgrade_to_head(engine)
        context = cls(home, engine, make_session_factory(engine))
        JobService(context).mark_orphans_interrupted()
        return context

    @property
    def log_file(self) -> Path:
        return self.home.logs_dir / LOG_FILE_NAME

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """The repositories, in one transaction that commits on success and rolls back on
        error. Services work through this alone."""
        with self.sessions() as session, session.begin():
            yield Transaction(session)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A raw session for tests and tools that inspect the database; services use
        `transaction()`."""
        with self.sessions() as session, session.begin():
            yield session

    def release_database(self) -> None:
        """Fold the write-ahead log into the database file and close every pooled connection,
        so the file alone holds all the data (before it is copied)."""
        with self.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        self.engine.dispose()

    def switch_home(self, home: Home) -> None:
        """Work in another home folder from now on (after a storage move)."""
        self.engine.dispose()
        self.home = home.ensure()
        configure_logging(home.logs_dir)
        self.engine = make_engine(home.db_path)
        self.sessions = make_session_factory(self.engine)

    def close(self) -> None:
        self.engine.dispose()
