"""The SQLite engine (WAL, foreign keys, busy timeout) and the Alembic upgrade at start-up."""

from __future__ import annotations

import ast
import json
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from finetuneflow.core.errors import UserError
from finetuneflow.core.resources import app_root
from finetuneflow.storage.transaction import Transaction

if TYPE_CHECKING:  # Alembic loads only when a migration runs (start-up time)
    from alembic.config import Config

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000
BACKUP_INFIX = ".before-upgrade-"  # finetuneflow.db.before-upgrade-0004-20261203-120000
BACKUPS_KEPT = 3


class MigrationError(RuntimeError):
    """The database could not be brought to the current schema."""


class DatabaseDamaged(UserError):
    """The database file is not a database, or SQLite finds it damaged."""

    def __init__(self, path: Path, detail: str) -> None:
        backups = sorted(path.parent.glob(f"{path.name}{BACKUP_INFIX}*"))
        restore = (f"or put back the copy made before the last upgrade, {backups[-1].name}"
                   if backups else "or restore it from your own backup")
        super().__init__(
            f"The database {path} is damaged ({detail}). Your documents and models in "
            f"{path.parent / 'storage'} are untouched. Close FineTuneFlow, move the damaged "
            f"file aside and start again to begin with an empty list ({restore}); "
            "`finetuneflow doctor` lists the project folders it finds.")


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
        """Open the file (created if missing) and bring its schema to the head revision. A
        file that is not a database, or a damaged one, raises DatabaseDamaged."""
        database = cls(path)
        try:
            upgrade_to_head(database.engine)
        except DBAPIError as error:
            database.close()
            if not is_damage(error):
                raise
            raise DatabaseDamaged(path, str(error.orig)) from error
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

    def integrity_problems(self) -> list[str]:
        """What SQLite's integrity check finds (at most 20 lines); empty when all is well."""
        with self.engine.connect() as connection:
            rows = [row[0] for row in connection.exec_driver_sql("PRAGMA integrity_check(20)")]
        return [] if rows == ["ok"] else [str(row) for row in rows]

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

    backup = back_up_before_upgrade(engine)
    kept = f"; the database as it was before is in {backup}" if backup else ""
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        try:
            command.upgrade(alembic_config(connection, script_location), "head")
            connection.commit()
            violations = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        except DBAPIError as error:
            if is_damage(error):
                raise  # Database.open says so
            raise MigrationError(f"the database could not be upgraded ({error.orig}){kept}"
                                 ) from error
        finally:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
    if violations:
        raise MigrationError(
            f"foreign key check failed after migration: {violations[:5]}{kept}")


def is_damage(error: DBAPIError) -> bool:
    """SQLite's "file is not a database" or "database disk image is malformed", as opposed to
    a busy or locked file (OperationalError), which is no damage."""
    return isinstance(error.orig, sqlite3.DatabaseError) and not isinstance(
        error.orig, sqlite3.OperationalError)


def back_up_before_upgrade(engine: Engine) -> Path | None:
    """A consistent copy of a database that holds data (SQLite's online backup), taken before
    its schema changes, named after its revision; the newest few are kept. None when there is
    nothing to keep (a new, empty database)."""
    path = Path(engine.url.database or "")
    revisions = stored_revisions(engine)
    if not revisions or not path.is_file():
        return None
    target = path.with_name(f"{path.name}{BACKUP_INFIX}{'-'.join(sorted(revisions))}-"
                            f"{datetime.now(UTC):%Y%m%d-%H%M%S}")
    source, copy = sqlite3.connect(path), sqlite3.connect(target)
    try:
        source.backup(copy)
        copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside
    finally:
        source.close()
        copy.close()
    for old in sorted(path.parent.glob(f"{path.name}{BACKUP_INFIX}*"))[:-BACKUPS_KEPT]:
        old.unlink(missing_ok=True)
    log.info("copied the database to %s before upgrading it", target)
    return target


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
