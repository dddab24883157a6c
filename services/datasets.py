"""Opper's datasets (`/v2/datasets`): each managed function's examples, `{input, output, expected,
comment}`. A dataset is its owner's or absent (another owner's id answers 404). Entries' inputs are
embedded when written, for the semantic query and for the few-shot examples of the function's
calls (services/functions)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import msgspec
import structlog
from sqlalchemy import ColumnElement, Select, Text, cast, func, select
from sqlalchemy import update as sql_update
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.functions import Dataset, DatasetEntry, Function
from core.db.models import LlmModel
from core.db.traces import Span
from core.errors import InvalidInput, NotFound
from core.identity import Identity
from core.schemas import v2_functions as schema
from core.schemas.v2_traces import ListMeta, V2Page
from services import embeddings, model_calls

log = structlog.get_logger("everloop.datasets")

DEFAULT_TOP_K = 5
# Entries embedded per query at most: a dataset's entries are embedded when first searched (not
# when written, so a write never waits on an embedding provider); a large import is embedded over
# a few queries instead of holding one.
EMBED_PER_QUERY = 2048


def as_text(value: Any) -> str:
    """An entry's value as the SDK reads it (a string), and as it is embedded: a string stays
    itself, anything else is its JSON (keys sorted, so equal values embed alike)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def to_schema(e: DatasetEntry) -> schema.Entry:
    return schema.Entry(
        id=e.id,
        dataset_id=e.dataset_id,
        input=as_text(e.input),
        output=as_text(e.output),
        expected=None if e.expected is None else as_text(e.expected),
        comment=e.comment,
        created_at=e.created_at,
        updated_at=e.updated_at,
    )


def _live() -> Select[Dataset]:
    """The datasets whose function is not deleted (a deleted function's dataset answers 404 with
    it)."""
    return (
        select(Dataset)
        .join(Function, Function.id == Dataset.function_id, isouter=True)
        .where(Function.deleted_at.is_(None))
    )


async def owned(db: AsyncSession, who: Identity, dataset_id: uuid.UUID) -> Dataset:
    found = await db.scalar(_live().where(Dataset.id == dataset_id, Dataset.owner_id == who.user_id))
    if found is None:
        raise NotFound("dataset not found")
    return found


async def _entry(db: AsyncSession, who: Identity, dataset_id: uuid.UUID, entry_id: uuid.UUID) -> DatasetEntry:
    dataset = await owned(db, who, dataset_id)
    found = await db.scalar(
        select(DatasetEntry).where(DatasetEntry.id == entry_id, DatasetEntry.dataset_id == dataset.id)
    )
    if found is None:
        raise NotFound("dataset entry not found")
    return found


async def add(
    db: AsyncSession,
    dataset: Dataset,
    input: Any,
    output: Any,
    expected: Any = None,
    comment: str | None = None,
) -> DatasetEntry:
    """Stores an entry in a dataset the caller has checked is theirs."""
    entry = DatasetEntry(
        dataset_id=dataset.id, input=input, output=output, expected=expected, comment=comment
    )
    db.add(entry)
    await db.commit()
    await db.refresh(entry)
    return entry


async def create(
    db: AsyncSession, who: Identity, dataset_id: uuid.UUID, data: schema.CreateEntry
) -> schema.Entry:
    dataset = await owned(db, who, dataset_id)
    return to_schema(await add(db, dataset, data.input, data.output, data.expected, data.comment))


async def get(db: AsyncSession, who: Identity, dataset_id: uuid.UUID, entry_id: uuid.UUID) -> schema.Entry:
    return to_schema(await _entry(db, who, dataset_id, entry_id))


