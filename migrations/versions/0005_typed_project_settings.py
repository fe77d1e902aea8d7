"""typed project settings: one column per section, the base model recorded once

Revision ID: 0005
Revises: 0004

The `settings` bag becomes columns: the base model's source and folder (beside `base_model`,
which held its reference twice), `chunking`, `llm`, `training`, `note` and `is_sample`.
Every value a person set moves; a value of the wrong kind (or unreadable JSON) is left out,
so that section takes its default. The values inside a section move as they are: the app
drops keys it does not know and falls back to the defaults for a section it cannot use, when
it reads them.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SECTIONS = ("chunking", "llm", "training")
SOURCES = ("hub", "local")

projects = sa.table(
    "projects",
    sa.column("id", sa.String), sa.column("base_model", sa.String),
    sa.column("base_model_source", sa.String), sa.column("base_model_folder", sa.String),
    sa.column("chunking", sa.JSON), sa.column("llm", sa.JSON), sa.column("training", sa.JSON),
    sa.column("note", sa.Text), sa.column("is_sample", sa.Boolean),
)


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("base_model_source", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("base_model_folder", sa.String(length=1000), nullable=True))
        for name in SECTIONS:
            batch.add_column(sa.Column(name, sa.JSON(), nullable=True))
        batch.add_column(sa.Column("note", sa.Text(), server_default="", nullable=False))
        batch.add_column(sa.Column("is_sample", sa.Boolean(), server_default="0",
                                   nullable=False))
    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT id, base_model, settings FROM projects")).all()
    for project_id, base_model, stored in rows:
        connection.execute(projects.update().where(projects.c.id == project_id)
                           .values(**_columns(base_model, _bag(stored))))
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("settings")
        batch.create_check_constraint("base_model_source",
                                      "base_model_source IN ('hub', 'local')")
        batch.create_check_constraint(
            "base_model_complete",
            "(base_model_source IS NULL) = (base_model_folder IS NULL) AND "
            "(base_model IS NOT NULL OR base_model_source IS NULL)")


def _bag(stored: Any) -> dict[str, Any]:
    """The old settings column as a dict; anything else (garbage) as an empty one."""
    if isinstance(stored, str):
        try:
            stored = json.loads(stored)
        except ValueError:
            return {}
    return stored if isinstance(stored, dict) else {}


def _columns(base_model: str | None, bag: dict[str, Any]) -> dict[str, Any]:
    model = bag.get("model") if isinstance(bag.get("model"), dict) else {}
    ref = base_model or (model.get("model") if isinstance(model.get("model"), str) else None)
    folder, source = model.get("folder"), model.get("source")
    # The folder belongs to the reference only if both were recorded together.
    known = (ref is not None and model.get("model") == ref and source in SOURCES
             and isinstance(folder, str) and folder != "")
    values: dict[str, Any] = {
        "base_model": ref,
        "base_model_source": source if known else None,
        "base_model_folder": folder if known else None,
        "note": bag["note"] if isinstance(bag.get("note"), str) else "",
        "is_sample": bag.get("sample") is True,
    }
    for name in SECTIONS:
        values[name] = bag[name] if isinstance(bag.get(name), dict) and bag[name] else None
    return values


def downgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("settings", sa.JSON(), server_default="{}", nullable=False))
    connection = op.get_bind()
    for row in connection.execute(sa.select(projects)).mappings().all():
        connection.execute(
            sa.text("UPDATE projects SET settings = :settings WHERE id = :id"),
            {"id": row["id"], "settings": json.dumps(_bag_of(row), ensure_ascii=False)})
    with op.batch_alter_table("projects") as batch:
        batch.drop_constraint("base_model_complete", type_="check")
        batch.drop_constraint("base_model_source", type_="check")
        batch.alter_column("settings", server_default=None)
        for name in ("base_model_source", "base_model_folder", *SECTIONS, "note", "is_sample"):
            batch.drop_column(name)


def _bag_of(row: Any) -> dict[str, Any]:
    bag: dict[str, Any] = {name: row[name] for name in SECTIONS if row[name] is not None}
    if row["base_model_folder"] is not None:
        bag["model"] = {"model": row["base_model"], "source": row["base_model_source"],
                        "folder": row["base_model_folder"]}
    if row["note"]:
        bag["note"] = row["note"]
    if row["is_sample"]:
        bag["sample"] = True
    return bag
