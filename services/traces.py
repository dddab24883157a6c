"""The trace store's one write path: every writer (the loop's steps, 001's batches, Opswald's events,
Opper's spans, OTLP) upserts spans through `upsert_spans`, inside its own transaction, and the
trace's aggregates are recomputed from its spans in the same transaction, so the list filters never
disagree with the spans they summarise."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.traces import Project, Span, Trace
from core.schemas.traces import CONTAINER_KINDS, SpanWrite

DEFAULT_PROJECT_NAME = "Default"


async def default_project(db: AsyncSession, owner_id: uuid.UUID) -> uuid.UUID:
    """The account's default project (made on first use): it holds the account's agent turns.
    Race-safe: two first uses insert one row (the partial unique index on `is_default`)."""
    found = await db.scalar(select(Project.id).where(Project.owner_id == owner_id, Project.is_default))
    if found is not None:
        return found
    await db.execute(
        insert(Project)
        .values(owner_id=owner_id, name=DEFAULT_PROJECT_NAME, is_default=True)
        .on_conflict_do_nothing(index_elements=["owner_id"], index_where=text("is_default"))
    )
    made = await db.scalar(select(Project.id).where(Project.owner_id == owner_id, Project.is_default))
    assert made is not None
    return made


async def ensure_trace(
    db: AsyncSession, owner_id: uuid.UUID, project_id: uuid.UUID, trace_id: str, **fields: Any
) -> uuid.UUID:
    """The trace's row key, inserting the trace when it is new (`fields`: name, metadata_,
    external_id, session_id, agent_id, user_id, status). An existing trace keeps its fields: a
    writer that means to change them says so (`update(Trace)`)."""
    key: uuid.UUID | None = await db.scalar(
        insert(Trace)
        .values(owner_id=owner_id, project_id=project_id, trace_id=trace_id, **fields)
        .on_conflict_do_nothing(index_elements=["owner_id", "trace_id"])
        .returning(Trace.id)
    )
    if key is not None:
        return key
    existing: uuid.UUID | None = await db.scalar(
        select(Trace.id).where(Trace.owner_id == owner_id, Trace.trace_id == trace_id)
    )
    assert existing is not None
    return existing


async def upsert_spans(
    db: AsyncSession, owner_id: uuid.UUID, trace_pk: uuid.UUID, spans: list[SpanWrite]
) -> None:
    """Inserts the spans, or updates those the trace already has (same `span_id`): a retried write
    changes nothing twice. Then the trace's aggregates follow. The caller commits."""
    if not spans:
        return
    rows = []
    for span in spans:
        values = msgspec.structs.asdict(span)
        values["metadata_"] = values.pop("metadata")
        rows.append({**values, "owner_id": owner_id, "trace_pk": trace_pk})
    statement = insert(Span).values(rows)
    # A span sent again replaces what it says; `created_at` and the row key stay.
    columns = [
        "metadata" if c == "metadata_" else c for c in rows[0] if c not in ("owner_id", "trace_pk", "span_id")
    ]
    replaced: dict[str, Any] = {c: statement.excluded[c] for c in columns}
    await db.execute(
        statement.on_conflict_do_update(
            index_elements=["trace_pk", "span_id"], set_={**replaced, "updated_at": func.now()}
        )
    )
    await refresh(db, trace_pk)


REFRESH = text(
    """
    UPDATE traces SET
        started_at = agg.started,
        ended_at = agg.ended,
        duration_ms = floor(extract(epoch FROM agg.ended - agg.started) * 1000),
        total_cost = agg.cost,
        input_tokens = agg.input_tokens,
        output_tokens = agg.output_tokens,
        span_count = agg.spans,
        step_count = agg.steps,
        error_count = agg.errors,
        models_used = agg.models,
        updated_at = now()
    FROM (
        SELECT
            min(start_time) AS started,
            max(coalesce(end_time, start_time)) AS ended,
            coalesce(sum(cost), 0) AS cost,
            coalesce(sum(input_tokens), 0) AS input_tokens,
            coalesce(sum(output_tokens), 0) AS output_tokens,
            count(*) AS spans,
            count(*) FILTER (WHERE kind <> ALL(:containers)) AS steps,
            count(*) FILTER (WHERE status = 'error') AS errors,
            coalesce(
                jsonb_agg(DISTINCT model ORDER BY model) FILTER (WHERE model IS NOT NULL), '[]'::jsonb
            ) AS models
        FROM spans WHERE trace_pk = :trace_pk
    ) AS agg
    WHERE traces.id = :trace_pk
    """
)


async def refresh(db: AsyncSession, trace_pk: uuid.UUID) -> None:
    """Recomputes the trace's aggregates from its spans, in one statement (`steps` count every span
    but containers: Opswald's step list). The trace's `status` is its writer's to set (an agent
    turn's end, a PATCH), so it is left alone here."""
    await db.execute(REFRESH, {"trace_pk": trace_pk, "containers": list(CONTAINER_KINDS)})
