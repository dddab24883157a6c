"""the trace store: projects and their keys, traces, spans, span events, span metrics (issue 13)

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29 13:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql


revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EMPTY_OBJECT = sa.text("'{}'::jsonb")
EMPTY_LIST = sa.text("'[]'::jsonb")


def _timestamps() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        'projects',
        sa.Column('owner_id', sa.Uuid(), nullable=False),
        sa.Column('name', sa.Text(), nullable=False),
        sa.Column('description', sa.Text(), nullable=True),
        sa.Column('is_default', sa.Boolean(), server_default='false', nullable=False),
        *_timestamps(),
        sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_projects_owner_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_projects')),
    )
    op.create_index('ix_projects_owner_id', 'projects', ['owner_id'], unique=False)
    op.create_index('uq_projects_default_owner', 'projects', ['owner_id'], unique=True, postgresql_where=sa.text('is_default'))
    op.create_table(
        'project_keys',
        sa.Column('project_id', sa.Uuid(), nullable=False),
        sa.Column('prefix', sa.String(length=20), nullable=False),
        sa.Column('key_hash', sa.String(length=64), nullable=False),
        sa.Column('active', sa.Boolean(), server_default='true', nullable=False),
        sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_project_keys_project_id_projects'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_project_keys')),
        sa.UniqueConstraint('key_hash', name=op.f('uq_project_keys_key_hash')),
    )
    op.create_index('ix_project_keys_project_id', 'project_keys', ['project_id'], unique=False)
    op.create_table(
        'traces',
        sa.Column('owner_id', sa.Uuid(), nullable=False),
        sa.Column('project_id', sa.Uuid(), nullable=False),
        sa.Column('trace_id', sa.String(length=255), nullable=False),
        sa.Column('name', sa.Text(), nullable=True),
        sa.Column('status', sa.String(length=20), server_default='unset', nullable=False),
        sa.Column('metadata', postgresql.JSONB(astext_type=sa.Text()), server_default=EMPTY_OBJECT, nullable=False),
        sa.Column('external_id', sa.String(length=255), nullable=True),
        sa.Column('session_id', sa.String(length=255), nullable=True),
        sa.Column('agent_id', sa.Uuid(), nullable=True),
        sa.Column('user_id', sa.String(length=255), nullable=True),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('duration_ms', sa.BigInteger(), nullable=True),
        sa.Column('total_cost', sa.Numeric(precision=18, scale=8), server_default='0', nullable=False),
        sa.Column('input_tokens', sa.BigInteger(), server_default='0', nullable=False),
        sa.Column('output_tokens', sa.BigInteger(), server_default='0', nullable=False),
        sa.Column('models_used', postgresql.JSONB(astext_type=sa.Text()), server_default=EMPTY_LIST, nullable=False),
        sa.Column('span_count', sa.Integer(), server_default='0', nullable=False),
        sa.Column('step_count', sa.Integer(), server_default='0', nullable=False),
        sa.Column('error_count', sa.Integer(), server_default='0', nullable=False),
        *_timestamps(),
        sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_traces_owner_id_users'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_traces_project_id_projects'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_traces_agent_id_agents'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_traces')),
        sa.UniqueConstraint('owner_id', 'trace_id', name=op.f('uq_traces_owner_id_trace_id')),
    )
    op.create_index('ix_traces_owner_started', 'traces', ['owner_id', 'started_at'], unique=False)
    op.create_index('ix_traces_project_started', 'traces', ['project_id', 'started_at'], unique=False)
    op.create_index('ix_traces_owner_status', 'traces', ['owner_id', 'status'], unique=False)
    op.create_index('ix_traces_owner_cost', 'traces', ['owner_id', 'total_cost'], unique=False)
    op.create_index('ix_traces_owner_user', 'traces', ['owner_id', 'user_id'], unique=False)
    op.create_index('ix_traces_session_id', 'traces', ['session_id'], unique=False)
    op.create_index('ix_traces_models_used', 'traces', ['models_used'], unique=False, postgresql_using='gin')
    op.create_table(
        'spans',
        sa.Column('owner_id', sa.Uuid(), nullable=False),
        sa.Column('trace_pk', sa.Uuid(), nullable=False),
        sa.Column('span_id', sa.String(length=255), nullable=False),
        sa.Column('parent_span_id', sa.String(length=255), nullable=True),
        sa.Column('name', sa.Text(), nullable=False),
        sa.Column('kind', sa.String(length=60), server_default='custom', nullable=False),
        sa.Column('status', sa.String(length=20), server_default='unset', nullable=False),
        sa.Column('input', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column('output', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('metadata', postgresql.JSONB(astext_type=sa.Text()), server_default=EMPTY_OBJECT, nullable=False),
        sa.Column('start_time', sa.DateTime(timezone=True), nullable=True),
        sa.Column('end_time', sa.DateTime(timezone=True), nullable=True),
        sa.Column('model', sa.String(length=255), nullable=True),
        sa.Column('provider', sa.String(length=255), nullable=True),
        sa.Column('input_tokens', sa.BigInteger(), nullable=True),
        sa.Column('output_tokens', sa.BigInteger(), nullable=True),
        sa.Column('cost', sa.Numeric(precision=18, scale=8), nullable=True),
        sa.Column('source_event_id', sa.Uuid(), nullable=True),
        sa.Column('source_message_id', sa.Uuid(), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_spans_owner_id_users'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['trace_pk'], ['traces.id'], name=op.f('fk_spans_trace_pk_traces'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['source_event_id'], ['events.id'], name=op.f('fk_spans_source_event_id_events'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['source_message_id'], ['messages.id'], name=op.f('fk_spans_source_message_id_messages'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_spans')),
        sa.UniqueConstraint('trace_pk', 'span_id', name=op.f('uq_spans_trace_pk_span_id')),
    )
    op.create_index('ix_spans_trace_start', 'spans', ['trace_pk', 'start_time'], unique=False)
    op.create_index('ix_spans_owner_kind', 'spans', ['owner_id', 'kind'], unique=False)
    op.create_index('ix_spans_owner_status', 'spans', ['owner_id', 'status'], unique=False)
    op.create_table(
        'span_events',
        sa.Column('span_pk', sa.Uuid(), nullable=False),
        sa.Column('name', sa.Text(), nullable=False),
        sa.Column('timestamp', sa.DateTime(timezone=True), nullable=False),
        sa.Column('attributes', postgresql.JSONB(astext_type=sa.Text()), server_default=EMPTY_OBJECT, nullable=False),
        *_timestamps(),
        sa.ForeignKeyConstraint(['span_pk'], ['spans.id'], name=op.f('fk_span_events_span_pk_spans'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_span_events')),
    )
    op.create_index('ix_span_events_span_pk', 'span_events', ['span_pk'], unique=False)
    op.create_table(
        'span_metrics',
        sa.Column('span_pk', sa.Uuid(), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('value', sa.Float(), nullable=False),
        sa.Column('comment', sa.Text(), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(['span_pk'], ['spans.id'], name=op.f('fk_span_metrics_span_pk_spans'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_span_metrics')),
    )
    op.create_index('ix_span_metrics_span_pk', 'span_metrics', ['span_pk'], unique=False)


def downgrade() -> None:
    op.drop_table('span_metrics')
    op.drop_table('span_events')
    op.drop_table('spans')
    op.drop_table('traces')
    op.drop_table('project_keys')
    op.drop_table('projects')
