"""`/v2` knowledge bases (issue 15): documents split into overlapping chunks (services/chunking.py),
embedded by the base's embedding model (services/embeddings.py) and searched by cosine similarity
in PostgreSQL with pgvector.

The index: exact for small bases, an HNSW index of its own for each large one. A base of at most
EXACT_SEARCH_MAX_CHUNKS chunks is read through the `knowledge_base_id` btree and sorted exactly (a
few ms, and exact). A base that grows past it gets its own partial expression index, built once:
`USING hnsw ((embedding::vector(N)) vector_cosine_ops) WHERE knowledge_base_id = '<id>'` (halfvec
past 2,000 dimensions, none past 4,000: such a base stays exact), named after the base
(`base_index_name`). So the number of HNSW indexes is the number of large bases, not of bases
(0023's one per base: thousands of indexes), and no base's query walks other bases' vectors
(0025's one per dimension: a shared graph larger than shared_buffers, each candidate row fetched
to test its base; 3-7x slower for a large base, and every insert paid for it). The build runs in a
task of the process that saw the base cross the threshold (`_schedule_build`), on a connection of
its own outside any transaction (CREATE INDEX CONCURRENTLY: adds and queries go on), under an
advisory lock (one builder per base across processes); until the index is valid the base is
searched exactly. A build that died midway leaves an invalid index: the next builder (the lock
held, so no build is running) drops it and builds again. Deleting a base drops its index.

A base is owned by its creator (another user's id answers 404, as every /v2 resource); deleting it
is soft (the row stays, its name is free again, its documents, chunks and files are deleted). An
owner has at most KNOWLEDGE_MAX_BASES_PER_OWNER live bases.

No transaction stays open while the embedding provider is called (a slow provider, or thousands of
chunks, would pass the database's idle-in-transaction timeout and hold row locks): the reads are
committed first, and the writes made in a fresh transaction that checks the base is still live."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import asyncpg
import structlog
from sqlalchemy import (
    ColumnElement,
    Numeric,
    Select,
    String,
    TextClause,
    and_,
    bindparam,
    delete,
    false,
    func,
    not_,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import Database
from core.db.knowledge import (
    HNSW_INDEX_PREFIX,
    KnowledgeBase,
    KnowledgeChunk,
    KnowledgeDocument,
    KnowledgeFile,
)
from core.db.models import LlmModel
from core.errors import Conflict, InvalidInput, NotFound, TooLarge
from core.identity import Identity
from core.schemas import v2_knowledge as schema
from core.schemas.v2_traces import ListMeta, V2Page
from services import chunking, embeddings
from services.model_calls import ModelAccess

# What Opper's SDK sends when its caller names no embedding model (its pydantic default): here it
# means the default embedding model, unless the caller has a model by that name.
SDK_DEFAULT_MODEL = "azure/text-embedding-3-large"
# HNSW's largest dimension for `vector` and for `halfvec` (pgvector).
HNSW_MAX_VECTOR = 2000
HNSW_MAX_HALFVEC = 4000
# Past this many characters a document is split in a worker thread, off the event loop.
SPLIT_IN_THREAD_CHARS = 100_000
# How many candidates the index walk gathers before the metadata filters and the limit (pgvector's
# `hnsw.ef_search`, at most 1000): a filtered query looks deeper so that filtering leaves top_k; the
# iterative scan then walks on, up to HNSW_MAX_SCAN_TUPLES visited rows (pgvector's
# `hnsw.max_scan_tuples`, its default), for a filter that few of the nearest rows pass.
EF_SEARCH = 40
EF_SEARCH_FILTERED = 100
MAX_EF_SEARCH = 1000
HNSW_MAX_SCAN_TUPLES = 20_000
# A base of at most this many chunks is searched exactly, a larger one gets its own HNSW index.
# Why 2,000: an exact search reads and sorts every chunk of the base, some 3-4 us a chunk on top of
# the query's fixed cost (make bench-knowledge, 256 dimensions, loaded machine: p50 11 ms at 1,000
# chunks, 39 ms and p95 67 ms at 10,000), so past a few thousand it misses the 30 ms target that a
# base's own HNSW walk meets at any size (p95 15 ms at 100,000). Below it an index would buy nothing
# and cost one more index (most bases are small: their count is what must stay low), and the exact
# answer is the right one.
EXACT_SEARCH_MAX_CHUNKS = 2_000
# Whether a base's own index is valid, as this process last looked (pg_index): a round trip less for
# each query of the same base within a minute. A base just grown past the threshold is searched
# exactly a minute longer in other processes (correct, only slower); the building process knows at once.
INDEX_CACHE_S = 60.0
INDEX_CACHE_SIZE = 10_000
_INDEXED: dict[uuid.UUID, tuple[bool, float]] = {}
# The index builds (and drops) this process runs, by base: one at a time per base here (the advisory
# lock does it across processes); the future says when it ended (tests and the benchmark wait on it).
_JOBS: dict[uuid.UUID, concurrent.futures.Future[bool]] = {}
_TASKS: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks
# The build's memory: an HNSW graph that outgrows maintenance_work_mem is built far more slowly
# (pgvector warns). A base is indexed as it crosses the threshold (2,000 vectors: a few MB), but one
# that grew while its build could not run (a migration's, a rebuild) may have 100,000 (some 130 MB
# at 256 dimensions): the default 64 MB is too small for it. One build at a time per base, seldom.
BUILD_MAINTENANCE_WORK_MEM = "256MB"
# Both keys of the per-base advisory lock are hashes: this namespace and the base's id.
LOCK_NAMESPACE = HNSW_INDEX_PREFIX
# Where upload URLs point (PUT/POST the bytes) and download URLs too (GET them): the path the
# authentication lets through (api/security.py), each URL carrying its own token.
UPLOADS_PATH = "/v2/knowledge/uploads"
# How long a file's download URL works (the SDK's "presigned URL": short-lived).
DOWNLOAD_URL_TTL_S = 300

log = structlog.get_logger("everloop.knowledge")


# ------------------------------------------------------------------------------------------- bases


def _uuid(value: str | uuid.UUID, what: str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"{what} not found") from None


async def _base(db: AsyncSession, owner_id: uuid.UUID, base_id: str | uuid.UUID) -> KnowledgeBase:
    row = await db.scalar(
        select(KnowledgeBase).where(
            KnowledgeBase.id == _uuid(base_id, "knowledge base"),
            KnowledgeBase.owner_id == owner_id,
            KnowledgeBase.deleted_at.is_(None),
        )
    )
    if row is None:
        raise NotFound("knowledge base not found")
    return row


async def _base_named(db: AsyncSession, owner_id: uuid.UUID, name: str) -> KnowledgeBase:
    row = await db.scalar(
        select(KnowledgeBase).where(
            KnowledgeBase.name == name, KnowledgeBase.owner_id == owner_id, KnowledgeBase.deleted_at.is_(None)
        )
    )
    if row is None:
        raise NotFound("knowledge base not found")
    return row


async def base_by_id_or_name(db: AsyncSession, owner_id: uuid.UUID, ref: str) -> KnowledgeBase:
    """A base by its id, else by its name (the capability's configuration takes either)."""
    try:
        return await _base(db, owner_id, uuid.UUID(ref))
    except (ValueError, NotFound):
        return await _base_named(db, owner_id, ref)


async def _counts(db: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    if not ids:
        return {}
    rows = await db.execute(
        select(KnowledgeDocument.knowledge_base_id, func.count())
        .where(KnowledgeDocument.knowledge_base_id.in_(ids))
        .group_by(KnowledgeDocument.knowledge_base_id)
    )
    return {base_id: count for base_id, count in rows.all()}


def _public(row: KnowledgeBase, count: int) -> schema.KnowledgeBase:
    return schema.KnowledgeBase(
        id=row.id,
        name=row.name,
        description=row.description,
        created_at=row.created_at,
        embedding_model=row.embedding_model,
        dimensions=row.dimensions,
        chunk_size=row.chunk_size,
        chunk_overlap=row.chunk_overlap,
        count=count,
    )


async def _embedding_model(db: AsyncSession, who: Identity, name: str | None) -> LlmModel:
    if name == SDK_DEFAULT_MODEL:
        from services import model_names

        found = await model_names.find_model(db, who.user_id, name, kind="embedding")
        return found if found is not None else await embeddings.model_named(db, who.user_id, None)
    return await embeddings.model_named(db, who.user_id, name)


async def _dimensions(access: ModelAccess, model: LlmModel) -> int:
    """The length of the model's vectors: its `dimensions` setting, else one short text embedded."""
    configured = model.settings.get("dimensions")
    if isinstance(configured, int) and configured > 0:
        return configured
    return len((await embeddings.embed(access, model, ["dimensions"])).vectors[0])


def base_index_name(base_id: uuid.UUID) -> str:
    """The name of a large base's own HNSW index (63 characters at most: the prefix and 32 hex)."""
    return f"{HNSW_INDEX_PREFIX}{base_id.hex}"


def _distance(base: KnowledgeBase) -> tuple[str, str]:
    """The indexed expression of a base's vectors and the cast of a query vector to match it."""
    n = base.dimensions
    kind = "vector" if n <= HNSW_MAX_VECTOR else "halfvec"
    return f"(embedding::{kind}({n}))", f"CAST(CAST(:q AS text) AS {kind}({n}))"


async def create_base(
    db: AsyncSession, access: ModelAccess, who: Identity, data: schema.CreateKnowledgeBase
) -> schema.KnowledgeBase:
    chunking.check_sizes(data.chunk_size, data.chunk_overlap)
    cap = access.settings.knowledge_max_bases_per_owner
    live = await db.scalar(
        select(func.count())
        .select_from(KnowledgeBase)
        .where(KnowledgeBase.owner_id == who.user_id, KnowledgeBase.deleted_at.is_(None))
    )
    if (live or 0) >= cap:
        raise Conflict(
            f"you have {cap} knowledge bases, the most one owner may have (KNOWLEDGE_MAX_BASES_PER_OWNER): "
            "delete one first"
        )
    model = await _embedding_model(db, who, data.embedding_model)
    await db.commit()  # no transaction open while the provider answers (the module's docstring)
    dimensions = await _dimensions(access, model)
    taken = Conflict(f"a knowledge base named {data.name!r} exists", field="name")
    if await db.scalar(
        select(KnowledgeBase.id).where(
            KnowledgeBase.owner_id == who.user_id,
            KnowledgeBase.name == data.name,
            KnowledgeBase.deleted_at.is_(None),
        )
    ):
        raise taken
    row = KnowledgeBase(
        owner_id=who.user_id,
        name=data.name,
        description=data.description,
        embedding_model_id=model.id,
        embedding_model=data.embedding_model
        if data.embedding_model and data.embedding_model != SDK_DEFAULT_MODEL
        else embeddings.model_name(model),
        dimensions=dimensions,
        chunk_size=data.chunk_size,
        chunk_overlap=data.chunk_overlap,
    )
    db.add(row)
    try:
        await db.flush()
    except IntegrityError:
        await db.rollback()  # the same name from a concurrent request, committed first
        raise taken from None
    await db.commit()  # no index yet: a new base is small, searched exactly
    return _public(row, 0)


# ------------------------------------------------------------------------------- a base's own index


def _indexable(dimensions: int) -> bool:
    return dimensions <= HNSW_MAX_HALFVEC  # past it HNSW takes no vectors: the base stays exact


def index_sql(base_id: uuid.UUID, dimensions: int, *, concurrently: bool = True) -> str:
    """The statement that builds a base's own index (also what migration 0028 ran, as it was then)."""
    kind, ops = (
        ("vector", "vector_cosine_ops")
        if dimensions <= HNSW_MAX_VECTOR
        else ("halfvec", "halfvec_cosine_ops")
    )
    how = "CONCURRENTLY " if concurrently else ""
    return (
        f"CREATE INDEX {how}IF NOT EXISTS {base_index_name(base_id)} ON knowledge_chunks USING hnsw "
        f"((embedding::{kind}({int(dimensions)})) {ops}) WHERE knowledge_base_id = '{base_id}'::uuid"
    )


def _dsn(db: AsyncSession) -> str:
    """The database's URL for a plain asyncpg connection of the build's own (see `build_index`)."""
    url = db.get_bind().engine.url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


async def _lock(conn: asyncpg.Connection, base_id: uuid.UUID, *, wait: bool) -> bool:
    args = (LOCK_NAMESPACE, str(base_id))
    if wait:
        await conn.execute("SELECT pg_advisory_lock(hashtext($1), hashtext($2))", *args)
        return True
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1), hashtext($2))", *args))


