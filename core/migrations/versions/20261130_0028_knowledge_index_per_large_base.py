"""knowledge: an HNSW index of its own for each large base, none per dimension (issue 15)

0025's one index per dimension made every query of a large base walk a graph of every base's
vectors (larger than shared_buffers, each candidate row fetched to test its base and filters: 3-7x
slower than 0023's per-base indexes), and every insert of every base pay for it, while small bases
were searched exactly anyway. Now a base of at most 2,000 chunks is searched exactly (its
`knowledge_base_id` btree) and a larger one has its own partial index, `USING hnsw
((embedding::vector(N)) vector_cosine_ops) WHERE knowledge_base_id = '<id>'` (halfvec past 2,000
dimensions, none past 4,000), named `ix_knowledge_chunks_hnsw_<id hex>`; services/knowledge.py
builds it (CONCURRENTLY, in the background) when a base grows past the threshold and drops it with
the base. This revision drops the per-dimension indexes and their statistics (nothing reads
`vector_dims(embedding)` any more) and builds the index of each live base already past the
threshold, here, in the migration's transaction (writes to the chunks wait meanwhile: a deploy's
migration, once). These indexes are not in the models: Alembic's autogenerate skips every
`ix_knowledge_chunks_hnsw_*` (core/db/knowledge.py `in_migrations`).

Revision ID: 0028
Revises: 0027
Create Date: 2026-11-30 01:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As services/knowledge.py knew them at this revision (a migration does not follow later code).
HNSW_MAX_VECTOR = 2000
HNSW_MAX_HALFVEC = 4000
EXACT_SEARCH_MAX_CHUNKS = 2_000
STATISTICS = "st_knowledge_chunks_dimensions"
PER_DIMENSION = r"^ix_knowledge_chunks_hnsw_d[0-9]+$"
PER_BASE = r"^ix_knowledge_chunks_hnsw_[0-9a-f]{32}$"


def _kind(n: int) -> tuple[str, str]:
    return ("vector", "vector_cosine_ops") if n <= HNSW_MAX_VECTOR else ("halfvec", "halfvec_cosine_ops")


def _drop_indexes(pattern: str) -> None:
    rows = op.get_bind().execute(
        sa.text("SELECT indexname FROM pg_indexes WHERE tablename = 'knowledge_chunks' AND indexname ~ :p"),
        {"p": pattern},
    )
    for (name,) in rows.all():
        op.execute(f'DROP INDEX IF EXISTS "{name}"')


def upgrade() -> None:
    _drop_indexes(PER_DIMENSION)
    op.execute(f"DROP STATISTICS IF EXISTS {STATISTICS}")
    large = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT b.id, b.dimensions FROM knowledge_bases b WHERE b.deleted_at IS NULL "
                "AND b.dimensions <= :most AND (SELECT count(*) FROM (SELECT 1 FROM knowledge_chunks c "
                "WHERE c.knowledge_base_id = b.id LIMIT :over) AS s) > :threshold"
            ),
            {
                "most": HNSW_MAX_HALFVEC,
                "over": EXACT_SEARCH_MAX_CHUNKS + 1,
                "threshold": EXACT_SEARCH_MAX_CHUNKS,
            },
        )
        .all()
    )
    if large:
        # A graph that outgrows maintenance_work_mem is built far more slowly (pgvector warns).
        op.execute("SET LOCAL maintenance_work_mem = '256MB'")
    for base_id, n in large:
        kind, ops = _kind(int(n))
        op.execute(
            f"CREATE INDEX IF NOT EXISTS ix_knowledge_chunks_hnsw_{base_id.hex} ON knowledge_chunks "
            f"USING hnsw ((embedding::{kind}({int(n)})) {ops}) WHERE knowledge_base_id = '{base_id}'::uuid"
        )


def downgrade() -> None:
    _drop_indexes(PER_BASE)
    op.execute(
        f"CREATE STATISTICS IF NOT EXISTS {STATISTICS} ON (vector_dims(embedding)) FROM knowledge_chunks"
    )
    rows = op.get_bind().execute(
        sa.text("SELECT DISTINCT dimensions FROM knowledge_bases WHERE deleted_at IS NULL ORDER BY 1")
    )
    for n in [int(n) for (n,) in rows if int(n) <= HNSW_MAX_HALFVEC]:
        kind, ops = _kind(n)
        op.execute(
            f"CREATE INDEX IF NOT EXISTS ix_knowledge_chunks_hnsw_d{n} ON knowledge_chunks USING hnsw "
            f"((embedding::{kind}({n})) {ops}) WHERE vector_dims(embedding) = {n}"
        )
