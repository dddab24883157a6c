"""webhooks (issue 16): endpoints, their deliveries (the outbox), and the triggers that record a
delivery in the same transaction as the change that causes it

The events are recorded by triggers, not by each writer: a turn's end and a session's idling are
`events` rows stored by several steps, a trace's status is set by six writers (the loop, 001's
batches, Opswald's events and PATCH, Opper's spans, OTLP), a replay or golden run ends in its own
service. A trigger sees every one of them, in the writer's transaction, and a future writer cannot
forget it. Each trigger fires only on the few changes that are events (a `WHEN` clause) and returns
at once when the owner has no active webhook (`ix_webhooks_owner_active`): with no webhooks the
cost is one index probe per turn end or trace status change (a session event's trigger asks
whether any webhook is active before it looks up the session's owner). `webhook_enqueue` inserts one delivery
per matching webhook and, when it inserted any, `NOTIFY everloop_webhooks` (sent at commit, never
for a rolled-back transaction): the workers' dispatcher starts the delivery workflows at once; its
sweep catches any notice missed.

Revision ID: 0027
Revises: 0026
Create Date: 2026-11-30 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A UUIDv7 (time-ordered) made in SQL: PostgreSQL 18 has uuidv7(), 17 (deploy/compose.yaml) not.
# The version bits of a random v4 (0100) become 0111 and its first 48 bits the time in ms.
UUID7 = """
CREATE FUNCTION everloop_uuid7() RETURNS uuid LANGUAGE sql VOLATILE AS $$
  SELECT encode(
    set_bit(set_bit(
      overlay(uuid_send(gen_random_uuid())
              PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
              FROM 1 FOR 6),
      52, 1), 53, 1),
    'hex')::uuid
$$
"""

# This runs inside the transaction of whoever wrote the event (the agent loop's store among them):
# an error here aborts that transaction, and the loop's retried store calls the LLM or runs the
# tool again. So nothing in it may fail for a reason of the webhooks' own:
# - A webhook deleted meanwhile. The SELECT reads the webhooks under the statement's snapshot; a
#   DELETE committed after it would make the delivery's foreign key check fail
#   (ForeignKeyViolation). `FOR KEY SHARE OF w` (the lock that check itself takes) locks each
#   webhook as it is read: a webhook being deleted is waited for and then skipped (READ COMMITTED
#   re-checks the row), and a later DELETE waits for this transaction, whose deliveries its cascade
#   then removes. KEY SHARE conflicts only with a DELETE (or a key change, which never happens):
#   PATCHes and attempts' writes of a webhook's other columns neither wait nor make this wait.
# - The NOTIFY. Its payload is empty (never over the 8000 bytes a payload may have) and one per
#   transaction (PostgreSQL folds identical notices). A full notification queue (8 GB, filled only
#   when a listening session stops reading for days) would fail the writer's COMMIT: above half
#   full (where PostgreSQL starts to warn) the notice is skipped, and the dispatcher's run every
#   EVERY_S (everloop/sweeper.py) starts those deliveries instead.
# - The payload: built from typed columns with jsonb_build_object, which takes any value, NULLs
#   included; `event` is one of the triggers' fixed names (under the column's 60 characters).
# What is left can only fail with the writer's own transaction: its owner being deleted (the
# owner_id foreign key; the writer's own rows of that owner conflict with that delete anyway), or
# the database failing (out of memory or disk, statement_timeout). No catch-all EXCEPTION block:
# it would open a subtransaction on every call (past 64 in a transaction, as a big OTLP batch of
# traces would, every snapshot in the cluster pays pg_subtrans lookups) and drop events silently.
ENQUEUE = """
CREATE FUNCTION webhook_enqueue(p_owner uuid, p_event text, p_data jsonb) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  inserted integer;
BEGIN
  INSERT INTO webhook_deliveries (id, webhook_id, owner_id, event, payload, next_attempt_at)
  SELECT everloop_uuid7(), w.id, w.owner_id, p_event,
         jsonb_build_object(
           'event', p_event,
           'timestamp', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
           'data', p_data),
         now()
  FROM webhooks w
  WHERE w.owner_id = p_owner AND w.active
    AND (cardinality(w.events) = 0 OR p_event = ANY (w.events))
  FOR KEY SHARE OF w;
  GET DIAGNOSTICS inserted = ROW_COUNT;
  IF inserted > 0 AND pg_notification_queue_usage() < 0.5 THEN
    PERFORM pg_notify('everloop_webhooks', '');
  END IF;
  RETURN inserted;
