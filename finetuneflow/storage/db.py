"""The SQLite engine (WAL, foreign keys, busy timeout) and the Alembic upgrade at start-up."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, sessionmaker

from finetuneflow.core.resources import app_root

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


def migrations_dir() -> Path:
    """`migrations/` beside the package in a checkout, or inside the frozen bundle."""
    folder = app_root() / "migrations"
    if not (folder / "env.py").exists():
        raise MigrationError(f"the migrations folder is missing: {folder}")
    return folder


def alembic_config(connection: Connection | None = None, script_location: Path | None = None):
    """An Alembic Config built in code: the app ships no alembic.ini."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location or migrations_dir()))
    config.attributes["connection"] = connection
    return config


def upgrade_to_head(engine: Engine, script_location: Path | None = None) -> None:
    """Run pending migrations with foreign keys OFF, then check referential integrity.

    With foreign keys on, SQLite's batch rebuild of a parent table (copy, drop, rename) fires
    ON DELETE CASCADE and silently empties every child table.
    """
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


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
