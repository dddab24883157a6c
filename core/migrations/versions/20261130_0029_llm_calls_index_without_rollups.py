"""`ix_spans_llm_calls` leaves out roll-up spans, as the analytics' `calls` now do, so that read stays
index-only. A roll-up (a `/v2/call`'s span, which restates its model requests' usage) is marked by
its writer in its metadata (`{"rollup": true}`: core/schemas/traces.ROLLUP_MARK), not by its kind:
a client's span of type `call` is usage like any other. The `/v2/call` spans stored before the mark
get it here (they have the writer's metadata keys), and their traces' token and cost totals are
summed again without them.

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
COUNTED = """NOT (metadata @> '{"rollup": true}'::jsonb)"""
AFTER = f"model IS NOT NULL AND {COUNTED}"

# services/v2_calls.record's call spans: kind `call` with the metadata keys only that writer sets.
MARK = """
UPDATE spans SET metadata = metadata || '{"rollup": true}'::jsonb
WHERE kind = 'call' AND metadata -> 'cached' IS NOT NULL AND metadata -> 'models' IS NOT NULL
  AND metadata -> 'output_schema' IS NOT NULL AND NOT (metadata @> '{"rollup": true}'::jsonb)
"""
RESUM = f"""
UPDATE traces SET
    total_cost = agg.cost, input_tokens = agg.input_tokens, output_tokens = agg.output_tokens
FROM (
    SELECT trace_pk,
        coalesce(sum(cost) FILTER (WHERE {COUNTED}), 0) AS cost,
        coalesce(sum(input_tokens) FILTER (WHERE {COUNTED}), 0) AS input_tokens,
        coalesce(sum(output_tokens) FILTER (WHERE {COUNTED}), 0) AS output_tokens
    FROM spans
    WHERE trace_pk IN (
        SELECT trace_pk FROM spans WHERE kind = 'call' AND metadata @> '{{"rollup": true}}'::jsonb
    )
    GROUP BY trace_pk
) AS agg
WHERE traces.id = agg.trace_pk
"""  # noqa: S608 - constants only


def _index(where: str) -> None:
    op.create_index(
        "ix_spans_llm_calls",
        "spans",
        ["trace_pk"],
        postgresql_include=COLUMNS,
        postgresql_where=sa.text(where),
    )


def upgrade() -> None:
    op.execute(sa.text(MARK))
    op.execute(sa.text(RESUM))
    op.drop_index("ix_spans_llm_calls", table_name="spans")
    _index(AFTER)


def downgrade() -> None:
    # The marks stay: a metadata key the code before this revision does not read.
    op.drop_index("ix_spans_llm_calls", table_name="spans")
    _index(BEFORE)