async def _connect(dsn: str) -> asyncpg.Connection:
    # Its own connection, not the pool's: CREATE/DROP INDEX CONCURRENTLY cannot run in a transaction,
    # a build may take longer than a request's statement_timeout (and than the pool's client-side
    # command timeout), and the session-level settings and advisory lock must not stay on a
    # connection that a request then borrows.
    return await asyncpg.connect(
        dsn,
        server_settings={
            "statement_timeout": "0",
            "lock_timeout": "0",
            "maintenance_work_mem": BUILD_MAINTENANCE_WORK_MEM,
        },
    )


async def build_index(dsn: str, base_id: uuid.UUID, dimensions: int, *, wait: bool = False) -> bool:
    """The base's own HNSW index, built unless it is there and valid; whether it is valid now.
    Under the base's advisory lock: without `wait`, a base another process is building is left to
    it (False). Holding the lock, an invalid index is a build that died midway (a crash, a
    cancelled statement: CONCURRENTLY leaves the half-made index behind, invalid, never used by a
    query but updated by every insert): it is dropped and built again. A base deleted meanwhile
    gets none (and loses one it had)."""
    if not _indexable(dimensions):
        return False
    name = base_index_name(base_id)
    conn = await _connect(dsn)
    try:
        if not await _lock(conn, base_id, wait=wait):
            return False
        try:
            live = await conn.fetchval(
                "SELECT deleted_at IS NULL FROM knowledge_bases WHERE id = $1", base_id
            )
            valid = await conn.fetchval(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)", name
            )
            if not live:
                await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
                return False
            if valid:
                return True
            if valid is False:
                log.warning("knowledge_index_invalid_rebuilt", base_id=str(base_id), index=name)
                await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            started = time.perf_counter()
            await conn.execute(index_sql(base_id, dimensions))
            # A delete that raced the build scheduled no drop: it passed the check above with
            # its transaction still open, or looked for the index before CONCURRENTLY's first
            # commit put it in the catalog. Either way it had deleted the base's chunks by then,
            # and CONCURRENTLY waits for every transaction writing the table: its commit is
            # visible now, and nothing else would ever drop this index.
            if not await conn.fetchval(
                "SELECT deleted_at IS NULL FROM knowledge_bases WHERE id = $1", base_id
            ):
                await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
                log.info("knowledge_index_dropped_base_deleted", base_id=str(base_id), index=name)
                return False
            log.info(
                "knowledge_index_built",
                base_id=str(base_id),
                index=name,
                seconds=round(time.perf_counter() - started, 2),
            )
            return True
        finally:
            await conn.execute(
                "SELECT pg_advisory_unlock(hashtext($1), hashtext($2))", LOCK_NAMESPACE, str(base_id)
            )
    finally:
        await conn.close()


