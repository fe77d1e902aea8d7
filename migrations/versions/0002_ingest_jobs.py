"""ingest jobs: adding documents is a job, so one runs at a time per project

Revision ID: 0002
Revises: 0001
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = ('preview', 'generate', 'train', 'eval', 'export')


def _job_kind(*kinds: str) -> sa.Enum:
    return sa.Enum(*kinds, name='job_kind', native_enum=False, create_constraint=True, length=16)


def upgrade() -> None:
    # SQLite cannot alter a CHECK constraint: the batch rebuilds the table with the wider one.
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.alter_column('kind', existing_type=_job_kind(*KINDS),
                              type_=_job_kind(*KINDS, 'ingest'), existing_nullable=False)


def downgrade() -> None:
    op.execute("DELETE FROM jobs WHERE kind = 'ingest'")
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.alter_column('kind', existing_type=_job_kind(*KINDS, 'ingest'),
                              type_=_job_kind(*KINDS), existing_nullable=False)
