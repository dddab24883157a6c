"""Opper's managed functions (`/v2/functions`): stored call definitions, each with numbered,
immutable revisions and a dataset of examples. A function is its owner's or absent (another owner's
id answers 404, as a deleted one does); a name is unique among its owner's live functions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.functions import Dataset, Function, FunctionRevision
from core.errors import Conflict, NotFound
from core.identity import Identity
from core.schemas import v2_calls
from core.schemas import v2_functions as schema
from core.schemas.v2_traces import ListMeta, V2Page
from services import datasets, model_calls

# What a revision copies: a change to any of these is a new revision.
DEFINITION = (
    "name",
    "description",
    "instructions",
    "input_schema",
    "output_schema",
    "model",
    "configuration",
)


async def _owned(db: AsyncSession, who: Identity, function_id: uuid.UUID, *, lock: bool = False) -> Function:
    query = select(Function).where(
        Function.id == function_id, Function.owner_id == who.user_id, Function.deleted_at.is_(None)
    )
    # A change holds the row: two PATCHes at once would both count the same next revision number.
    found = await db.scalar(query.with_for_update() if lock else query)
    if found is None:
        raise NotFound("function not found")
    return found


async def _dataset_id(db: AsyncSession, function_id: uuid.UUID) -> uuid.UUID:
    found = await db.scalar(select(Dataset.id).where(Dataset.function_id == function_id))
    assert found is not None  # made with its function, deleted with it
    return found


async def _name_taken(
    db: AsyncSession, who: Identity, name: str, other_than: uuid.UUID | None = None
) -> bool:
    query = select(Function.id).where(
        Function.owner_id == who.user_id, Function.name == name, Function.deleted_at.is_(None)
    )
    if other_than is not None:
        query = query.where(Function.id != other_than)
    return await db.scalar(query) is not None


def _conflict(name: str) -> Conflict:
    return Conflict(f"a function named {name!r} exists already", field="name")


async def _new_revision(db: AsyncSession, fn: Function) -> FunctionRevision:
    number = await db.scalar(
        select(func.coalesce(func.max(FunctionRevision.number), 0)).where(
            FunctionRevision.function_id == fn.id
        )
    )
    revision = FunctionRevision(
        function_id=fn.id, number=(number or 0) + 1, **{f: getattr(fn, f) for f in DEFINITION}
    )
    db.add(revision)
    await db.flush()
    fn.revision_id = revision.id
    return revision


def to_schema(fn: Function, dataset_id: uuid.UUID) -> schema.FunctionOut:
    assert fn.revision_id is not None  # every function has its first revision from the start
    return schema.FunctionOut(
        id=fn.id,
        name=fn.name,
        description=fn.description,
        instructions=fn.instructions,
        input_schema=fn.input_schema,
        output_schema=fn.output_schema,
        model=fn.model,
        configuration=fn.configuration or {},
        dataset_id=dataset_id,
        revision_id=fn.revision_id,
        created_at=fn.created_at,
        updated_at=fn.updated_at,
    )


async def create(db: AsyncSession, who: Identity, data: schema.CreateFunction) -> schema.FunctionOut:
    if await _name_taken(db, who, data.name):
        raise _conflict(data.name)
    fn = Function(
        owner_id=who.user_id,
        name=data.name,
        description=data.description,
        instructions=data.instructions,
        input_schema=data.input_schema,
        output_schema=data.output_schema,
        model=msgspec.to_builtins(data.model),
        configuration=data.configuration or {},
    )
    db.add(fn)
    try:
        await db.flush()
    except IntegrityError:  # the same name created concurrently
        await db.rollback()
        raise _conflict(data.name) from None
    dataset = Dataset(owner_id=who.user_id, function_id=fn.id)
    db.add(dataset)
    await _new_revision(db, fn)
    await db.commit()
    await db.refresh(fn)
    return to_schema(fn, dataset.id)


async def get(db: AsyncSession, who: Identity, function_id: uuid.UUID) -> schema.FunctionOut:
    fn = await _owned(db, who, function_id)
    return to_schema(fn, await _dataset_id(db, fn.id))


async def by_name(db: AsyncSession, who: Identity, name: str) -> schema.FunctionOut:
    found = await db.scalar(
        select(Function).where(
            Function.owner_id == who.user_id, Function.name == name, Function.deleted_at.is_(None)
        )
    )
    if found is None:
        raise NotFound("function not found")
    return to_schema(found, await _dataset_id(db, found.id))


async def list_functions(
    db: AsyncSession, who: Identity, name: str | None, offset: int, limit: int
) -> V2Page[schema.FunctionSummary]:
    query = (
        select(Function, Dataset.id)
        .join(Dataset, Dataset.function_id == Function.id)
        .where(Function.owner_id == who.user_id, Function.deleted_at.is_(None))
    )
    if name:
        # Opper's `name` filter: a part of the name, any case (LIKE's wildcards taken literally).
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(Function.name.ilike(f"%{escaped}%", escape="\\"))
    total = await db.scalar(select(func.count()).select_from(query.subquery()))
    rows = await db.execute(
        query.order_by(Function.created_at.desc(), Function.id.desc()).offset(offset).limit(limit)
    )
    data = []
    for fn, dataset_id in rows:
        assert fn.revision_id is not None
        data.append(
            schema.FunctionSummary(
                id=fn.id,
                name=fn.name,
                description=fn.description,
                instructions=fn.instructions,
                model=fn.model,
                revision_id=fn.revision_id,
                dataset_id=dataset_id,
                created_at=fn.created_at,
                updated_at=fn.updated_at,
            )
        )
    return V2Page(data=data, meta=ListMeta(total_count=total or 0))


async def update(
    db: AsyncSession, who: Identity, function_id: uuid.UUID, data: schema.UpdateFunction
) -> schema.FunctionOut:
    fn = await _owned(db, who, function_id, lock=True)
    changed = False
    for field in DEFINITION:
        value = getattr(data, field)
        if value is msgspec.UNSET:
            continue
        if field == "configuration" and value is None:
            value = {}
        if field == "model":
            value = msgspec.to_builtins(value)
        if getattr(fn, field) != value:
            setattr(fn, field, value)
            changed = True
    if changed:
        if await _name_taken(db, who, fn.name, other_than=fn.id):
            raise _conflict(fn.name)
        # Only a real change is a revision: a PATCH that sets what is there already makes none.
        await _new_revision(db, fn)
        fn.updated_at = datetime.now(UTC)
        try:
            await db.commit()
        except IntegrityError:
            await db.rollback()
            raise _conflict(fn.name) from None
        await db.refresh(fn)
    return to_schema(fn, await _dataset_id(db, fn.id))


async def delete(db: AsyncSession, who: Identity, function_id: uuid.UUID) -> None:
    """Soft: the function answers 404 from now on and its name is free; its revisions and dataset
    stay with it (spans keep pointing at them)."""
    fn = await _owned(db, who, function_id)
    fn.deleted_at = datetime.now(UTC)
    await db.commit()


def _revision(r: FunctionRevision) -> schema.Revision:
    return schema.Revision(
        id=r.id,
        function_id=r.function_id,
        number=r.number,
        name=r.name,
        description=r.description,
        instructions=r.instructions,
        input_schema=r.input_schema,
        output_schema=r.output_schema,
        model=r.model,
        configuration=r.configuration or {},
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


async def list_revisions(
    db: AsyncSession, who: Identity, function_id: uuid.UUID, offset: int, limit: int
) -> V2Page[schema.Revision]:
    fn = await _owned(db, who, function_id)
    where = FunctionRevision.function_id == fn.id
    total = await db.scalar(select(func.count()).select_from(FunctionRevision).where(where))
    rows = await db.scalars(
        select(FunctionRevision)
        .where(where)
        .order_by(FunctionRevision.number.desc())
        .offset(offset)
        .limit(limit)
    )
    return V2Page(data=[_revision(r) for r in rows], meta=ListMeta(total_count=total or 0))


async def revision(
    db: AsyncSession, who: Identity, function_id: uuid.UUID, revision_id: uuid.UUID | None
) -> FunctionRevision:
    """A revision of one of the caller's live functions (None: its current one)."""
    fn = await _owned(db, who, function_id)
    found = await db.scalar(
        select(FunctionRevision).where(
            FunctionRevision.function_id == fn.id, FunctionRevision.id == (revision_id or fn.revision_id)
        )
    )
    if found is None:
        raise NotFound("revision not found")
    return found


