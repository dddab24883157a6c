"""indexes for the fork links (issue 14)

`replays.session_id` and `sessions.replay_id` are each the other's `ON DELETE SET NULL` key:
without an index, every session deleted scans `replays` (and every replay deleted `sessions`).

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-30 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0021'
down_revision: str | None = '0020'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        'ix_replays_session_id', 'replays', ['session_id'], unique=False,
        postgresql_where=sa.text('session_id IS NOT NULL'),
    )
    op.create_index(
        'ix_sessions_replay_id', 'sessions', ['replay_id'], unique=False,
        postgresql_where=sa.text('replay_id IS NOT NULL'),
    )


def downgrade() -> None:
    op.drop_index('ix_sessions_replay_id', table_name='sessions', postgresql_where=sa.text('replay_id IS NOT NULL'))
    op.drop_index('ix_replays_session_id', table_name='replays', postgresql_where=sa.text('session_id IS NOT NULL'))