async def drop_index(dsn: str, base_id: uuid.UUID) -> bool:
    """The deleted base's index dropped (its rows are gone: the index only costs its pages). Waits
    for a build of it to end first (the lock), so that none finishes after the drop."""
    conn = await _connect(dsn)
    try:
        await _lock(conn, base_id, wait=True)
        try:
            await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {base_index_name(base_id)}")
        finally:
            await conn.execute(
                "SELECT pg_advisory_unlock(hashtext($1), hashtext($2))", LOCK_NAMESPACE, str(base_id)
            )
    finally:
        await conn.close()
    return True


def index_job(base_id: uuid.UUID) -> concurrent.futures.Future[bool] | None:
    """This process's latest build or drop of the base's index (None: none ran here)."""
    return _JOBS.get(base_id)


def _in_background(
    base_id: uuid.UUID, job: Coroutine[Any, Any, bool], *, valid_after: bool
) -> concurrent.futures.Future[bool]:
    """`job` as a task of this process's loop, off the request: a build takes seconds, and CREATE
    INDEX CONCURRENTLY waits for every transaction older than its own to end, which no request
    should wait for. A process that dies midway leaves an invalid index (or none): the next query
    or add of the base schedules the build again (`_has_index`)."""
    done: concurrent.futures.Future[bool] = concurrent.futures.Future()
    _JOBS[base_id] = done

    async def run() -> None:
        try:
            result = await job
        except Exception as exc:
            log.exception("knowledge_index_job_failed", base_id=str(base_id))
            _INDEXED.pop(base_id, None)
            done.set_exception(exc)
            return
        if result and valid_after:
            _INDEXED[base_id] = (True, time.monotonic() + INDEX_CACHE_S)
        else:
            _INDEXED.pop(base_id, None)
        done.set_result(result)

    task = asyncio.get_running_loop().create_task(run())
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)
    return done


def _schedule_build(db: AsyncSession, base: KnowledgeBase) -> None:
    running = _JOBS.get(base.id)
    if running is not None and not running.done():
        return  # this process builds (or drops) it already
    _in_background(base.id, build_index(_dsn(db), base.id, base.dimensions), valid_after=True)


async def list_bases(
    db: AsyncSession, who: Identity, offset: int, limit: int
) -> V2Page[schema.KnowledgeBase]:
    live = and_(KnowledgeBase.owner_id == who.user_id, KnowledgeBase.deleted_at.is_(None))
    total = await db.scalar(select(func.count()).select_from(KnowledgeBase).where(live)) or 0
    rows = (
        await db.scalars(
            select(KnowledgeBase)
            .where(live)
            .order_by(KnowledgeBase.created_at, KnowledgeBase.id)
            .offset(offset)
            .limit(limit)
        )
    ).all()
    counts = await _counts(db, [r.id for r in rows])
    return V2Page(data=[_public(r, counts.get(r.id, 0)) for r in rows], meta=ListMeta(total_count=total))