async def get_revision(
    db: AsyncSession, who: Identity, function_id: uuid.UUID, revision_id: uuid.UUID
) -> schema.Revision:
    return _revision(await revision(db, who, function_id, revision_id))


def few_shot_count(configuration: dict[str, Any]) -> int:
    """How many dataset examples a call of this definition takes (0: none)."""
    for key in schema.FEW_SHOT_KEYS:
        value = configuration.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return min(value, 20)
    return 0


# ------------------------------------------------------------------------------------------ calls


async def call_request(
    db: AsyncSession,
    who: Identity,
    access: model_calls.ModelAccess,
    function_id: uuid.UUID,
    revision_id: uuid.UUID | None,
    data: schema.CallFunction,
) -> tuple[v2_calls.CallRequest, FunctionRevision]:
    """The `/v2/call` request a call of the function is: the revision's definition (the current
    one unless `revision_id` pins another), the caller's input, examples, parent span and tags.
    The revision's `few_shot_count` adds that many examples from the function's dataset, those
    nearest the input (services/datasets.examples_for), after the caller's own."""
    rev = await revision(db, who, function_id, revision_id)
    examples = [
        v2_calls.Example(input=e.input, output=e.output, comment=e.comment) for e in data.examples or []
    ]
    examples += await few_shot_examples(db, who, access, rev.function_id, rev.configuration or {}, data.input)
    return (
        v2_calls.CallRequest(
            name=rev.name,
            instructions=rev.instructions,
            input=data.input,
            input_schema=rev.input_schema,
            output_schema=rev.output_schema,
            model=msgspec.convert(rev.model, v2_calls.ModelField | None),
            examples=examples or None,
            parent_span_id=data.parent_span_id,
            tags=data.tags,
            configuration=rev.configuration or None,
        ),
        rev,
    )


