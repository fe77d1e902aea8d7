"""Databases as an older version of the app left them, for the migration tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

from alembic import command

from finetuneflow.storage.db import alembic_config, make_engine

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy import Engine


def database_at(path: Path, revision: str) -> Engine:
    """A database file built by the migrations up to `revision`, with foreign keys off as the
    app runs them."""
    engine = make_engine(path)
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        command.upgrade(alembic_config(connection), revision)
        connection.commit()
    return engine


def downgrade_to(path: Path, revision: str) -> None:
    """Take the database file down to `revision`, with foreign keys off as the app migrates."""
    engine = make_engine(path)
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        command.downgrade(alembic_config(connection), revision)
        connection.commit()
    engine.dispose()