async def list_entries(
    db: AsyncSession, who: Identity, dataset_id: uuid.UUID, offset: int, limit: int
) -> V2Page[schema.Entry]:
    dataset = await owned(db, who, dataset_id)
    where = DatasetEntry.dataset_id == dataset.id
    total = await db.scalar(select(func.count()).select_from(DatasetEntry).where(where))
    rows = await db.scalars(
        select(DatasetEntry)
        .where(where)
        .order_by(DatasetEntry.created_at, DatasetEntry.id)
        .offset(offset)
        .limit(limit)
    )
    return V2Page(data=[to_schema(e) for e in rows], meta=ListMeta(total_count=total or 0))


async def update(
    db: AsyncSession, who: Identity, dataset_id: uuid.UUID, entry_id: uuid.UUID, data: schema.UpdateEntry
) -> schema.Entry:
    entry = await _entry(db, who, dataset_id, entry_id)
    for field in ("input", "output", "expected", "comment"):
        value = getattr(data, field)
        if value is not msgspec.UNSET:
            setattr(entry, field, value)
    if data.input is not msgspec.UNSET:
        # A new input: its old vector no longer says what it is.
        entry.embedding = None
        entry.embedding_model = None
    await db.commit()
    await db.refresh(entry)
    return to_schema(entry)


async def delete(db: AsyncSession, who: Identity, dataset_id: uuid.UUID, entry_id: uuid.UUID) -> None:
    entry = await _entry(db, who, dataset_id, entry_id)
    await db.delete(entry)
    await db.commit()


async def save_span(db: AsyncSession, who: Identity, span_id: str) -> schema.SavedExample:
    """`POST /v2/spans/{id}/save_examples`: a call span of one of the caller's functions becomes
    an entry of that function's dataset (its input, and its output as the output). The span must
    be the caller's (else 404) and a function's call (its metadata names the function: a plain
    `/v2/call` has no dataset, 400)."""
    span = await db.scalar(
        select(Span)
        .where(Span.owner_id == who.user_id, Span.span_id == span_id)
        .order_by(Span.updated_at.desc())
    )
    if span is None:
        raise NotFound("span not found")
    function_id = (span.metadata_ or {}).get("function_id")
    if span.kind != "call" or not isinstance(function_id, str):
        raise InvalidInput("the span is not a call of a function: only those have a dataset to save to")
    try:
        # Span metadata is the caller's to write (POST /v2/spans, OTLP): not necessarily a UUID.
        function_pk = uuid.UUID(function_id)
    except ValueError:
        raise InvalidInput(
            "the span is not a call of a function: its function_id is no function's id"
        ) from None
    if span.error or span.status == "error":
        raise InvalidInput("the call failed: it has no output to save")
    dataset = await db.scalar(
        _live().where(Dataset.function_id == function_pk, Dataset.owner_id == who.user_id)
    )
    if dataset is None:
        raise NotFound("the span's function has no dataset")
    entry = await add(db, dataset, span.input, span.output)
    saved = to_schema(entry)
    return schema.SavedExample(
        dataset_id=dataset.id,
        dataset_entry_id=entry.id,
        input=saved.input,
        output=saved.output,
        expected=saved.expected,
        comment=saved.comment,
    )


# ------------------------------------------------------------------------------------ semantic query


def _fingerprint() -> ColumnElement[str]:
    """What an entry's input is, to tell whether it changed while it was being embedded."""
    return func.coalesce(func.md5(cast(DatasetEntry.input, Text)), "")


