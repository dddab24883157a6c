"""OTLP out, at least once: `traces.exported_at` and the index of the turns still owed (issue 13)

A finished agent turn's trace gets `exported_at` once an OTLP backend took its spans; the worker's
sweep re-exports those still without it (`ix_traces_export_due`: agent turns whose status the end
set, not yet exported, by end time).

The turns that ended before this migration are marked exported now: a deployment that turns export
on (or that had it on, fire-and-forget, before) does not send its whole history to a backend. A turn
still running now ends later and is exported then.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-29 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Kept in step with core.db.traces.EXPORT_DUE (a migration does not import the models).
EXPORT_DUE = "exported_at IS NULL AND agent_id IS NOT NULL AND status <> 'unset'"
# The history: every ended agent turn, marked as if exported (only rows the sweep would pick).
MARK_EXISTING = f"UPDATE traces SET exported_at = now() WHERE {EXPORT_DUE}"


def upgrade() -> None:
    op.add_column("traces", sa.Column("exported_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(MARK_EXISTING)
    # After the marking: the index starts (nearly) empty instead of being updated row by row.
    op.create_index(
        "ix_traces_export_due", "traces", ["ended_at"], unique=False, postgresql_where=sa.text(EXPORT_DUE)
    )


def downgrade() -> None:
    op.drop_index("ix_traces_export_due", table_name="traces", postgresql_where=sa.text(EXPORT_DUE))
    op.drop_column("traces", "exported_at")
