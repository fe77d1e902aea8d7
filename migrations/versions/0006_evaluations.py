"""evaluations: a finished run's model against its base, per question

Revision ID: 0006
Revises: 0005

Two new tables: `evaluations` (one per evaluation of a run: settings, losses, what the judge
cost, status) and `evaluation_questions` (one row per question: both answers, their scores and
the judge's two verdicts), unique by (evaluation, question key) so a resume never repeats one.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VERDICT_CHECK = "{0} IS NULL OR {0} IN ('A', 'B', 'tie')"


def upgrade() -> None:
    op.create_table(
        'evaluations',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.Column('job_id', sa.Integer(), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('judge', sa.Boolean(), nullable=False),
        sa.Column('max_questions', sa.Integer(), nullable=True),
        sa.Column('max_new_tokens', sa.Integer(), nullable=False),
        sa.Column('base_eval_loss', sa.Float(), nullable=True),
        sa.Column('tuned_eval_loss', sa.Float(), nullable=True),
        sa.Column('base_perplexity', sa.Float(), nullable=True),
        sa.Column('tuned_perplexity', sa.Float(), nullable=True),
        sa.Column('judge_requests', sa.Integer(), nullable=False),
        sa.Column('judge_tokens', sa.Integer(), nullable=False),
        sa.Column('message', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.Column('finished_at', sa.DateTime(), nullable=True),
        sa.CheckConstraint("status IN ('running', 'stopped', 'succeeded', 'failed')",
                           name=op.f('ck_evaluations_status')),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='SET NULL',
                                name=op.f('fk_evaluations_job_id_jobs')),
        sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE',
                                name=op.f('fk_evaluations_run_id_runs')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_evaluations')),
    )
    with op.batch_alter_table('evaluations') as batch:
        batch.create_index(batch.f('ix_evaluations_run_id'), ['run_id'], unique=False)
        batch.create_index(batch.f('ix_evaluations_job_id'), ['job_id'], unique=False)
    op.create_table(
        'evaluation_questions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('evaluation_id', sa.Integer(), nullable=False),
        sa.Column('key', sa.String(length=80), nullable=False),
        sa.Column('ordinal', sa.Integer(), nullable=False),
        sa.Column('example_id', sa.Integer(), nullable=True),
        sa.Column('prompt', sa.JSON(), nullable=False),
        sa.Column('question', sa.Text(), nullable=False),
        sa.Column('reference', sa.Text(), nullable=True),
        sa.Column('passage', sa.Text(), nullable=True),
        sa.Column('base_answer', sa.Text(), nullable=True),
        sa.Column('tuned_answer', sa.Text(), nullable=True),
        sa.Column('base_f1', sa.Float(), nullable=True),
        sa.Column('tuned_f1', sa.Float(), nullable=True),
        sa.Column('base_rouge_l', sa.Float(), nullable=True),
        sa.Column('tuned_rouge_l', sa.Float(), nullable=True),
        sa.Column('base_grounded', sa.Boolean(), nullable=True),
        sa.Column('tuned_grounded', sa.Boolean(), nullable=True),
        sa.Column('base_first_winner', sa.String(length=8), nullable=True),
        sa.Column('base_first_reason', sa.Text(), nullable=True),
        sa.Column('tuned_first_winner', sa.String(length=8), nullable=True),
        sa.Column('tuned_first_reason', sa.Text(), nullable=True),
        sa.Column('outcome', sa.String(length=8), nullable=True),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.CheckConstraint(VERDICT_CHECK.format('base_first_winner'),
                           name=op.f('ck_evaluation_questions_base_first_winner')),
        sa.CheckConstraint(VERDICT_CHECK.format('tuned_first_winner'),
                           name=op.f('ck_evaluation_questions_tuned_first_winner')),
        sa.CheckConstraint("outcome IS NULL OR outcome IN ('win', 'tie', 'loss')",
                           name=op.f('ck_evaluation_questions_outcome')),
        sa.ForeignKeyConstraint(['evaluation_id'], ['evaluations.id'], ondelete='CASCADE',
                                name=op.f('fk_evaluation_questions_evaluation_id_evaluations')),
        sa.ForeignKeyConstraint(['example_id'], ['dataset_examples.id'], ondelete='SET NULL',
                                name=op.f('fk_evaluation_questions_example_id_dataset_examples')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_evaluation_questions')),
    )
    with op.batch_alter_table('evaluation_questions') as batch:
        batch.create_index(batch.f('ix_evaluation_questions_evaluation_id'), ['evaluation_id'],
                           unique=False)
        batch.create_index(batch.f('ix_evaluation_questions_example_id'), ['example_id'],
                           unique=False)
        batch.create_index('uq_evaluation_questions_key', ['evaluation_id', 'key'], unique=True)


def downgrade() -> None:
    op.drop_table('evaluation_questions')
    op.drop_table('evaluations')