async def _embed_missing(
    db: AsyncSession, access: model_calls.ModelAccess, model: LlmModel, dataset_id: uuid.UUID
) -> None:
    """Embeds the dataset's entries that have no vector of `model` yet (new, changed, or embedded
    by another model before). No transaction stays open while the provider answers (it may take
    longer than DB_IDLE_IN_TRANSACTION_TIMEOUT, which would end the session and lose the work):
    read, commit, embed, then write in a fresh transaction, each vector only where the entry's
    input is still the one embedded."""
    name = embeddings.model_name(model)
    missing = (
        await db.execute(
            select(DatasetEntry.id, DatasetEntry.input, _fingerprint())
            .where(
                DatasetEntry.dataset_id == dataset_id,
                (DatasetEntry.embedding_model.is_distinct_from(name)) | DatasetEntry.embedding.is_(None),
            )
            .order_by(DatasetEntry.created_at)
            .limit(EMBED_PER_QUERY)
        )
    ).all()
    await db.commit()
    if not missing:
        return
    done = await embeddings.embed(access, model, [as_text(given) for _, given, _ in missing])
    for (entry_id, _, fingerprint), vector in zip(missing, done.vectors, strict=True):
        await db.execute(
            sql_update(DatasetEntry)
            .where(DatasetEntry.id == entry_id, _fingerprint() == fingerprint)
            .values(embedding=vector, embedding_model=name)
        )
    await db.commit()


async def nearest(
    db: AsyncSession,
    who: Identity,
    access: model_calls.ModelAccess,
    dataset_id: uuid.UUID,
    text: str,
    top_k: int,
) -> list[tuple[DatasetEntry, float]]:
    """The `top_k` entries whose input is most similar to `text` (cosine similarity of their
    embeddings, by the caller's default embedding model), best first, with the similarity.
    Commits the session's transaction (reads only, from its callers) before any embedding call."""
    model = await embeddings.model_named(db, who.user_id, None)
    await _embed_missing(db, access, model, dataset_id)  # ends with no transaction open
    (vector,) = (await embeddings.embed(access, model, [text])).vectors
    distance = DatasetEntry.embedding.cosine_distance(vector)
    rows = await db.execute(
        select(DatasetEntry, distance)
        .where(
            DatasetEntry.dataset_id == dataset_id,
            DatasetEntry.embedding_model == embeddings.model_name(model),
        )
        .order_by(distance, DatasetEntry.created_at)
        .limit(top_k)
    )
    return [(entry, 1.0 - float(d)) for entry, d in rows]


async def query(
    db: AsyncSession,
    who: Identity,
    access: model_calls.ModelAccess,
    dataset_id: uuid.UUID,
    text: str | None,
    top_k: int | None,
) -> list[schema.ScoredEntry]:
    """`POST /v2/datasets/{id}/entries/query` (and the seed's `.../query`): the entries whose
    input is nearest the query text."""
    dataset = await owned(db, who, dataset_id)
    if not text:
        raise InvalidInput("query: the text to search for is required", field="query")
    found = await nearest(db, who, access, dataset.id, text, top_k or DEFAULT_TOP_K)
    return [
        schema.ScoredEntry(
            **{f: getattr(to_schema(e), f) for f in schema.Entry.__struct_fields__}, score=score
        )
        for e, score in found
    ]


async def examples_for(
    db: AsyncSession,
    who: Identity,
    access: model_calls.ModelAccess,
    function_id: uuid.UUID,
    input: Any,
    count: int,
) -> list[DatasetEntry]:
    """A function call's few-shot examples: the `count` entries of its dataset nearest its input.
    Without an embedding model, or when the embedding provider fails, the newest entries instead:
    a call is not refused for want of a ranking (logged)."""
    dataset_id = await db.scalar(select(Dataset.id).where(Dataset.function_id == function_id))
    if dataset_id is None:
        return []
    if not await db.scalar(select(DatasetEntry.id).where(DatasetEntry.dataset_id == dataset_id).limit(1)):
        return []  # nothing to choose from: no embedding call either
    try:
        return [e for e, _ in await nearest(db, who, access, dataset_id, as_text(input), count)]
    except (InvalidInput, model_calls.ModelCallFailed) as exc:
        log.warning("few-shot examples by recency", function_id=str(function_id), error=exc.message)
        await db.rollback()
    newest = await db.scalars(
        select(DatasetEntry)
        .where(DatasetEntry.dataset_id == dataset_id)
        .order_by(DatasetEntry.created_at.desc())
        .limit(count)
    )
    return list(newest)
