"""knowledge: one HNSW index per embedding dimension instead of one per knowledge base; files'
download URLs (issue 15)

0023 gave each base its own partial HNSW index, so thousands of bases meant thousands of indexes on
`knowledge_chunks` (each one weighed by the planner for every query, each one scanning the table
when built). Now there is one partial expression index per dimension in use:
`USING hnsw ((embedding::vector(N)) vector_cosine_ops) WHERE vector_dims(embedding) = N` (halfvec
past 2,000 dimensions, none past 4,000), named `ix_knowledge_chunks_hnsw_d<N>`. The predicate is the
row's own dimension (`vector_dims` is immutable), so no row can be in the wrong index and no column
has to be kept in step. services/knowledge.py makes the index of a new dimension when the first base
of it is made; a query filters on the base and walks the index with pgvector 0.8's iterative scan.
The planner has no statistics of an expression that no index holds, so it would guess that 0.5% of
the chunks have a given dimension (and read a large base by its id and sort it whole): extended
statistics on `vector_dims(embedding)` (PostgreSQL 14) let ANALYZE count them.
A file's bytes are kept once it is processed (its download URL serves them): `download_key` signs
those URLs.
These indexes are not in the models: Alembic's autogenerate skips every `ix_knowledge_chunks_hnsw_*`
(core/db/knowledge.py `in_migrations`).

Revision ID: 0025
Revises: 0024
Create Date: 2026-11-30 00:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# pgvector's HNSW limits for `vector` and `halfvec` (as services/knowledge.py, kept here as this
# revision knew them: a migration does not follow later code).
HNSW_MAX_VECTOR = 2000
HNSW_MAX_HALFVEC = 4000
STATISTICS = "st_knowledge_chunks_dimensions"


def _drop_indexes(like: str) -> None:
    rows = op.get_bind().execute(
        sa.text(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'knowledge_chunks' AND indexname LIKE :like"
        ),
        {"like": like},
    )
    for (name,) in rows.all():
        op.execute(f'DROP INDEX IF EXISTS "{name}"')


def _live_dimensions() -> list[int]:
    rows = op.get_bind().execute(
        sa.text("SELECT DISTINCT dimensions FROM knowledge_bases WHERE deleted_at IS NULL ORDER BY 1")
    )
    return [int(n) for (n,) in rows if int(n) <= HNSW_MAX_HALFVEC]


def _kind(n: int) -> tuple[str, str]:
    return ("vector", "vector_cosine_ops") if n <= HNSW_MAX_VECTOR else ("halfvec", "halfvec_cosine_ops")


def upgrade() -> None:
    op.add_column("knowledge_files", sa.Column("download_key", sa.String(length=64), nullable=True))
    op.execute(
        f"CREATE STATISTICS IF NOT EXISTS {STATISTICS} ON (vector_dims(embedding)) FROM knowledge_chunks"
    )
    _drop_indexes(r"ix\_knowledge\_chunks\_hnsw\_%")
    for n in _live_dimensions():
        kind, ops = _kind(n)
        op.execute(
            f"CREATE INDEX IF NOT EXISTS ix_knowledge_chunks_hnsw_d{n} ON knowledge_chunks USING hnsw "
            f"((embedding::{kind}({n})) {ops}) WHERE vector_dims(embedding) = {n}"
        )


def downgrade() -> None:
    op.drop_column("knowledge_files", "download_key")
    op.execute(f"DROP STATISTICS IF EXISTS {STATISTICS}")
    _drop_indexes(r"ix\_knowledge\_chunks\_hnsw\_d%")
    rows = op.get_bind().execute(
        sa.text(
            "SELECT id, dimensions FROM knowledge_bases WHERE deleted_at IS NULL AND dimensions <= :most"
        ),
        {"most": HNSW_MAX_HALFVEC},
    )
    for base_id, n in rows:
        kind, ops = _kind(int(n))
        op.execute(
            f"CREATE INDEX ix_knowledge_chunks_hnsw_{base_id.hex} ON knowledge_chunks USING hnsw "
            f"((embedding::{kind}({n})) {ops}) WHERE knowledge_base_id = '{base_id}'::uuid"
        )
