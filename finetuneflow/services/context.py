"""The application context shared by the GUI and the CLI: home folder, database, start-up work."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from finetuneflow.services.logs import LOG_FILE_NAME, configure_logging
from finetuneflow.storage.db import Database
from finetuneflow.storage.home import Home

if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from pathlib import Path

    from finetuneflow.storage.transaction import Transaction


@dataclass
class AppContext:
    home: Home
    database: Database

    @classmethod
    def open(cls, home: Home | None = None) -> AppContext:
        """Create the home folder, migrate the database to head, mark orphaned jobs interrupted."""
        from finetuneflow.services.jobs import JobService

        home = (home or Home.default()).ensure()
        configure_logging(home.logs_dir)
        context = cls(home, Database.open(home.db_path))
        JobService(context).mark_orphans_interrupted()
        return context

    @property
    def log_file(self) -> Path:
        return self.home.logs_dir / LOG_FILE_NAME

    def transaction(self) -> AbstractContextManager[Transaction]:
        """The repositories, in one transaction that commits on success and rolls back on
        error. Services work through this alone."""
        return self.database.transaction()

    def release_database(self) -> None:
        """Fold the write-ahead log into the database file and close every connection."""
        self.database.release()

    def switch_home(self, home: Home) -> None:
        """Work in another home folder from now on (after a storage move)."""
        self.database.close()
        self.home = home.ensure()
        configure_logging(home.logs_dir)
        self.database = Database(home.db_path)

    def close(self) -> None:
        self.database.close()
