"""Opper's datasets (`/v2/datasets`): each managed function's examples, `{input, output, expected,
comment}`. A dataset is its owner's or absent (another owner's id answers 404). Entries' inputs are
embedded when written, for the semantic query and for the few-shot examples of the function's
calls (services/functions)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import msgspec
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.functions import Dataset, DatasetEntry
from core.db.traces import Span
from core.errors import InvalidInput, NotFound
from core.identity import Identity
from core.schemas import v2_functions as schema
from core.schemas.v2_traces import ListMeta, V2Page

DEFAULT_TOP_K = 5


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


async def owned(db: AsyncSession, who: Identity, dataset_id: uuid.UUID) -> Dataset:
    found = await db.scalar(select(Dataset).where(Dataset.id == dataset_id, Dataset.owner_id == who.user_id))
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
    if span.error or span.status == "error":
        raise InvalidInput("the call failed: it has no output to save")
    dataset = await db.scalar(
        select(Dataset).where(Dataset.function_id == uuid.UUID(function_id), Dataset.owner_id == who.user_id)
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
