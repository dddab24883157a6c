"""replays and drift alerts (issue 14)

`replays`: 001's replay with per-span mutations and Opswald's replays with a fork step and
controls, each a durable workflow whose progress, result and diffs are kept here. `drift_alerts`:
what the drift schedule found, one row per scope, model, metric and window.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-29 23:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql


revision: str = '0018'
down_revision: str | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _stamps() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        'replays',
        sa.Column('owner_id', sa.Uuid(), nullable=False),
        sa.Column('project_id', sa.Uuid(), nullable=False),
        sa.Column('trace_row_id', sa.Uuid(), nullable=True),
        sa.Column('original_trace_id', sa.String(length=255), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('mode', sa.String(length=20), server_default='auto', nullable=False),
        sa.Column('status', sa.String(length=20), server_default='pending', nullable=False),
        sa.Column('config', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column('created_by', sa.String(length=255), nullable=True),
        sa.Column('current_step', sa.Integer(), server_default='0', nullable=False),
        sa.Column('total_steps', sa.Integer(), server_default='0', nullable=False),
        sa.Column('result_trace_id', sa.String(length=255), nullable=True),
        sa.Column('result', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
        *_stamps(),
        sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_replays_owner_id_users'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_replays_project_id_projects'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['trace_row_id'], ['traces.id'], name=op.f('fk_replays_trace_row_id_traces'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_replays')),
    )
    op.create_index('ix_replays_owner_created', 'replays', ['owner_id', 'created_at'], unique=False)
    op.create_index('ix_replays_trace_row_id', 'replays', ['trace_row_id'], unique=False)
    op.create_table(
        'drift_alerts',
        sa.Column('owner_id', sa.Uuid(), nullable=False),
        sa.Column('project_id', sa.Uuid(), nullable=False),
        sa.Column('scope_kind', sa.String(length=20), nullable=False),
        sa.Column('scope', sa.String(length=255), nullable=False),
        sa.Column('model', sa.String(length=255), server_default='', nullable=False),
        sa.Column('metric', sa.String(length=40), nullable=False),
        sa.Column('severity', sa.String(length=10), nullable=False),
        sa.Column('baseline_value', sa.Float(), nullable=False),
        sa.Column('current_value', sa.Float(), nullable=False),
        sa.Column('test', sa.String(length=40), nullable=False),
        sa.Column('statistic', sa.Float(), nullable=True),
        sa.Column('p_value', sa.Float(), nullable=True),
        sa.Column('baseline_count', sa.Integer(), nullable=False),
        sa.Column('window_count', sa.Integer(), nullable=False),
        sa.Column('baseline_start', sa.DateTime(timezone=True), nullable=False),
        sa.Column('baseline_end', sa.DateTime(timezone=True), nullable=False),
        sa.Column('window_start', sa.DateTime(timezone=True), nullable=False),
        sa.Column('window_end', sa.DateTime(timezone=True), nullable=False),
        sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('details', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
        *_stamps(),
        sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_drift_alerts_owner_id_users'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_drift_alerts_project_id_projects'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_drift_alerts')),
        sa.UniqueConstraint(
            'owner_id', 'project_id', 'scope_kind', 'scope', 'model', 'metric', 'window_end',
            name='uq_drift_alerts_scope_metric_window',
        ),
    )
    op.create_index(
        'uq_drift_alerts_open', 'drift_alerts',
        ['owner_id', 'project_id', 'scope_kind', 'scope', 'model', 'metric'], unique=True,
        postgresql_where=sa.text('resolved_at IS NULL'),
    )
    op.create_index('ix_drift_alerts_owner_created', 'drift_alerts', ['owner_id', 'created_at'], unique=False)
    op.create_index(
        'ix_drift_alerts_unresolved', 'drift_alerts', ['owner_id'], unique=False,
        postgresql_where=sa.text('resolved_at IS NULL'),
    )


def downgrade() -> None:
    op.drop_index('ix_drift_alerts_unresolved', table_name='drift_alerts', postgresql_where=sa.text('resolved_at IS NULL'))
    op.drop_index('ix_drift_alerts_owner_created', table_name='drift_alerts')
    op.drop_index('uq_drift_alerts_open', table_name='drift_alerts', postgresql_where=sa.text('resolved_at IS NULL'))
    op.drop_table('drift_alerts')
    op.drop_index('ix_replays_trace_row_id', table_name='replays')
    op.drop_index('ix_replays_owner_created', table_name='replays')
    op.drop_table('replays')