END
$$
"""

# Every trigger first asks whether the owner has an active webhook, before building a payload. An
# event's owner is its session's agent's: two lookups, made only once some webhook is active at all
# (one probe of ix_webhooks_owner_active's first entry), so an installation without webhooks pays
# just that probe per turn end.
SESSION_EVENTS = """
CREATE FUNCTION webhook_on_session_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  owner uuid;
  agent uuid;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM webhooks WHERE active) THEN
    RETURN NULL;
  END IF;
  SELECT a.owner_id, a.id INTO owner, agent
  FROM sessions s JOIN agents a ON a.id = s.agent_id WHERE s.id = NEW.session_id;
  IF owner IS NULL OR NOT (SELECT EXISTS (SELECT 1 FROM webhooks WHERE owner_id = owner AND active)) THEN
    RETURN NULL;
  END IF;
  PERFORM webhook_enqueue(owner, NEW.type, NEW.data || jsonb_build_object(
    'session_id', NEW.session_id, 'agent_id', agent, 'event_id', NEW.id,
    'sequence', NEW.sequence, 'ts', NEW.ts));
  RETURN NULL;
END
$$
"""

# Opswald's payloads (seed 002): trace.completed {trace_id, session_id, duration_ms, total_cost,
# status}; trace.error {trace_id, session_id, error {type, message, step}}, the error being the
# trace's first failed span and `step` its place among the trace's spans by start time.
TRACES = """
CREATE FUNCTION webhook_on_trace_status() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  failed_id uuid;
  failed_kind text;
  failed_error text;
  failed_start timestamptz;
  step bigint;
BEGIN
  IF NOT (SELECT EXISTS (SELECT 1 FROM webhooks WHERE owner_id = NEW.owner_id AND active)) THEN
    RETURN NULL;
  END IF;
  IF NEW.status = 'ok' THEN
    PERFORM webhook_enqueue(NEW.owner_id, 'trace.completed', jsonb_build_object(
      'trace_id', NEW.trace_id, 'session_id', NEW.session_id, 'duration_ms', NEW.duration_ms,
      'total_cost', NEW.total_cost, 'status', 'completed'));
  ELSE
    SELECT id, kind, error, start_time INTO failed_id, failed_kind, failed_error, failed_start
    FROM spans WHERE trace_pk = NEW.id AND status = 'error'
    ORDER BY start_time NULLS LAST, id LIMIT 1;
    IF failed_id IS NOT NULL THEN
      SELECT count(*) INTO step FROM spans
      WHERE trace_pk = NEW.id AND (start_time < failed_start OR id = failed_id);
    END IF;
    PERFORM webhook_enqueue(NEW.owner_id, 'trace.error', jsonb_build_object(
      'trace_id', NEW.trace_id, 'session_id', NEW.session_id, 'status', 'error',
      'error', jsonb_build_object(
        'type', coalesce(failed_kind || '_error', 'error'),
        'message', coalesce(failed_error, NEW.metadata ->> 'error'),
        'step', step)));
  END IF;
  RETURN NULL;
END
$$
"""

REPLAYS = """
CREATE FUNCTION webhook_on_replay_end() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT (SELECT EXISTS (SELECT 1 FROM webhooks WHERE owner_id = NEW.owner_id AND active)) THEN
    RETURN NULL;
  END IF;
  PERFORM webhook_enqueue(NEW.owner_id, 'replay.completed', jsonb_build_object(
    'replay_id', NEW.id, 'kind', NEW.kind, 'status', NEW.status,
    'original_trace_id', NEW.original_trace_id, 'result_trace_id', NEW.result_trace_id,
    'session_id', NEW.session_id, 'error', NEW.error));
  RETURN NULL;
