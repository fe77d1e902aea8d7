"""Alembic environment: the app passes its own connection (see finetuneflow.storage.db)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from finetuneflow.storage.tables import Base

target_metadata = Base.metadata


def _configure_and_run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite alters tables by rebuilding them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    # Stand-alone use (`alembic -x db=PATH ...`), e.g. to write a new revision by hand.
    db_path = context.get_x_argument(as_dictionary=True).get("db", "finetuneflow.db")
    with create_engine(f"sqlite:///{db_path}").connect() as fresh:
        fresh.exec_driver_sql("PRAGMA foreign_keys=OFF")
        _configure_and_run(fresh)


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported")
run_migrations()
