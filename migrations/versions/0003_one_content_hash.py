"""one content hash: every example's hash recomputed, kept examples unique per project

Imported and edited rows were hashed with another normalisation than generated ones, so an
imported copy of a generated example went unnoticed. Every hash is recomputed with the one
function; of kept examples (not rejected, not preview) with equal content the earliest stays
and the others become rejected duplicates; then a partial unique index keeps it so.

Revision ID: 0003
Revises: 0002
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from finetuneflow.core.generation.quality import content_hash

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("finetuneflow.migrations")

INDEX = 'uq_dataset_examples_kept_content_hash'
KEPT = "status != 'rejected' AND split != 'preview'"

examples = sa.table(
    'dataset_examples', sa.column('id', sa.Integer), sa.column('project_id', sa.String),
    sa.column('messages', sa.Text), sa.column('status', sa.String), sa.column('split', sa.String),
    sa.column('reject_reason', sa.String), sa.column('content_hash', sa.String),
    sa.column('updated_at', sa.DateTime))


def upgrade() -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.select(
        examples.c.id, examples.c.project_id, examples.c.messages, examples.c.status,
        examples.c.split, examples.c.content_hash).order_by(examples.c.id)).all()
    now = datetime.now(UTC).replace(tzinfo=None)
    originals: dict[tuple[str, str], int] = {}
    duplicates = 0
    for row in rows:
        digest = content_hash(json.loads(row.messages))
        values: dict[str, object] = {'content_hash': digest}
        if row.status != 'rejected' and row.split != 'preview':
            original = originals.setdefault((row.project_id, digest), row.id)
            if original != row.id:
                values |= {'status': 'rejected', 'reject_reason': f'duplicate of {original}',
                           'updated_at': now}
                duplicates += 1
        if values != {'content_hash': row.content_hash}:
            connection.execute(examples.update().where(examples.c.id == row.id).values(**values))
    log.info("marked %d duplicate examples rejected", duplicates)
    with op.batch_alter_table('dataset_examples') as batch_op:
        batch_op.create_index(INDEX, ['project_id', 'content_hash'], unique=True,
                              sqlite_where=sa.text(KEPT))


def downgrade() -> None:
    with op.batch_alter_table('dataset_examples') as batch_op:
        batch_op.drop_index(INDEX)
