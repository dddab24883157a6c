"""`ix_spans_llm_calls` leaves out roll-up spans (a `/v2/call`'s span restates its model requests'
usage: core/schemas/traces.ROLLUP_KINDS), as the analytics' `calls` now do, so that read stays
index-only.

Revision ID: 0029
Revises: 0028
Create Date: 2026-11-30 01:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0029"
down_revision: str | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ["model", "cost", "input_tokens", "output_tokens", "start_time"]
BEFORE = "model IS NOT NULL"
# Written as the model (core/db/traces.py) and the analytics' query say it, so the planner matches it.
AFTER = "model IS NOT NULL AND kind NOT IN ('call')"


def _index(where: str) -> None:
    op.create_index(
        "ix_spans_llm_calls",
        "spans",
        ["trace_pk"],
        postgresql_include=COLUMNS,
        postgresql_where=sa.text(where),
    )


def upgrade() -> None:
    op.drop_index("ix_spans_llm_calls", table_name="spans")
    _index(AFTER)


def downgrade() -> None:
    op.drop_index("ix_spans_llm_calls", table_name="spans")
    _index(BEFORE)
