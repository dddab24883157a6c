"""index for the stranded-turn sweep

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The sweeper's scan for turns that started and never ended: recent turn starts only.
    op.create_index('ix_events_turn_started_ts', 'events', ['ts'], unique=False, postgresql_where=sa.text("type = 'turn.started'"))


def downgrade() -> None:
    op.drop_index('ix_events_turn_started_ts', table_name='events', postgresql_where=sa.text("type = 'turn.started'"))
