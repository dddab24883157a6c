"""Knowledge query latency over a large base: the query a `/v2/knowledge/{id}/query` runs once its
text is embedded (services/knowledge.py `search`: a large base's own HNSW index, a small base's
rows sorted exactly; cosine distance, metadata filters), without the embedding call (a provider's
round trip, not this server's work).

One embedded stack (tests/bench/stack.py: PostgreSQL without fsync, as the tests run it). A base of
256 dimensions (the simulator's lexical embeddings: api/simulator/embeddings.py) is filled by COPY
with `--chunks` chunks (default 100,000) of deterministic texts over a fixed vocabulary, ten per
document, each with metadata `{"group": 0..9}`; `--other-bases` more bases of the same dimension
(default 100) share `--other-chunks` more (default 100,000), and one more has `--edge-chunks`
(default 2,000: the exact-search threshold), as in a deployment where most bases are small. The
large base's own index is built after the fill, as the server builds it when a base crosses the
threshold (`knowledge.build_index`, CONCURRENTLY; here on the full base: faster than inserts into a
live index), then ANALYZE. Then `--queries` queries (default 200, after 20 unmeasured) of 3-6
vocabulary words, top_k 5: p50 and p95, unfiltered and with a metadata filter, on the large base,
the one at the threshold and one small one; the plan of one; the HNSW indexes and their sizes;
and how often the exact nearest chunk is the first hit (recall@1 against an exact scan, over 20
queries). Target: p95 <= 30 ms.

    python -m tests.bench.knowledge [--chunks N] [--other-chunks N] [--other-bases N]
        [--edge-chunks N] [--queries N]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from pgvector.asyncpg import register_vector
from sqlalchemy import text

from api.simulator.embeddings import embed
from core.db import Database
from core.db.knowledge import KnowledgeBase
from core.logging import configure_logging
from core.schemas.v2_knowledge import Filter
from core.settings import DatabaseTimeouts, LogFormat
from everloop.stack import Endpoints
from services import knowledge
from tests.bench.loop_latency import pct
from tests.bench.stack import run_on_fresh_stack

DIMENSIONS = 256
WORDS = [f"w{i:04d}" for i in range(4000)]


def chunk_text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 16)))


async def fill(endpoints: Endpoints, owner: uuid.UUID, bases: list[tuple[uuid.UUID, int]]) -> None:
    """`bases`: each base's id and its number of chunks."""
    rng = random.Random(7)
    conn = await asyncpg.connect(endpoints.database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await register_vector(conn)
        await conn.execute(
            "INSERT INTO users (id, email, role, email_verified, created_at, updated_at) "
            "VALUES ($1, $2, 'user', false, now(), now())",
            owner,
            f"bench-{owner.hex[:8]}@example.com",
        )
        started = time.perf_counter()
        total = 0
        for number, (base_id, chunks) in enumerate(bases):
            await conn.execute(
                "INSERT INTO knowledge_bases (id, owner_id, name, embedding_model, dimensions, chunk_size, "
                "chunk_overlap, created_at, updated_at) VALUES ($1, $2, $3, 'openai/sim', $4, 2000, 200, "
                "now(), now())",
                base_id,
                owner,
                f"bench-{number}",
                DIMENSIONS,
            )
            documents = [uuid.uuid4() for _ in range((chunks + 9) // 10)]
            now = datetime.now(UTC)
            await conn.copy_records_to_table(
                "knowledge_documents",
                records=[
                    (d, base_id, f"doc-{i}", f'{{"group": {i % 10}}}', now, now)
                    for i, d in enumerate(documents)
                ],
                columns=["id", "knowledge_base_id", "key", "metadata", "created_at", "updated_at"],
            )
            batch: list[tuple[object, ...]] = []
            for i in range(chunks):
                content = chunk_text(rng)
                group = (i // 10) % 10
                batch.append(
                    (
                        uuid.uuid4(),
                        base_id,
                        documents[i // 10],
                        i % 10,
                        content,
                        f'{{"group": {group}}}',
                        embed(content),
                    )
                )
                if len(batch) == 10_000 or i == chunks - 1:
                    await conn.copy_records_to_table(
                        "knowledge_chunks",
                        records=batch,
                        columns=[
                            "id",
                            "knowledge_base_id",
                            "document_id",
                            "position",
                            "content",
                            "metadata",
                            "embedding",
                        ],
                    )
                    total += len(batch)
                    batch = []
                    print(f"  {total:,} chunks", end="\r", flush=True)
        print(
            f"  {total:,} chunks in {len(bases)} bases in {time.perf_counter() - started:.1f} s", flush=True
        )
    finally:
        await conn.close()


async def measure(db: Database, base: KnowledgeBase, queries: list[str], what: str) -> None:
    group = [Filter(field="group", operation="=", value=3)]
    for label, filters in (("unfiltered", None), ("filter group=3", group)):
        timings = []
        for i, query in enumerate(queries):
            vector = embed(query)
            async with db.session() as session:
                started = time.perf_counter()
                found = await knowledge.search(session, base, vector, 5, filters)
                elapsed = (time.perf_counter() - started) * 1000
            assert found, query
            if i >= 20:
                timings.append(elapsed)
        print(
            f"{what}, query top_k=5, {label}: p50 {pct(timings, 50):.1f} ms, p95 {pct(timings, 95):.1f} ms "
            f"({len(timings)} queries; target p95 <= 30 ms)",
            flush=True,
        )


async def bench(endpoints: Endpoints, args: argparse.Namespace) -> None:
    owner, base_id = uuid.uuid4(), uuid.uuid4()
    others = max(args.other_bases, 0)
    small = [(uuid.uuid4(), args.other_chunks // others) for _ in range(others)] if others else []
    edge = [(uuid.uuid4(), args.edge_chunks)] if args.edge_chunks > 0 else []
    print(
        f"filling a base with {args.chunks:,} chunks of {DIMENSIONS} dimensions, {others} more with "
        f"{sum(n for _, n in small):,} and one with {args.edge_chunks:,}...",
        flush=True,
    )
    await fill(endpoints, owner, [(base_id, args.chunks), *small, *edge])
    # The index build over a full table takes longer than a request's statement timeout.
    db = Database(endpoints.database_url, timeouts=DatabaseTimeouts(statement_s=1800))
    try:
        async with db.session() as session:
            base = await session.get(KnowledgeBase, base_id)
            assert base is not None
            dsn = knowledge._dsn(session)
        started = time.perf_counter()
        assert await knowledge.build_index(dsn, base_id, DIMENSIONS, wait=True)
        print(f"the large base's HNSW index built in {time.perf_counter() - started:.1f} s", flush=True)
        async with db.session() as session:
            await session.execute(text("ANALYZE knowledge_chunks"))
            await session.commit()
            indexes = (
                await session.execute(
                    text(
                        "SELECT indexname, pg_size_pretty(pg_relation_size(indexname::regclass)) "
                        "FROM pg_indexes WHERE tablename = 'knowledge_chunks' "
                        "AND indexname LIKE 'ix_knowledge_chunks_hnsw_%'"
                    )
                )
            ).all()
        print(f"HNSW indexes: {len(indexes)} ({', '.join(f'{n} {size}' for n, size in indexes)})", flush=True)

        rng = random.Random(11)
        queries = [
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 6))) for _ in range(args.queries + 20)
        ]
        await measure(db, base, queries, f"base of {args.chunks:,} chunks")
        for other_id, chunks in [*edge, *small[:1]]:
            async with db.session() as session:
                other = await session.get(KnowledgeBase, other_id)
                assert other is not None
            await measure(db, other, queries, f"base of {chunks:,} chunks (exact)")

        async with db.session() as session:
            statement = knowledge.search_statement(base, 5, None).params(
                q=knowledge.vector_text(embed(queries[0]))
            )
            from sqlalchemy.dialects import postgresql

            sql = statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})  # type: ignore[no-untyped-call]
            plan = [r[0] for r in await session.execute(text(f"EXPLAIN ANALYZE {sql}"))]
        print("plan of one query:\n  " + "\n  ".join(plan), flush=True)

        hits = 0
        for query in queries[:20]:
            vector = embed(query)
            async with db.session() as session:
                (first,) = await knowledge.search(session, base, vector, 1)
                await session.execute(text("SET LOCAL enable_indexscan = off"))
                (exact,) = await knowledge.search(session, base, vector, 1)
            hits += first.score >= exact.score - 1e-6
        print(f"recall@1 against an exact scan: {hits}/20", flush=True)
    finally:
        await db.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.knowledge", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--chunks", type=int, default=100_000, help="chunks in the base (default 100,000)")
    parser.add_argument(
        "--other-chunks", type=int, default=100_000, help="chunks in the other bases (default 100,000)"
    )
    parser.add_argument("--other-bases", type=int, default=100, help="other bases (default 100)")
    parser.add_argument(
        "--edge-chunks",
        type=int,
        default=knowledge.EXACT_SEARCH_MAX_CHUNKS,
        help="chunks in one more base, searched exactly (default: the threshold, 2,000)",
    )
    parser.add_argument("--queries", type=int, default=200, help="measured queries per kind (default 200)")
    args = parser.parse_args(argv)
    configure_logging("WARNING", LogFormat.CONSOLE)

    async def run(endpoints: Endpoints, _data_dir: Path) -> None:
        await bench(endpoints, args)

    return run_on_fresh_stack(run)


if __name__ == "__main__":
    sys.exit(main())
