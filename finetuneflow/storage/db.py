"""The SQLite engine (WAL, foreign keys, busy timeout) and the Alembic upgrade at start-up."""

from __future__ import annotations

import ast
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, sessionmaker

from finetuneflow.core.resources import app_root
from finetuneflow.storage.transaction import Transaction

if TYPE_CHECKING:  # Alembic loads only when a migration runs (start-up time)
    from alembic.config import Config

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000


class MigrationError(RuntimeError):
    """The database could not be brought to the current schema."""


def _set_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(db_path: Path) -> Engine:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        f"sqlite:///{db_path}",
        # Worker threads share the engine; each uses its own connection from the pool.
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
        # Text as written (not \u escapes), so a search of the stored JSON finds "café".
        json_serializer=lambda value: json.dumps(value, ensure_ascii=False),
    )
    event.listen(engine, "connect", _set_pragmas)
    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


class Database:
    """The open database file: transactions over the repositories, and its release."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.engine = make_engine(path)
        self._sessions = make_session_factory(self.engine)

    @classmethod
    def open(cls, path: Path) -> Database:
        """Open the file (created if missing) and bring its schema to the head revision."""
        database = cls(path)
        upgrade_to_head(database.engine)
        return database

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """The repositories, in one transaction: committed on success, rolled back on error."""
        with self.session() as session:
            yield Transaction(session)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A raw session, for the repositories' tests and tools that inspect the database."""
        with self._sessions() as session, session.begin():
            yield session

    def release(self) -> None:
        """Fold the write-ahead log into the database file and close every pooled connection,
        so the file alone holds all the data (before it is copied)."""
        with self.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        self.engine.dispose()

    def close(self) -> None:
        self.engine.dispose()


def migrations_dir() -> Path:
    """`migrations/` beside the package in a checkout, or inside the frozen bundle."""
    folder = app_root() / "migrations"
    if not (folder / "env.py").exists():
        raise MigrationError(f"the migrations folder is missing: {folder}")
    return folder


def alembic_config(
    connection: Connection | None = None, script_location: Path | None = None
) -> Config:
    """An Alembic Config built in code: the app ships no alembic.ini."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location or migrations_dir()))
    config.attributes["connection"] = connection
    return config


def upgrade_to_head(engine: Engine, script_location: Path | None = None) -> None:
    """Run pending migrations with foreign keys OFF, then check referential integrity.

    With foreign keys on, SQLite's batch rebuild of a parent table (copy, drop, rename) fires
    ON DELETE CASCADE and silently empties every child table. A database already at the
    head revision is left alone without loading Alembic (a fifth of the start-up time).
    """
    if script_location is None:
        heads = head_revisions(migrations_dir())
        if heads and stored_revisions(engine) == heads:
            return
    from alembic import command

    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        try:
            command.upgrade(alembic_config(connection, script_location), "head")
            connection.commit()
            violations = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        finally:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
    if violations:
        raise MigrationError(f"foreign key check failed after migration: {violations[:5]}")


def head_revisions(versions_root: Path) -> set[str]:
    """The head revision ids, read from the migration files' `revision`/`down_revision`."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (versions_root / "versions").glob("*.py"):
        values = _assignments(path, ("revision", "down_revision"))
        if isinstance(values.get("revision"), str):
            revisions.add(values["revision"])
        down = values.get("down_revision")
        parents.update([down] if isinstance(down, str) else down or ())
    return revisions - parents


def _assignments(path: Path, names: tuple[str, ...]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        target: ast.expr
        value: ast.expr | None
        if isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in names and value is not None:
            values[target.id] = ast.literal_eval(value)
    return values


def stored_revisions(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        exists = connection.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='alembic_version'").first()
        if exists is None:
            return set()
        return {row[0] for row in connection.exec_driver_sql(
            "SELECT version_num FROM alembic_version")}


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
