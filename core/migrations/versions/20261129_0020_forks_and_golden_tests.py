"""forked sessions and golden tests (issue 14)

`sessions.replay_id`: the Opswald replay a session was forked for (its turn runs the real agent
loop with the replay's modifications). `golden_tests`: a pinned trace with its expected outcome;
`golden_runs` and `golden_results`: a run of some of them, one verdict per test.

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-30 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql


revision: str = '0020'
down_revision: str | None = '0019'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _stamps() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    ]


def _json(name: str, default: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text(f"'{default}'::jsonb"), nullable=False)


def upgrade() -> None:
    op.add_column('sessions', sa.Column('replay_id', sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f('fk_sessions_replay_id_replays'), 'sessions', 'replays', ['replay_id'], ['id'], ondelete='SET NULL'
    )
    op.add_column('replays', sa.Column('session_id', sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f('fk_replays_session_id_sessions'), 'replays', 'sessions', ['session_id'], ['id'], ondelete='SET NULL'
    )
    op.create_table(
        'golden_tests',
        sa.Column('owner_id', sa.Uuid(), nullable=False),
        sa.Column('project_id', sa.Uuid(), nullable=False),
        sa.Column('trace_row_id', sa.Uuid(), nullable=True),
        sa.Column('trace_id', sa.String(length=255), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('description', sa.Text(), nullable=True),
        _json('tags', '[]'),
        _json('expected_outcome', '{}'),
        sa.Column('created_by', sa.String(length=255), nullable=True),
        *_stamps(),
        sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_golden_tests_owner_id_users'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_golden_tests_project_id_projects'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['trace_row_id'], ['traces.id'], name=op.f('fk_golden_tests_trace_row_id_traces'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_golden_tests')),
    )
    op.create_index('ix_golden_tests_owner_created', 'golden_tests', ['owner_id', 'created_at'], unique=False)
    op.create_table(
        'golden_runs',
        sa.Column('owner_id', sa.Uuid(), nullable=False),
        sa.Column('status', sa.String(length=20), server_default='pending', nullable=False),
        _json('test_ids', '[]'),
        _json('modifications', '{}'),
        sa.Column('total_tests', sa.Integer(), server_default='0', nullable=False),
        sa.Column('passed', sa.Integer(), server_default='0', nullable=False),
        sa.Column('failed', sa.Integer(), server_default='0', nullable=False),
        sa.Column('created_by', sa.String(length=255), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
        *_stamps(),
        sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_golden_runs_owner_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_golden_runs')),
    )
    op.create_index('ix_golden_runs_owner_created', 'golden_runs', ['owner_id', 'created_at'], unique=False)
    op.create_table(
        'golden_results',
        sa.Column('run_id', sa.Uuid(), nullable=False),
        sa.Column('test_id', sa.Uuid(), nullable=True),
        sa.Column('test_name', sa.String(length=255), nullable=False),
        sa.Column('trace_id', sa.String(length=255), nullable=False),
        sa.Column('replay_id', sa.Uuid(), nullable=True),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=20), server_default='pending', nullable=False),
        _json('checks', '[]'),
        _json('diff', '[]'),
        sa.Column('final_output', sa.Text(), nullable=True),
        sa.Column('cost', sa.Numeric(18, 8), nullable=True),
        sa.Column('duration_ms', sa.Integer(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        *_stamps(),
        sa.ForeignKeyConstraint(['run_id'], ['golden_runs.id'], name=op.f('fk_golden_results_run_id_golden_runs'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['test_id'], ['golden_tests.id'], name=op.f('fk_golden_results_test_id_golden_tests'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['replay_id'], ['replays.id'], name=op.f('fk_golden_results_replay_id_replays'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_golden_results')),
        sa.UniqueConstraint('run_id', 'position', name='uq_golden_results_run_position'),
    )


def downgrade() -> None:
    op.drop_table('golden_results')
    op.drop_index('ix_golden_runs_owner_created', table_name='golden_runs')
    op.drop_table('golden_runs')
    op.drop_index('ix_golden_tests_owner_created', table_name='golden_tests')
    op.drop_table('golden_tests')
    op.drop_constraint(op.f('fk_replays_session_id_sessions'), 'replays', type_='foreignkey')
    op.drop_column('replays', 'session_id')
    op.drop_constraint(op.f('fk_sessions_replay_id_replays'), 'sessions', type_='foreignkey')
    op.drop_column('sessions', 'replay_id')