async def few_shot_examples(
    db: AsyncSession,
    who: Identity,
    access: model_calls.ModelAccess,
    function_id: uuid.UUID,
    configuration: dict[str, Any],
    input: Any,
) -> list[v2_calls.Example]:
    """The examples a call with `configuration` takes from the function's dataset: `few_shot_count`
    of them, those nearest `input` (services/datasets.examples_for); none without a count or an
    input."""
    count = few_shot_count(configuration)
    if not count or input is None:
        return []
    chosen = await datasets.examples_for(db, who, access, function_id, input, count)
    return [v2_calls.Example(input=e.input, output=e.output, comment=e.comment) for e in chosen]


async def named_few_shot(
    db: AsyncSession,
    who: Identity,
    access: model_calls.ModelAccess,
    name: str,
    configuration: dict[str, Any],
    input: Any,
) -> list[v2_calls.Example]:
    """A plain `/v2/call`'s few-shot examples: in Opper a call's `name` is its function, so those of
    the caller's live function of that name (`few_shot_examples`); none when it has none."""
    if not few_shot_count(configuration) or input is None:
        return []  # no lookup for the calls that ask for none
    function_id = await db.scalar(
        select(Function.id).where(
            Function.owner_id == who.user_id, Function.name == name, Function.deleted_at.is_(None)
        )
    )
    if function_id is None:
        return []
    return await few_shot_examples(db, who, access, function_id, configuration, input)


def span_meta(rev: FunctionRevision) -> dict[str, str]:
    """What a function's call adds to its span's metadata: which function (and revision) ran,
    what `save_examples` reads to find the function's dataset."""
    return {"function_id": str(rev.function_id), "function_revision_id": str(rev.id)}
