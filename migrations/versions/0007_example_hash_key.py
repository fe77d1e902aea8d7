"""examples indexed by an 8-byte key of their content hash instead of the 64-character text

Revision ID: 0007
Revises: 0005

The two indexes on the hex hash (one plain, one unique over kept examples) made a large import
slow: random 100-byte keys, every index page written again with each batch. Each example gets
`hash_key` (core/dataset/keys.py, computed here for existing rows) and the same two indexes
are built on it; kept examples stay unique per project, now by key.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from finetuneflow.core.dataset.keys import hash_key

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEPT = "status != 'rejected' AND split != 'preview'"
OLD_UNIQUE, NEW_UNIQUE = 'uq_dataset_examples_kept_content_hash', 'uq_dataset_examples_kept_hash_key'
OLD_INDEX, NEW_INDEX = 'ix_dataset_examples_content_hash', 'ix_dataset_examples_hash_key'
BATCH = 10_000


def upgrade() -> None:
    op.add_column('dataset_examples', sa.Column('hash_key', sa.BigInteger(), nullable=True))
    connection = op.get_bind()
    rows = connection.exec_driver_sql("SELECT id, content_hash FROM dataset_examples")
    while batch := rows.fetchmany(BATCH):
        connection.exec_driver_sql("UPDATE dataset_examples SET hash_key = ? WHERE id = ?",
                                   [(hash_key(digest), row_id) for row_id, digest in batch])
    with op.batch_alter_table('dataset_examples') as batch_op:
        batch_op.alter_column('hash_key', existing_type=sa.BigInteger(), nullable=False)
        batch_op.drop_index(OLD_UNIQUE)
        batch_op.drop_index(OLD_INDEX)
        batch_op.create_index(NEW_INDEX, ['hash_key'], unique=False)
        batch_op.create_index(NEW_UNIQUE, ['project_id', 'hash_key'], unique=True,
                              sqlite_where=sa.text(KEPT))


def downgrade() -> None:
    with op.batch_alter_table('dataset_examples') as batch_op:
        batch_op.drop_index(NEW_UNIQUE)
        batch_op.drop_index(NEW_INDEX)
        batch_op.create_index(OLD_INDEX, ['content_hash'], unique=False)
        batch_op.create_index(OLD_UNIQUE, ['project_id', 'content_hash'], unique=True,
                              sqlite_where=sa.text(KEPT))
        batch_op.drop_column('hash_key')
