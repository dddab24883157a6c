"""Opswald's sessions across agents (`GET /v1/sessions`, `GET /v1/sessions/{id}`, `POST
/v1/sessions/{id}/end`) over both kinds of session (docs/traces.md, "Opswald's sessions"):

- an **agent session** (a row of `sessions`, of one of the caller's agents; its turns are traces
  whose `session_id` is the session's UUID);
- an **external session**: a `session_id` that the caller's traces carry (Opswald's events, OTLP's
  `gen_ai.conversation.id`) and that is no agent session. Its traces make it; the one row of its own
  (`external_sessions`) only records that it was ended."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.sessions import Session
from core.db.traces import ExternalSession, Trace
from core.errors import NotFound
from core.identity import Identity
from core.schemas import opswald as schema
from services import sessions

# One statement: the caller's agent sessions with their traces' totals, and the external sessions
# (grouped from `traces` by `session_id`, through ix_traces_owner_user / ix_traces_session_id), in
# one list, most recently active first. {agent_where}/{external_where}/{having}/{outer_where} are
# fixed fragments chosen in code; every value is a bound parameter.
LIST = """
WITH agent_sessions AS (
    SELECT s.id::text AS session_id, 'agent' AS kind, CAST(:owner_text AS text) AS user_id,
           s.agent_id, coalesce(s.started_at, s.created_at) AS started_at,
           greatest(s.updated_at, t.last_activity) AS last_activity, s.ended_at,
           coalesce(t.traces, 0) AS trace_count, coalesce(t.cost, 0) AS total_cost,
           coalesce(t.tokens, 0) AS total_tokens
    FROM sessions s
    JOIN agents a ON a.id = s.agent_id
    LEFT JOIN LATERAL (
        SELECT count(*) AS traces, sum(total_cost) AS cost, sum(input_tokens + output_tokens) AS tokens,
               max(coalesce(ended_at, started_at)) AS last_activity
        FROM traces WHERE owner_id = :owner AND session_id = s.id::text
    ) t ON true
    WHERE a.owner_id = :owner {agent_where}
), external AS (
    SELECT t.session_id, 'external' AS kind, min(t.user_id) AS user_id, CAST(NULL AS uuid) AS agent_id,
           min(t.started_at) AS started_at, max(coalesce(t.ended_at, t.started_at)) AS last_activity,
           e.ended_at, count(*) AS trace_count, sum(t.total_cost) AS total_cost,
           sum(t.input_tokens + t.output_tokens) AS total_tokens
    FROM traces t
    LEFT JOIN external_sessions e ON e.owner_id = t.owner_id AND e.session_id = t.session_id
    WHERE t.owner_id = :owner AND t.session_id IS NOT NULL AND t.agent_id IS NULL
      AND NOT EXISTS (
          SELECT 1 FROM sessions s JOIN agents a ON a.id = s.agent_id
          WHERE a.owner_id = :owner AND s.id::text = t.session_id
      ) {external_where}
    GROUP BY t.session_id, e.ended_at {having}
)
SELECT *, count(*) OVER () AS total FROM (
    SELECT * FROM agent_sessions UNION ALL SELECT * FROM external
) AS everyone
{outer_where}
ORDER BY last_activity DESC NULLS LAST, session_id DESC
LIMIT :limit OFFSET :offset
"""


def _opswald(row: Any) -> schema.OpswaldSession:
    return schema.OpswaldSession(
        session_id=row.session_id,
        kind=row.kind,
        user_id=row.user_id,
        agent_id=row.agent_id,
        started_at=row.started_at,
        last_activity=row.last_activity,
        ended_at=row.ended_at,
        status="completed" if row.ended_at is not None else "active",
        active=row.ended_at is None,
        trace_count=int(row.trace_count),
        total_cost=float(row.total_cost or 0),
        total_tokens=int(row.total_tokens or 0),
    )


async def list_opswald(
    db: AsyncSession,
    who: Identity,
    *,
    agent_id: uuid.UUID | None,
    search: str | None,
    user_id: str | None,
    active: bool | None,
    offset: int,
    limit: int,
    session_id: str | None = None,
) -> tuple[list[schema.OpswaldSession], int]:
    """Opswald's `sessions`: agent sessions and external ones, most recently active first. `agent_id`
    and `search` (a title's part) keep agent sessions only (an external session has neither)."""
    params: dict[str, Any] = {
        "owner": who.user_id,
        "owner_text": str(who.user_id),
        "limit": limit,
        "offset": offset,
    }
    agent_where, external_where, having, outer = [], [], [], []
    if agent_id is not None:
        agent_where.append("AND s.agent_id = :agent_id")
        params["agent_id"] = agent_id
    if search:
        agent_where.append("AND s.title ILIKE :search")
        params["search"] = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    if agent_id is not None or search:
        external_where.append("AND false")
    if user_id is not None:
        # An agent session's user is its owner; an external session's, any of its traces' user.
        agent_where.append("AND CAST(:owner_text AS text) = :user_id")
        having.append("HAVING bool_or(t.user_id = :user_id)")
        params["user_id"] = user_id
    if session_id is not None:
        agent_where.append("AND s.id::text = :session_id")
        external_where.append("AND t.session_id = :session_id")
        params["session_id"] = session_id
    if active is not None:
        outer.append("WHERE ended_at IS NULL" if active else "WHERE ended_at IS NOT NULL")
    statement = LIST.format(
        agent_where=" ".join(agent_where),
        external_where=" ".join(external_where),
        having=" ".join(having),
        outer_where=" ".join(outer),
    )
    rows = (await db.execute(text(statement), params)).all()
    total = int(rows[0].total) if rows else 0
    if not rows and offset:
        # Past the last page: the count still says how many there are.
        count = await db.execute(text(statement), {**params, "offset": 0, "limit": 1})
        first = count.first()
        total = int(first.total) if first else 0
    return [_opswald(r) for r in rows], total


def _agent_session_id(session_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(session_id)
    except ValueError:
        return None


async def find_agent_session(db: AsyncSession, who: Identity, session_id: str) -> Any:
    """The caller's agent session of that id, or None (a non-UUID id is never one)."""
    key = _agent_session_id(session_id)
    if key is None:
        return None
    try:
        return await sessions.get(db, who, None, key)
    except NotFound:
        return None


async def _trace_ids(db: AsyncSession, who: Identity, session_id: str, *, agent: bool) -> list[str]:
    """A session's newest 100 trace ids (`ix_traces_session_id`)."""
    of_kind = Trace.agent_id.is_not(None) if agent else Trace.agent_id.is_(None)
    found = await db.scalars(
        select(Trace.trace_id)
        .where(Trace.owner_id == who.user_id, Trace.session_id == session_id, of_kind)
        .order_by(Trace.started_at.desc().nulls_last(), Trace.id.desc())
        .limit(100)
    )
    return list(found.all())


async def external(db: AsyncSession, who: Identity, session_id: str) -> schema.ExternalSessionDetail:
    found, _ = await list_opswald(
        db,
        who,
        agent_id=None,
        search=None,
        user_id=None,
        active=None,
        offset=0,
        limit=1,
        session_id=session_id,
    )
    if not found or found[0].kind != "external":
        raise NotFound(f"session {session_id} not found")
    summary = found[0]
    return schema.ExternalSessionDetail(
        **{f: getattr(summary, f) for f in summary.__struct_fields__},
        trace_ids=await _trace_ids(db, who, session_id, agent=False),
    )


async def agent_detail(db: AsyncSession, who: Identity, row: Session) -> schema.AgentSessionDetail:
    """The caller's agent session in Everruns' shape, with Opswald's summary fields beside it. The
    route Everruns' clients poll for a session's status: one aggregate over the session's traces
    (`ix_traces_session_id`), not the list's statement."""
    session_id = str(row.id)
    totals = (
        await db.execute(
            select(
                func.count(),
                func.coalesce(func.sum(Trace.total_cost), 0),
                func.coalesce(func.sum(Trace.input_tokens + Trace.output_tokens), 0),
                func.max(func.coalesce(Trace.ended_at, Trace.started_at)),
            ).where(
                Trace.owner_id == who.user_id, Trace.session_id == session_id, Trace.agent_id.is_not(None)
            )
        )
    ).one()
    count, cost, tokens, last_trace = totals
    everruns = sessions.to_schema(row, who.user_id)
    return schema.AgentSessionDetail(
        **{f: getattr(everruns, f) for f in everruns.__struct_fields__},
        session_id=session_id,
        user_id=str(who.user_id),
        last_activity=max(row.updated_at, last_trace) if last_trace is not None else row.updated_at,
        active=row.ended_at is None,
        trace_count=int(count),
        total_cost=float(cost),
        total_tokens=int(tokens),
        trace_ids=await _trace_ids(db, who, session_id, agent=True),
    )


async def end_external(db: AsyncSession, who: Identity, session_id: str) -> datetime:
    """Marks an external session ended (once: ending it again keeps the first time)."""
    await external(db, who, session_id)  # 404 unless the caller's traces carry it
    statement = insert(ExternalSession).values(
        owner_id=who.user_id, session_id=session_id, ended_at=func.now()
    )
    await db.execute(
        statement.on_conflict_do_update(
            index_elements=["owner_id", "session_id"],
            set_={"ended_at": func.coalesce(ExternalSession.ended_at, statement.excluded.ended_at)},
        )
    )
    ended = await db.scalar(
        select(ExternalSession.ended_at).where(
            ExternalSession.owner_id == who.user_id, ExternalSession.session_id == session_id
        )
    )
    await db.commit()
    assert ended is not None
    return ended