async def get_base(db: AsyncSession, who: Identity, base_id: str) -> schema.KnowledgeBase:
    row = await _base(db, who.user_id, base_id)
    return _public(row, (await _counts(db, [row.id])).get(row.id, 0))


async def get_base_by_name(db: AsyncSession, who: Identity, name: str) -> schema.KnowledgeBase:
    row = await _base_named(db, who.user_id, name)
    return _public(row, (await _counts(db, [row.id])).get(row.id, 0))


async def delete_base(db: AsyncSession, who: Identity, base_id: str) -> None:
    row = await _base(db, who.user_id, base_id)
    row.deleted_at = datetime.now(UTC)
    # Deleted content is gone (only the base's row stays, soft-deleted): its documents (their chunks
    # cascade) and its files' records and bytes.
    await db.execute(delete(KnowledgeDocument).where(KnowledgeDocument.knowledge_base_id == row.id))
    await db.execute(delete(KnowledgeFile).where(KnowledgeFile.knowledge_base_id == row.id))
    indexed = await db.scalar(
        text("SELECT to_regclass(:name) IS NOT NULL"), {"name": base_index_name(row.id)}
    )
    await db.commit()
    _INDEXED.pop(row.id, None)
    if indexed:
        # Its own index (a large base's) goes too, once the deletion is committed (a build of it
        # running now ends first); in the background, as DROP INDEX CONCURRENTLY waits for the
        # transactions that use the table. A process dying before it leaves an index of no rows.
        _in_background(row.id, drop_index(_dsn(db), row.id), valid_after=False)


# --------------------------------------------------------------------------------------- documents


@dataclass(frozen=True)
class Chunked:
    pieces: list[str]
    vectors: list[list[float]]


