"""sessions that end, and Opswald's events: `sessions.ended_at`, `external_sessions`, spans by id (issue 13)

`POST /v1/sessions/{id}/end` closes an agent session to new messages (`sessions.ended_at`) or marks
an outside app's session ended (`external_sessions`: such a session is its traces' `session_id`,
this row only says it ended). `GET /v1/events/{id}` finds an event, which is a span, by its id among
the owner's spans (`ix_spans_owner_span_id`).

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-29 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('sessions', sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        'external_sessions',
        sa.Column('owner_id', sa.Uuid(), nullable=False),
        sa.Column('session_id', sa.String(length=255), nullable=False),
        sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_external_sessions_owner_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_external_sessions')),
        sa.UniqueConstraint('owner_id', 'session_id', name=op.f('uq_external_sessions_owner_id_session_id')),
    )
    op.create_index('ix_spans_owner_span_id', 'spans', ['owner_id', 'span_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_spans_owner_span_id', table_name='spans')
    op.drop_table('external_sessions')
    op.drop_column('sessions', 'ended_at')
