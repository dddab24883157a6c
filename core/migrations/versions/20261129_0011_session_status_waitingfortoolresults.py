"""session status `waitingfortoolresults` (issue 12)

A turn that waits for a client's results of client-side tool calls shows the session as
`waitingfortoolresults`, Everruns' name for it: 21 characters, one more than the column held.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column('sessions', 'status', existing_type=sa.String(length=20), type_=sa.String(length=32), existing_nullable=False, existing_server_default='started')


def downgrade() -> None:
    # A session still waiting cannot keep that status in the narrower column: it goes back to idle.
    op.execute("UPDATE sessions SET status = 'idle' WHERE status = 'waitingfortoolresults'")
    op.alter_column('sessions', 'status', existing_type=sa.String(length=32), type_=sa.String(length=20), existing_nullable=False, existing_server_default='started')