def _sizes(base: KnowledgeBase, sizes: schema.TextProcessing | None) -> tuple[int, int]:
    size = (sizes.chunk_size if sizes else None) or base.chunk_size
    if sizes is None or sizes.chunk_overlap is None:
        overlap = min(base.chunk_overlap, size // 2)  # the base's default, for a smaller chunk given here
    else:
        overlap = sizes.chunk_overlap
    chunking.check_sizes(size, overlap)
    return size, overlap


async def _split(access: ModelAccess, content: str, size: int, overlap: int) -> list[str]:
    """The content's chunks, at most KNOWLEDGE_MAX_CHUNKS_PER_DOCUMENT (a 413 before any embedding)."""
    cap = access.settings.knowledge_max_chunks_per_document
    if len(content) > SPLIT_IN_THREAD_CHARS:
        return await asyncio.to_thread(chunking.split, content, size, overlap, cap)
    return chunking.split(content, size, overlap, cap)


async def _embedded(access: ModelAccess, model: LlmModel, dimensions: int, pieces: list[str]) -> Chunked:
    """The pieces' vectors; called with no transaction open (the module's docstring)."""
    if not pieces:
        return Chunked([], [])
    vectors = (await embeddings.embed(access, model, pieces)).vectors
    if any(len(v) != dimensions for v in vectors):
        raise InvalidInput(
            f"the embedding model now answers vectors of another length than the base's {dimensions}; "
            "make a new knowledge base for it",
            field="embedding_model",
        )
    return Chunked(pieces, vectors)


async def _model_of(db: AsyncSession, base: KnowledgeBase) -> LlmModel:
    model = await db.get(LlmModel, base.embedding_model_id) if base.embedding_model_id else None
    if model is None:
        raise InvalidInput(
            f"the base's embedding model {base.embedding_model!r} was deleted; make a new knowledge base",
            field="embedding_model",
        )
    # Re-checked on every use, as services/model_names.py `resolve` checks a named model: an admin
    # disables a model or its provider (a leaked key, a cost) to stop its calls, the bases' too.
    if model.status != "active" or model.provider.status != "active":
        what = "model" if model.status != "active" else "model's provider"
        raise InvalidInput(
            f"the base's embedding model {base.embedding_model!r} is disabled (the {what} is not active): "
            "an admin may enable it again",
            field="embedding_model",
        )
    return model


async def _store_document(
    db: AsyncSession,
    base: KnowledgeBase,
    key: str,
    metadata: dict[str, Any],
    chunked: Chunked,
    file_id: uuid.UUID | None = None,
) -> tuple[KnowledgeDocument, bool]:
    """The document under `key`, made or replaced (its chunks with it); the caller commits."""
    existing = await db.scalar(
        select(KnowledgeDocument)
        .where(KnowledgeDocument.knowledge_base_id == base.id, KnowledgeDocument.key == key)
        .with_for_update()
    )
    replaced_file: uuid.UUID | None = None
    if existing is None:
        document = KnowledgeDocument(knowledge_base_id=base.id, key=key, metadata_=metadata, file_id=file_id)
        db.add(document)
        await db.flush()
    else:
        document = existing
        await db.execute(delete(KnowledgeChunk).where(KnowledgeChunk.document_id == document.id))
        if document.file_id is not None and document.file_id != file_id:
            replaced_file = document.file_id
        document.metadata_ = metadata
        document.file_id = file_id
        document.updated_at = datetime.now(UTC)
        await db.flush()
    if replaced_file is not None:
        # The file whose document this was is replaced by the new content: its record goes.
        await db.execute(delete(KnowledgeFile).where(KnowledgeFile.id == replaced_file))
    if chunked.pieces:
        db.add_all(
            KnowledgeChunk(
                knowledge_base_id=base.id,
                document_id=document.id,
                position=i,
                content=piece,
                metadata_=metadata,
                embedding=vector,
            )
            for i, (piece, vector) in enumerate(zip(chunked.pieces, chunked.vectors, strict=True))
        )
        await db.flush()
    return document, existing is not None


async def add_document(
    db: AsyncSession, access: ModelAccess, who: Identity, base_id: str, data: schema.AddDocument
) -> schema.DocumentAdded:
    base = await _base(db, who.user_id, base_id)
    size, overlap = _sizes(base, data.configuration)
    model = await _model_of(db, base)
    await db.commit()  # reads done: no transaction open while the provider answers
    pieces = await _split(access, data.content, size, overlap)
    chunked = await _embedded(access, model, base.dimensions, pieces)
    base = await _base(db, who.user_id, base.id)  # a fresh transaction: still live?
    key = data.key or str(uuid.uuid4())
    try:
        document, replaced = await _store_document(db, base, key, data.metadata or {}, chunked)
        await db.commit()
    except IntegrityError:
        await db.rollback()  # the same key added by a concurrent request, committed first
        raise Conflict(
            f"the document {key!r} was added at the same time; add it again", field="key"
        ) from None
    await index_if_large(db, base)
    return schema.DocumentAdded(
        id=document.id, key=key, document_id=document.number, chunks=len(chunked.pieces), replaced=replaced
    )


async def get_document(db: AsyncSession, who: Identity, base_id: str, key: str) -> schema.Document:
    base = await _base(db, who.user_id, base_id)
    document = await db.scalar(
        select(KnowledgeDocument).where(
            KnowledgeDocument.knowledge_base_id == base.id, KnowledgeDocument.key == key
        )
    )
    if document is None:
        raise NotFound("document not found")
    chunks = (
        await db.execute(
            select(KnowledgeChunk.id, KnowledgeChunk.content)
            .where(KnowledgeChunk.document_id == document.id)
            .order_by(KnowledgeChunk.position)
        )
    ).all()
    return schema.Document(
        id=document.id,
        key=document.key,
        document_id=document.number,
        metadata=document.metadata_,
        segments=[schema.Segment(id=i, content=c) for i, c in chunks],
    )


async def delete_document(db: AsyncSession, who: Identity, base_id: str, key: str) -> None:
    base = await _base(db, who.user_id, base_id)
    gone = await db.execute(
        delete(KnowledgeDocument)
        .where(KnowledgeDocument.knowledge_base_id == base.id, KnowledgeDocument.key == key)
        .returning(KnowledgeDocument.id)
    )
    if gone.first() is None:
        raise NotFound("document not found")
    await db.commit()


async def delete_documents(
    db: AsyncSession, who: Identity, base_id: str, filters: list[schema.Filter] | None
) -> schema.Deleted:
    """The documents whose metadata passes every filter (all of them without filters); the base
    stays (Opper's SDK says no filters delete the base: here only its documents go)."""
    base = await _base(db, who.user_id, base_id)
    conditions = [KnowledgeDocument.knowledge_base_id == base.id]
    conditions += [_condition(KnowledgeDocument.metadata_, f) for f in filters or []]
    gone = await db.execute(delete(KnowledgeDocument).where(*conditions).returning(KnowledgeDocument.id))
    count = len(gone.all())
    await db.commit()
    return schema.Deleted(deleted_count=count)


# ------------------------------------------------------------------------------------------- query


def _condition(metadata: Any, f: schema.Filter) -> ColumnElement[bool]:
    """One filter on a JSONB metadata column. `=`/`!=`/`in` compare JSON values (`"1"` is not `1`);
    `>`/`<` compare numbers when the value is a number, else text."""
    return cast("ColumnElement[bool]", _filter(metadata, f))


def _filter(metadata: Any, f: schema.Filter) -> Any:
    field = metadata[f.field]
    if f.operation == "in":
        values = f.value if isinstance(f.value, list) else [f.value]
        return or_(*(metadata.contains({f.field: v}) for v in values)) if values else false()
    if isinstance(f.value, list):
        raise InvalidInput(f"filter {f.field!r}: a list needs the operation 'in'", field="filters")
    if f.operation == "=":
        return metadata.contains({f.field: f.value})
    if f.operation == "!=":
        return not_(metadata.contains({f.field: f.value}))
    if isinstance(f.value, int | float) and not isinstance(f.value, bool):
        number = func.jsonb_typeof(field) == "number"
        value = field.astext.cast(Numeric)
        return and_(number, value > f.value if f.operation == ">" else value < f.value)
    stringy = func.jsonb_typeof(field) == "string"
    return and_(stringy, field.astext > f.value if f.operation == ">" else field.astext < f.value)


def vector_text(vector: list[float]) -> str:
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


async def search(
    db: AsyncSession,
    base: KnowledgeBase,
    vector: list[float],
    top_k: int,
    filters: list[schema.Filter] | None = None,
    depth: int | None = None,
) -> list[schema.QueryResult]:
    """The `top_k` chunks nearest to `vector` (cosine) among those whose metadata passes `filters`."""
    if len(vector) != base.dimensions:
        raise InvalidInput(
            f"the query's vector has {len(vector)} dimensions, the base's {base.dimensions}", field="query"
        )
    if not any(vector):
        return []  # no direction (the simulator's vector of a text without words): nothing is near
    if await _has_index(db, base):
        ef = max(top_k, depth or 0, EF_SEARCH_FILTERED if filters else EF_SEARCH)
        # Past ef_search candidates an HNSW walk stops: a filtered query looks deeper, and goes on
        # walking until enough rows pass the filters (pgvector 0.8's iterative scan). Relaxed
        # order: the walk's rows come nearly in order, the few kept are sorted here (pgvector's
        # advice: faster than strict). One round trip for the three (`set_config(..., true)` is
        # `SET LOCAL`).
        await db.execute(
            text(
                "SELECT set_config('hnsw.ef_search', :ef, true), "
                "set_config('hnsw.iterative_scan', 'relaxed_order', true), "
                "set_config('hnsw.max_scan_tuples', :most, true)"
            ),
            {"ef": str(min(ef, MAX_EF_SEARCH)), "most": str(HNSW_MAX_SCAN_TUPLES)},
        )
    statement = search_statement(base, top_k, filters)
    found = sorted(
        (await db.execute(statement, {"q": vector_text(vector)})).all(),
        key=lambda row: (row[4] is None or row[4] != row[4], row[4] or 0.0),  # nearest first, NaN last
    )
    return [
        schema.QueryResult(id=i, key=key, content=content, metadata=metadata, score=_score(d))
        for i, key, content, metadata, d in found
    ]


async def _has_index(db: AsyncSession, base: KnowledgeBase) -> bool:
    """Whether the base has a valid index of its own (pg_index's `indisvalid`: one being built, or
    left invalid by a build that died, is not), remembered for INDEX_CACHE_S. A base without one
    that has more than EXACT_SEARCH_MAX_CHUNKS chunks gets its build scheduled: so a base that
    grew before this process looked, a build that died, or one a migration left to do, are all
    caught by the base's next query or add (the count stops past the threshold: at most 2,001 btree
    entries, a millisecond or two, and only when the index is not known to be valid)."""
    known = _INDEXED.get(base.id)
    now = time.monotonic()
    if known is not None and known[1] > now:
        return known[0]
    if not _indexable(base.dimensions):
        return False
    row = (
        await db.execute(
            text(
                "SELECT v.valid, CASE WHEN v.valid THEN NULL ELSE (SELECT count(*) FROM (SELECT 1 FROM "
                "knowledge_chunks WHERE knowledge_base_id = :base LIMIT :over) AS s) END FROM (SELECT "
                "(SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)) AS valid) AS v"
            ),
            {"base": base.id, "over": EXACT_SEARCH_MAX_CHUNKS + 1, "name": base_index_name(base.id)},
        )
    ).one()
    valid, count = bool(row[0]), row[1]
    if not valid and count is not None and count > EXACT_SEARCH_MAX_CHUNKS:
        _schedule_build(db, base)
    if len(_INDEXED) >= INDEX_CACHE_SIZE:
        _INDEXED.clear()  # rare (that many bases queried within a minute): start again
    _INDEXED[base.id] = (valid, now + INDEX_CACHE_S)
    return valid


async def index_if_large(db: AsyncSession, base: KnowledgeBase) -> None:
    """After an add's commit: a base that has just grown past EXACT_SEARCH_MAX_CHUNKS gets its index
    built (in the background: `_in_background` says why); ends the check's transaction."""
    if _INDEXED.get(base.id, (False, 0.0))[0]:
        return  # indexed already: nothing to check
    _INDEXED.pop(base.id, None)  # a fresh look: this add may be the one that crossed
    await _has_index(db, base)
    await db.commit()


def search_statement(base: KnowledgeBase, top_k: int, filters: list[schema.Filter] | None) -> Select[Any]:
    """The query of `search`, its vector the bound parameter `q` (`vector_text`). The base and the
    distance are the index's own predicate and expression, as literals: the planner can then walk a
    large base's own partial HNSW index (tests/api/test_v2_knowledge.py checks the plan). A base
    without a valid one is read by its `knowledge_base_id` index and sorted exactly."""
    conditions: list[ColumnElement[bool] | TextClause] = [
        text(f"knowledge_chunks.knowledge_base_id = '{base.id}'::uuid"),
    ]
    conditions += [_condition(KnowledgeChunk.metadata_, f) for f in filters or []]
    return (
        select(KnowledgeChunk.id, KnowledgeDocument.key, KnowledgeChunk.content, KnowledgeChunk.metadata_)
        .add_columns(text(f"{_distance_sql(base)} AS distance").bindparams(bindparam("q", type_=String())))
        .join(KnowledgeDocument, KnowledgeDocument.id == KnowledgeChunk.document_id)
        .where(*conditions)
        .order_by(text("distance"))
        .limit(top_k)
    )


def _distance_sql(base: KnowledgeBase) -> str:
    expression, query_cast = _distance(base)
    column = expression.replace("(embedding", "(knowledge_chunks.embedding", 1)
    return f"{column} <=> {query_cast}"


def _score(distance: float | None) -> float:
    if distance is None or distance != distance:  # NaN: a stored vector without direction
        return 0.0
    return round(1.0 - float(distance), 6)


async def query(
    db: AsyncSession, access: ModelAccess, who: Identity, base_id: str, data: schema.Query
) -> list[schema.QueryResult]:
    base = await _base(db, who.user_id, base_id)
    if not data.query.strip():
        return []
    model = await _model_of(db, base)
    await db.commit()  # no transaction open while the provider answers
    (vector,) = (await embeddings.embed(access, model, [data.query])).vectors
    return await search(db, base, vector, data.top_k, data.filters, data.prefilter_limit)


KnowledgeSearch = Callable[[str, str, int], Awaitable[list[dict[str, Any]]]]


def searcher(database: Database, access: ModelAccess, owner_id: uuid.UUID) -> KnowledgeSearch:
    """The `knowledge_search` capability's way in (capabilities/ cannot import services/): the
    agent owner's base by id or name, queried as `POST /v2/knowledge/{id}/query` does."""

    async def run(base_ref: str, text_query: str, top_k: int) -> list[dict[str, Any]]:
        async with database.session() as db:
            base = await base_by_id_or_name(db, owner_id, base_ref)
            model = await _model_of(db, base)
            if not text_query.strip():
                return []
            await db.commit()  # no transaction open while the provider answers
            (vector,) = (await embeddings.embed(access, model, [text_query])).vectors
            found = await search(db, base, vector, top_k)
            return [
                {"key": r.key, "content": r.content, "score": r.score, "metadata": r.metadata} for r in found
            ]

    return run


# ------------------------------------------------------------------------------------------- files


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _file_public(row: KnowledgeFile, number: int | None) -> schema.KnowledgeFile:
    return schema.KnowledgeFile(
        id=row.id,
        original_filename=row.original_filename,
        content_type=row.content_type,
        size=row.size,
        status=row.status,
        error=row.error,
        document_id=number or 0,
        metadata=row.metadata_,
        created_at=row.created_at,
    )


async def upload_url(
    db: AsyncSession, who: Identity, base_id: str, filename: str, server_url: str, ttl_s: int
) -> schema.UploadUrl:
    """A file record waiting for its bytes, and the URL that takes them: this server's, carrying a
    random token (only its hash is kept) that works once, until `ttl_s` from now."""
    base = await _base(db, who.user_id, base_id)
    if not filename.strip():
        raise InvalidInput("filename is required", field="filename")
    token = secrets.token_urlsafe(32)
    row = KnowledgeFile(
        knowledge_base_id=base.id,
        original_filename=filename[:1000],
        content_type="application/octet-stream",
        size=0,
        status="pending_upload",
        upload_token_hash=_token_hash(token),
        upload_expires_at=datetime.now(UTC) + timedelta(seconds=ttl_s),
    )
    db.add(row)
    await db.commit()
    url = f"{server_url.rstrip('/')}{UPLOADS_PATH}/{row.id}?token={token}"
    return schema.UploadUrl(url=url, fields={}, id=row.id, upload_id=row.id, expires_in=ttl_s)


def _waiting(row: KnowledgeFile | None, token: str) -> KnowledgeFile:
    """The file an upload URL's token opens. A wrong, used or expired token is a 404 (the URL names
    nothing its holder may see), as is an unknown id."""
    expected = row.upload_token_hash if row is not None else None
    if (
        row is None
        or expected is None
        or not hmac.compare_digest(expected, _token_hash(token))
        or row.status != "pending_upload"
        or row.upload_expires_at is None
        or row.upload_expires_at < datetime.now(UTC)
    ):
        raise NotFound("upload not found, or its URL expired")
    return row


async def check_upload(db: AsyncSession, file_id: str, token: str) -> None:
    """The token checked before the body is read (the upload route has no other credential):
    anyone else is a 404 without the server parsing what they sent."""
    row = await db.scalar(select(KnowledgeFile).where(KnowledgeFile.id == _uuid(file_id, "upload")))
    _waiting(row, token)
    await db.rollback()


async def receive_upload(
    db: AsyncSession, file_id: str, token: str, content_type: str | None, data: bytes, max_bytes: int
) -> schema.UploadAccepted:
    """The bytes sent to an upload URL (`_waiting` says which token opens it)."""
    row = _waiting(
        await db.scalar(
            select(KnowledgeFile)
            .where(KnowledgeFile.id == _uuid(file_id, "upload"))
            .with_for_update()
            .execution_options(populate_existing=True)
        ),
        token,
    )
    if len(data) > max_bytes:
        raise TooLarge(f"the file is larger than {max_bytes} bytes (KNOWLEDGE_MAX_FILE_BYTES)")
    row.data = data
    row.size = len(data)
    if content_type:
        row.content_type = content_type[:200]
    row.status = "uploaded"
    row.upload_token_hash = None  # once
    await db.commit()
    return schema.UploadAccepted(id=row.id, size=row.size, status=row.status)


async def _process(
    db: AsyncSession,
    access: ModelAccess,
    base: KnowledgeBase,
    row: KnowledgeFile,
    sizes: schema.TextProcessing | None,
    metadata: dict[str, Any],
) -> KnowledgeDocument:
    """The file's text as a document keyed by its file name (a later file of the same name
    replaces it); a failure is kept on the file (`failed`, `error`) and raised. Its text is
    extracted (a PDF in a child process with a deadline: its pages cost CPU) and embedded with no
    transaction open; the store then re-reads the base (still live) and the file (still
    `uploaded`: a concurrent registration of the same file that stored first wins, this one is a
    409)."""
    file_id, filename, content_type = row.id, row.original_filename, row.content_type
    try:
        size, overlap = _sizes(base, sizes)
        model = await _model_of(db, base)
        data = await db.scalar(select(KnowledgeFile.data).where(KnowledgeFile.id == file_id)) or b""
        await db.commit()
        content = await chunking.text_of(filename, content_type, data)
        pieces = await _split(access, content, size, overlap)
        if not pieces:
            raise InvalidInput("the file has no text to add", field="file")
        chunked = await _embedded(access, model, base.dimensions, pieces)
        base = await _base(db, base.owner_id, base.id)
        locked = await db.scalar(
            select(KnowledgeFile)
            .where(KnowledgeFile.id == file_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if locked is None:
            raise NotFound("file not found")
        if locked.status != "uploaded":
            raise Conflict(f"the file is {locked.status} already", field="file_id")
        merged = {"filename": filename, "file_id": str(file_id), **metadata}
        locked.metadata_ = metadata
        document, _ = await _store_document(db, base, filename, merged, chunked, file_id)
    except Exception as exc:
        await db.rollback()
        message = getattr(exc, "message", None) or f"{type(exc).__name__}"
        await db.execute(
            update(KnowledgeFile)
            # Only a file still waiting: not the one a concurrent registration has processed.
            .where(KnowledgeFile.id == file_id, KnowledgeFile.status == "uploaded")
            .values(status="failed", error=message, data=None, metadata_=metadata)
        )
        await db.commit()
        raise
    locked.status = "processed"
    locked.error = None  # its bytes stay: its download URL serves them
    await db.commit()
    await index_if_large(db, base)
    return document


async def register_file(
    db: AsyncSession, access: ModelAccess, who: Identity, base_id: str, data: schema.RegisterFile
) -> schema.FileRegistered:
    base = await _base(db, who.user_id, base_id)
    row = await db.scalar(
        select(KnowledgeFile)
        .where(KnowledgeFile.id == data.file_id, KnowledgeFile.knowledge_base_id == base.id)
        .with_for_update()
    )
    if row is None:
        raise NotFound("file not found")
    if row.status != "uploaded":
        raise Conflict(
            "the file's bytes have not been uploaded to its upload URL"
            if row.status == "pending_upload"
            else f"the file is {row.status} already",
            field="file_id",
        )
    row.original_filename = data.filename[:1000]
    if data.content_type and data.content_type != "application/octet-stream":
        row.content_type = data.content_type
    document = await _process(db, access, base, row, data.configuration, data.metadata or {})
    return schema.FileRegistered(
        id=row.id,
        key=document.key,
        original_filename=row.original_filename,
        document_id=document.number,
        metadata=row.metadata_,
    )


async def upload_file(
    db: AsyncSession,
    access: ModelAccess,
    who: Identity,
    base_id: str,
    filename: str,
    content_type: str,
    data: bytes,
    sizes: schema.TextProcessing,
    metadata: dict[str, Any],
    max_bytes: int,
) -> schema.FileRegistered:
    base = await _base(db, who.user_id, base_id)
    if len(data) > max_bytes:
        raise TooLarge(f"the file is larger than {max_bytes} bytes (KNOWLEDGE_MAX_FILE_BYTES)")
    row = KnowledgeFile(
        knowledge_base_id=base.id,
        original_filename=(filename or "upload")[:1000],
        content_type=(content_type or "application/octet-stream")[:200],
        size=len(data),
        status="uploaded",
        data=data,
    )
    db.add(row)
    await db.commit()  # kept even when its processing fails (then `failed`, with the error)
    document = await _process(db, access, base, row, sizes, metadata)
    return schema.FileRegistered(
        id=row.id,
        key=document.key,
        original_filename=row.original_filename,
        document_id=document.number,
        metadata=row.metadata_,
    )


async def list_files(
    db: AsyncSession, who: Identity, base_id: str, offset: int, limit: int
) -> V2Page[schema.KnowledgeFile]:
    base = await _base(db, who.user_id, base_id)
    mine = KnowledgeFile.knowledge_base_id == base.id
    total = await db.scalar(select(func.count()).select_from(KnowledgeFile).where(mine)) or 0
    rows = (
        await db.execute(
            select(KnowledgeFile, KnowledgeDocument.number)
            .outerjoin(KnowledgeDocument, KnowledgeDocument.file_id == KnowledgeFile.id)
            .where(mine)
            .order_by(KnowledgeFile.created_at, KnowledgeFile.id)
            .offset(offset)
            .limit(limit)
        )
    ).all()
    return V2Page(data=[_file_public(r, n) for r, n in rows], meta=ListMeta(total_count=total))


async def delete_file(db: AsyncSession, who: Identity, base_id: str, file_id: str) -> None:
    """The file and the document made from it (with its chunks)."""
    base = await _base(db, who.user_id, base_id)
    gone = await db.execute(
        delete(KnowledgeFile)
        .where(KnowledgeFile.id == _uuid(file_id, "file"), KnowledgeFile.knowledge_base_id == base.id)
        .returning(KnowledgeFile.id)
    )
    if gone.first() is None:
        raise NotFound("file not found")
    await db.commit()


# --------------------------------------------------------------------------------------- downloads


def _download_signature(key: str, file_id: uuid.UUID, expires: int) -> str:
    return hmac.new(key.encode(), f"{file_id}:{expires}".encode(), hashlib.sha256).hexdigest()


async def download_url(
    db: AsyncSession, who: Identity, base_id: str, file_id: str, server_url: str
) -> schema.FileDownloadUrl:
    """A URL of this server that answers the file's stored bytes for DOWNLOAD_URL_TTL_S seconds,
    without other credentials: `<expiry>.<HMAC of the file id and expiry>` under the file's own
    key (so any number of URLs work at once, and deleting the file ends them all). A file whose
    bytes are not kept (still waiting for its upload, failed, or processed before bytes were kept)
    has none: a 404 saying so."""
    base = await _base(db, who.user_id, base_id)
    row = await db.scalar(
        select(KnowledgeFile)
        .where(KnowledgeFile.id == _uuid(file_id, "file"), KnowledgeFile.knowledge_base_id == base.id)
        .with_for_update()
    )
    if row is None:
        raise NotFound("file not found")
    stored = await db.scalar(select(KnowledgeFile.data.is_not(None)).where(KnowledgeFile.id == row.id))
    if row.status not in ("uploaded", "processed") or not stored:
        raise NotFound(
            f"the file's bytes are not kept (it is {row.status}; a failed file's bytes are dropped, "
            "and a file processed before this server kept them has none)"
        )
    if row.download_key is None:
        row.download_key = secrets.token_hex(32)
    key = row.download_key
    await db.commit()
    expires = int(datetime.now(UTC).timestamp()) + DOWNLOAD_URL_TTL_S
    token = f"{expires}.{_download_signature(key, row.id, expires)}"
    url = f"{server_url.rstrip('/')}{UPLOADS_PATH}/{row.id}?token={token}"
    return schema.FileDownloadUrl(url=url, expires_in=DOWNLOAD_URL_TTL_S)


@dataclass(frozen=True)
class Download:
    filename: str
    content_type: str
    data: bytes


async def download(db: AsyncSession, file_id: str, token: str) -> Download:
    """The bytes a download URL's token opens; a wrong or expired token is a 404, as an unknown id.
    The token is checked before the bytes are read: this route has no other credential, so a
    forged token must not make the server read up to KNOWLEDGE_MAX_FILE_BYTES from the database."""
    missing = NotFound("file not found, or its URL expired")
    expires_text, _, signature = token.partition(".")
    try:
        expires = int(expires_text)
    except ValueError:
        raise missing from None
    if expires < datetime.now(UTC).timestamp():
        raise missing
    found = (
        await db.execute(
            select(
                KnowledgeFile.id,
                KnowledgeFile.download_key,
                KnowledgeFile.original_filename,
                KnowledgeFile.content_type,
            ).where(KnowledgeFile.id == _uuid(file_id, "file"))
        )
    ).first()
    if (
        found is None
        or found.download_key is None
        or not hmac.compare_digest(_download_signature(found.download_key, found.id, expires), signature)
    ):
        await db.rollback()
        raise missing
    data = await db.scalar(select(KnowledgeFile.data).where(KnowledgeFile.id == found.id))
    await db.rollback()
    if data is None:
        raise missing
    return Download(found.original_filename, found.content_type, data)
