"""one running job per project and kind

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 14:30:00

Older versions could leave two running jobs of one kind in a project (two windows, or a CLI
beside the GUI). All but the newest become interrupted, with their runs, before the partial
unique index is created.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INTERRUPTED_MESSAGE = "The app stopped while this job was running. Resume it to continue."

# Running jobs older than the newest running job of the same project and kind.
EXTRA_RUNNING = """
    SELECT id FROM jobs AS older WHERE status = 'running' AND EXISTS (
        SELECT 1 FROM jobs AS newer WHERE newer.status = 'running'
        AND newer.project_id = older.project_id AND newer.kind = older.kind
        AND newer.id > older.id)
"""


def upgrade() -> None:
    now = "datetime('now')"  # naive UTC, as the app writes
    connection = op.get_bind()
    connection.execute(sa.text(
        f"UPDATE runs SET status = 'interrupted', finished_at = {now} "
        f"WHERE job_id IN ({EXTRA_RUNNING})"))
    connection.execute(sa.text(
        f"UPDATE jobs SET status = 'interrupted', message = :message, owner_pid = NULL, "
        f"finished_at = {now}, updated_at = {now} WHERE id IN ({EXTRA_RUNNING})"),
        {"message": INTERRUPTED_MESSAGE})
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('uq_jobs_one_running', ['project_id', 'kind'], unique=True,
                              sqlite_where=sa.text("status = 'running'"))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('uq_jobs_one_running', sqlite_where=sa.text("status = 'running'"))
