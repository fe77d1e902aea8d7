"""where a project trains: this computer or a machine of Settings → Machines

Revision ID: 0008
Revises: 0007

`projects.train_on` holds the machine's name (machines.json in the home folder keeps the
machine itself); NULL, the value of every existing project, means this computer.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN: no rebuild of the projects table (its children stay untouched).
    op.add_column('projects', sa.Column('train_on', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('projects') as batch:
        batch.drop_column('train_on')
