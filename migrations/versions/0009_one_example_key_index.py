"""one index over dataset examples' (hash key, project) in place of two

Revision ID: 0009
Revises: 0008

An import wrote every example into two indexes with random keys: by hash key, and the unique
one over kept examples' (project, hash key). One unique index over (hash key, project, 0 for a
kept example and NULL for any other) does the work of both (see KEPT_MARK in
storage/tables.py). Existing rows already satisfy it, since kept examples were unique per
project. The index by project stays: the review table pages through it in id order.
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
NEW_UNIQUE = 'uq_dataset_examples_hash_key_project'
OLD_UNIQUE = 'uq_dataset_examples_kept_hash_key'
OLD_INDEX = 'ix_dataset_examples_hash_key'


def upgrade() -> None:
    op.create_index(NEW_UNIQUE, 'dataset_examples', ['hash_key', 'project_id', sa.text(KEPT_MARK)],
                    unique=True)
    op.drop_index(OLD_UNIQUE, 'dataset_examples')
    op.drop_index(OLD_INDEX, 'dataset_examples')


def downgrade() -> None:
    op.create_index(OLD_INDEX, 'dataset_examples', ['hash_key'])
    op.create_index(OLD_UNIQUE, 'dataset_examples', ['project_id', 'hash_key'], unique=True,
                    sqlite_where=sa.text(KEPT))
    op.drop_index(NEW_UNIQUE, 'dataset_examples')
