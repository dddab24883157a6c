"""agent turns as traces: the turns stored before this release get their traces and spans (issue 13)

The loop writes a turn's spans with its events from now on (services/turn_traces.py); this makes the
same spans, from the stored events, for every turn already stored: a trace per turn (`trace_id` =
the turn id) in its owner's default project, a root `agent` span, an `llm` span per `reason` step
and a `tool` span per tool call, with the same ids, fields and references the projection writes
(docs/traces.md, "Agent turns as traces"). In SQL, a few statements however many sessions there
are. Idempotent: a trace or span that exists is left as it is, so running it again writes nothing.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-29 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As services/turn_traces.py names them.
UNFINISHED = "the step did not finish: its turn ended first"
CANCELLED = "the turn was cancelled"
UUID_TEXT = "^[0-9a-fA-F-]{36}$"

# The events that say something about a span, each with its span's id and kind (as
# services/turn_traces.py keys them: a reason step's events are `{turn}:{iteration}:{type}`).
_KEYED = """
CREATE TEMPORARY TABLE turn_span_events ON COMMIT DROP AS
SELECT k.* FROM (
    SELECT e.id, e.session_id, e.type, e.ts, e.data, e.context ->> 'turn_id' AS turn_id,
        CASE
            WHEN e.type IN ('turn.started', 'turn.completed', 'turn.failed', 'turn.cancelled') THEN 'agent'
            WHEN e.type IN ('reason.started', 'llm.generation', 'message.agent')
                AND split_part(e.idempotency_key, ':', 2) ~ '^[0-9]+$' THEN 'llm'
            WHEN e.type IN ('tool.call_started', 'tool.call_completed') THEN 'tool'
        END AS kind,
        CASE
            WHEN e.type IN ('turn.started', 'turn.completed', 'turn.failed', 'turn.cancelled')
                THEN e.context ->> 'turn_id'
            WHEN e.type IN ('reason.started', 'llm.generation', 'message.agent')
                AND split_part(e.idempotency_key, ':', 2) ~ '^[0-9]+$'
                THEN (e.context ->> 'turn_id') || ':llm:' || split_part(e.idempotency_key, ':', 2)
            WHEN e.type = 'tool.call_started'
                THEN (e.context ->> 'turn_id') || ':tool:' || coalesce(e.data -> 'tool_call' ->> 'id', '')
            WHEN e.type = 'tool.call_completed'
                THEN (e.context ->> 'turn_id') || ':tool:' || coalesce(e.data ->> 'tool_call_id', '')
        END AS span_id,
        split_part(e.idempotency_key, ':', 2) AS part
    FROM events e
    WHERE e.type IN (
            'turn.started', 'turn.completed', 'turn.failed', 'turn.cancelled', 'reason.started',
            'llm.generation', 'message.agent', 'tool.call_started', 'tool.call_completed'
        )
        AND jsonb_typeof(e.context -> 'turn_id') = 'string'
        AND e.idempotency_key IS NOT NULL
) k
WHERE k.span_id IS NOT NULL
"""

_PROJECTS = """
INSERT INTO projects (id, created_at, updated_at, owner_id, name, is_default)
SELECT gen_random_uuid(), now(), now(), owners.owner_id, 'Default', true
FROM (
    SELECT DISTINCT a.owner_id
    FROM turn_span_events k JOIN sessions s ON s.id = k.session_id JOIN agents a ON a.id = s.agent_id
) owners
ON CONFLICT (owner_id) WHERE is_default DO NOTHING
"""

# Each turn's end (one per turn: its key is `{turn}:turn.{outcome}`).
_ENDS = """
CREATE TEMPORARY TABLE turn_ends ON COMMIT DROP AS
SELECT DISTINCT ON (session_id, turn_id) session_id, turn_id, id, type, ts, data,
    CASE type WHEN 'turn.completed' THEN 'completed' WHEN 'turn.failed' THEN 'failed' ELSE 'cancelled' END
        AS outcome
FROM turn_span_events
WHERE type IN ('turn.completed', 'turn.failed', 'turn.cancelled')
ORDER BY session_id, turn_id, ts
"""

_TRACES = """
INSERT INTO traces (
    id, created_at, updated_at, owner_id, project_id, trace_id, name, status, metadata,
    session_id, agent_id, user_id
)
SELECT gen_random_uuid(), now(), now(), a.owner_id, p.id, turns.turn_id, a.name,
    CASE WHEN x.outcome IS NULL THEN 'unset' WHEN x.outcome = 'completed' THEN 'ok' ELSE 'error' END,
    CASE WHEN x.outcome IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('outcome', x.outcome) END,
    turns.session_id::text, a.id, a.owner_id::text