END
$$
"""

GOLDEN_RUNS = """
CREATE FUNCTION webhook_on_golden_run_end() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT (SELECT EXISTS (SELECT 1 FROM webhooks WHERE owner_id = NEW.owner_id AND active)) THEN
    RETURN NULL;
  END IF;
  PERFORM webhook_enqueue(NEW.owner_id, 'golden_test_run.completed', jsonb_build_object(
    'run_id', NEW.id, 'status', NEW.status, 'total_tests', NEW.total_tests,
    'passed', NEW.passed, 'failed', NEW.failed, 'error', NEW.error));
  RETURN NULL;
END
$$
"""

TRIGGERS = [
    """CREATE TRIGGER webhook_session_event AFTER INSERT ON events FOR EACH ROW
       WHEN (NEW.type IN ('turn.completed', 'turn.failed', 'tool.approval_requested', 'session.idled'))
       EXECUTE FUNCTION webhook_on_session_event()""",
    """CREATE TRIGGER webhook_trace_inserted AFTER INSERT ON traces FOR EACH ROW
       WHEN (NEW.status IN ('ok', 'error'))
       EXECUTE FUNCTION webhook_on_trace_status()""",
    """CREATE TRIGGER webhook_trace_status AFTER UPDATE OF status ON traces FOR EACH ROW
       WHEN (NEW.status IS DISTINCT FROM OLD.status AND NEW.status IN ('ok', 'error'))
       EXECUTE FUNCTION webhook_on_trace_status()""",
    """CREATE TRIGGER webhook_replay_end AFTER UPDATE OF status ON replays FOR EACH ROW
       WHEN (NEW.status IS DISTINCT FROM OLD.status AND NEW.status IN ('completed', 'failed', 'stopped'))
       EXECUTE FUNCTION webhook_on_replay_end()""",
    """CREATE TRIGGER webhook_golden_run_end AFTER UPDATE OF status ON golden_runs FOR EACH ROW
       WHEN (NEW.status IS DISTINCT FROM OLD.status AND NEW.status IN ('completed', 'failed'))
       EXECUTE FUNCTION webhook_on_golden_run_end()""",
]


def upgrade() -> None:
    op.create_table(
        "webhooks",
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column(
            "events", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'::text[]"), nullable=False
        ),
        sa.Column("secret_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("allow_private", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_webhooks_owner_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhooks")),
    )
    op.create_index("ix_webhooks_owner_id", "webhooks", ["owner_id", "id"], unique=False)
    op.create_index(
        "ix_webhooks_owner_active", "webhooks", ["owner_id"], unique=False, postgresql_where=sa.text("active")
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("webhook_id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("event", sa.String(length=60), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=20), server_default="pending", nullable=False),
        sa.Column("series", sa.Integer(), server_default="1", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("workflow_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["webhooks.id"],
            name=op.f("fk_webhook_deliveries_webhook_id_webhooks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_webhook_deliveries_owner_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    op.create_index(
        "ix_webhook_deliveries_webhook_id", "webhook_deliveries", ["webhook_id", "id"], unique=False
    )
    op.create_index(
        "ix_webhook_deliveries_unstarted",
        "webhook_deliveries",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("workflow_started_at IS NULL"),
    )
    for statement in (UUID7, ENQUEUE, SESSION_EVENTS, TRACES, REPLAYS, GOLDEN_RUNS, *TRIGGERS):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS webhook_golden_run_end ON golden_runs")
    op.execute("DROP TRIGGER IF EXISTS webhook_replay_end ON replays")
    op.execute("DROP TRIGGER IF EXISTS webhook_trace_status ON traces")
    op.execute("DROP TRIGGER IF EXISTS webhook_trace_inserted ON traces")
    op.execute("DROP TRIGGER IF EXISTS webhook_session_event ON events")
    for function in (
        "webhook_on_golden_run_end()",
        "webhook_on_replay_end()",
        "webhook_on_trace_status()",
        "webhook_on_session_event()",
        "webhook_enqueue(uuid, text, jsonb)",
        "everloop_uuid7()",
    ):
        op.execute(f"DROP FUNCTION IF EXISTS {function}")
    op.drop_index("ix_webhook_deliveries_unstarted", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_webhook_id", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_webhooks_owner_active", table_name="webhooks")
    op.drop_index("ix_webhooks_owner_id", table_name="webhooks")
    op.drop_table("webhooks")