FROM (SELECT DISTINCT session_id, turn_id FROM turn_span_events) turns
JOIN sessions s ON s.id = turns.session_id
JOIN agents a ON a.id = s.agent_id
JOIN projects p ON p.owner_id = a.owner_id AND p.is_default
LEFT JOIN turn_ends x ON x.session_id = turns.session_id AND x.turn_id = turns.turn_id
ON CONFLICT (owner_id, trace_id) DO NOTHING
"""

# One row per span: what its events say, grouped.
_SPANS = """
INSERT INTO spans (
    id, created_at, updated_at, owner_id, trace_pk, span_id, parent_span_id, name, kind, status,
    error, metadata, start_time, end_time, model, provider, input_tokens, output_tokens, cost,
    source_event_id, source_message_id
)
SELECT gen_random_uuid(), now(), now(), t.owner_id, t.id, g.span_id,
    CASE WHEN g.kind = 'agent' THEN NULL ELSE g.turn_id END,
    CASE g.kind
        WHEN 'agent' THEN a.name
        WHEN 'llm' THEN 'reason'
        ELSE coalesce(g.completed ->> 'tool_name', g.started -> 'tool_call' ->> 'name', 'tool')
    END,
    g.kind,
    CASE
        WHEN g.kind = 'agent' THEN
            CASE x.outcome WHEN 'completed' THEN 'ok' WHEN 'failed' THEN 'error' WHEN 'cancelled' THEN 'error'
                ELSE 'unset' END
        WHEN g.kind = 'llm' AND g.generation_id IS NOT NULL THEN 'ok'
        WHEN g.kind = 'tool' AND g.completed_id IS NOT NULL THEN
            CASE WHEN g.completed ->> 'status' = 'success' THEN 'ok' ELSE 'error' END
        WHEN x.outcome IS NOT NULL THEN 'error'
        ELSE 'unset'
    END,
    CASE
        WHEN g.kind = 'agent' THEN
            CASE x.outcome WHEN 'failed' THEN x.data ->> 'error' WHEN 'cancelled' THEN :cancelled END
        WHEN g.kind = 'llm' AND g.generation_id IS NOT NULL THEN NULL
        WHEN g.kind = 'tool' AND g.completed_id IS NOT NULL THEN
            CASE WHEN g.completed ->> 'status' = 'success' THEN NULL ELSE g.completed ->> 'error' END
        WHEN x.outcome IS NOT NULL THEN :unfinished
    END,
    CASE g.kind
        WHEN 'agent' THEN jsonb_strip_nulls(jsonb_build_object(
            'outcome', x.outcome,
            'error_code', CASE WHEN x.outcome = 'failed' THEN nullif(x.data ->> 'error_code', '') END
        ))
        WHEN 'llm' THEN jsonb_build_object('iteration', g.part::int)
        ELSE jsonb_strip_nulls(jsonb_build_object(
            'tool_call_id', coalesce(g.completed ->> 'tool_call_id', g.started -> 'tool_call' ->> 'id'),
            'input_event_id', g.started_id::text,
            'tool_status', g.completed ->> 'status'
        ))
    END,
    CASE g.kind
        WHEN 'agent' THEN g.opened_at
        WHEN 'llm' THEN least(
            g.opened_at,
            g.generated_at - ((g.generation -> 'metadata' ->> 'duration_ms') || ' milliseconds')::interval
        )
        ELSE least(g.opened_at, g.completed_at)
    END,
    CASE g.kind
        WHEN 'agent' THEN x.ts
        WHEN 'llm' THEN coalesce(g.generated_at, x.ts)
        ELSE coalesce(g.completed_at, x.ts)
    END,
    CASE WHEN g.kind = 'llm' THEN
        coalesce(g.generation -> 'metadata' ->> 'model', g.reason -> 'metadata' ->> 'model') END,
    CASE WHEN g.kind = 'llm' THEN g.generation -> 'metadata' ->> 'provider' END,
    CASE WHEN g.kind = 'llm' THEN (g.generation -> 'metadata' -> 'usage' ->> 'input_tokens')::bigint END,
    CASE WHEN g.kind = 'llm' THEN (g.generation -> 'metadata' -> 'usage' ->> 'output_tokens')::bigint END,
    CASE WHEN g.kind = 'llm' THEN (g.generation -> 'metadata' ->> 'cost')::numeric END,
    CASE g.kind WHEN 'agent' THEN x.id WHEN 'llm' THEN g.generation_id ELSE g.completed_id END,
    CASE g.kind
        WHEN 'agent' THEN (SELECT m.id FROM messages m WHERE g.input_message_id ~ :uuid_text
            AND m.id = g.input_message_id::uuid)
        WHEN 'llm' THEN (SELECT m.id FROM messages m WHERE g.reply_id ~ :uuid_text
            AND m.id = g.reply_id::uuid)
    END
FROM (
    SELECT session_id, turn_id, span_id, kind, min(part) AS part,
        min(ts) FILTER (WHERE type IN ('turn.started', 'reason.started', 'tool.call_started')) AS opened_at,
        min(data ->> 'input_message_id') FILTER (WHERE type = 'turn.started') AS input_message_id,
        (array_agg(data) FILTER (WHERE type = 'reason.started'))[1] AS reason,
        (array_agg(id) FILTER (WHERE type = 'llm.generation'))[1] AS generation_id,
        (array_agg(data) FILTER (WHERE type = 'llm.generation'))[1] AS generation,
        min(ts) FILTER (WHERE type = 'llm.generation') AS generated_at,
        min(data -> 'message' ->> 'id') FILTER (WHERE type = 'message.agent') AS reply_id,
        (array_agg(id) FILTER (WHERE type = 'tool.call_started'))[1] AS started_id,
        (array_agg(data) FILTER (WHERE type = 'tool.call_started'))[1] AS started,
        (array_agg(id) FILTER (WHERE type = 'tool.call_completed'))[1] AS completed_id,
        (array_agg(data) FILTER (WHERE type = 'tool.call_completed'))[1] AS completed,
        min(ts) FILTER (WHERE type = 'tool.call_completed') AS completed_at
    FROM turn_span_events
    GROUP BY session_id, turn_id, span_id, kind
) g
JOIN sessions s ON s.id = g.session_id
JOIN agents a ON a.id = s.agent_id
JOIN traces t ON t.owner_id = a.owner_id AND t.trace_id = g.turn_id
LEFT JOIN turn_ends x ON x.session_id = g.session_id AND x.turn_id = g.turn_id
ON CONFLICT (trace_pk, span_id) DO NOTHING
"""

# The aggregates, as services/traces.py's REFRESH computes them, for every agent turn's trace.
_REFRESH = """
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
        trace_pk,
        min(start_time) AS started,
        max(coalesce(end_time, start_time)) AS ended,
        coalesce(sum(cost), 0) AS cost,
        coalesce(sum(input_tokens), 0) AS input_tokens,
        coalesce(sum(output_tokens), 0) AS output_tokens,
        count(*) AS spans,
        count(*) FILTER (WHERE kind <> ALL(ARRAY['agent', 'chain'])) AS steps,
        count(*) FILTER (WHERE status = 'error') AS errors,
        coalesce(
            jsonb_agg(DISTINCT model ORDER BY model) FILTER (WHERE model IS NOT NULL), '[]'::jsonb
        ) AS models
    FROM spans
    WHERE trace_pk IN (SELECT id FROM traces WHERE agent_id IS NOT NULL)
    GROUP BY trace_pk
) AS agg
WHERE traces.id = agg.trace_pk
"""


def upgrade() -> None:
    bind = op.get_bind()
    bind.execute(sa.text(_KEYED))
    bind.execute(sa.text(_PROJECTS))
    bind.execute(sa.text(_ENDS))
    bind.execute(sa.text(_TRACES))
    bind.execute(
        sa.text(_SPANS), {"cancelled": CANCELLED, "unfinished": UNFINISHED, "uuid_text": UUID_TEXT}
    )
    bind.execute(sa.text(_REFRESH))
    bind.execute(sa.text("DROP TABLE turn_span_events, turn_ends"))


def downgrade() -> None:
    # The agent turns' traces (their spans go with them); an outside app's traces stay.
    op.execute("DELETE FROM traces WHERE agent_id IS NOT NULL")
