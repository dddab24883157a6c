"""Four sweeps, run in every worker (overlapping sweeps are harmless):

- hands the loop any user message whose dispatch was lost (the API stored it, then could not reach
  Temporal, or died before signalling); the workflow ignores a message it already has;
- hands the loop any client-side tool result whose delivery was lost (the same, for
  `POST .../tool-results`); the workflow ignores a result it already has;
- closes a turn whose workflow ended without closing it (failed, terminated, or out of retries
  while the database was away), with `turn.failed`, so no session stays `active` forever;
- starts the workflow of a replay run left `pending` (the API stored it, then died or lost
  Temporal's answer before starting it); a run's workflow that exists already is left alone;
- with OTLP export on, sends the finished turns that were not exported (their worker died, the
  backend was away) to the OTLP backend: one worker at a time, backing off while it fails;
- starts the workflow of every webhook delivery that has none yet (`WebhookDispatcher`): at once
  when the transaction that stored it commits (PostgreSQL's NOTIFY), and every EVERY_S in case a
  notice was missed (the listening connection was down, the worker was starting).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

import redis.asyncio as redis
import structlog
from sqlalchemy import text
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from core.db import Database
from core.schemas.turns import SessionLoop
from services import client_tools, events, forks, golden, loop, replays, stranded, webhooks
from services.otlp_export import TurnExporter, sole_sweeper

log = structlog.get_logger("everloop.sweeper")

GRACE = timedelta(seconds=10)  # a normal dispatch happens within the POST; give it this long
HORIZON = timedelta(days=1)  # older messages were dealt with, or need a person
EVERY_S = 10.0
# A turn open this long is checked against Temporal (one still running there is left alone).
STRANDED_GRACE = timedelta(seconds=30)
QUERY_TIMEOUT = timedelta(seconds=5)
# A turn found running is not asked about again for this long.
RUNNING_RECHECK = timedelta(minutes=5)
CHECKS_AT_ONCE = 8

_UNSTARTED = text(
    """
    SELECT m.id, m.session_id, s.agent_id
    FROM messages m JOIN sessions s ON s.id = m.session_id
    WHERE m.role = 'user'
      AND m.created_at < now() - make_interval(secs => :grace)
      AND m.created_at > now() - make_interval(secs => :horizon)
      AND NOT EXISTS (
        SELECT 1 FROM events e
        WHERE e.session_id = m.session_id AND e.type = 'turn.started'
          AND e.context ->> 'input_message_id' = m.id::text
      )
      -- A fork's copied history is never answered again; its own turn's start is the fork sweep's.
      AND NOT coalesce(m.metadata ? 'copied_from', false)
    ORDER BY m.created_at
    LIMIT 500
    """
)


async def sweep_once(db: Database, client: Client, task_queue: str, grace: timedelta = GRACE) -> int:
    """Signals every undispatched message once; returns how many."""
    async with db.session() as session:
        rows = (
            await session.execute(
                _UNSTARTED, {"grace": grace.total_seconds(), "horizon": HORIZON.total_seconds()}
            )
        ).all()
    for message_id, session_id, agent_id in rows:
        await loop.hand_over(client, task_queue, session_id, agent_id, message_id)
    if rows:
        log.info("re-dispatched messages", count=len(rows))
    return len(rows)


class ResultSweep:
    """Hands on the client-side tool results stored in open turns that their workflow still waits
    for. A turn whose stored results the workflow was found to have already is not asked about
    again for a while (unless another result is stored), so a turn that waits a day for one call
    while it has another's costs Temporal a query every few minutes, not every sweep."""

    def __init__(self, db: Database, client: Client, grace: timedelta = GRACE) -> None:
        self.db = db
        self.client = client
        self.grace = grace
        # (turn id, its stored call ids) -> until when they are taken as delivered
        self._delivered_until: dict[tuple[str, frozenset[str]], float] = {}

    async def run_once(self) -> int:
        """Returns how many results it handed on."""
        async with self.db.session() as session:
            found = await client_tools.stored_in_open_turns(session, self.grace)
        now = asyncio.get_running_loop().time()
        self._delivered_until = {k: u for k, u in self._delivered_until.items() if u > now}
        handed = 0
        for stored in found:
            seen = (stored.turn_id, frozenset(o.tool_call_id for o in stored.outcomes))
            if seen in self._delivered_until:
                continue
            try:
                handed += await client_tools.hand_on(self.client, stored)
            except Exception as exc:  # no worker answers the query, Temporal is away: next time
                log.info(
                    "cannot hand on client tool results", session_id=str(stored.session_id), error=str(exc)
                )
                continue
            self._delivered_until[seen] = now + RUNNING_RECHECK.total_seconds()
        return handed


async def hand_on_results(db: Database, client: Client, grace: timedelta = GRACE) -> int:
    """One sweep with nothing remembered: hands on every stored result a workflow still waits for."""
    return await ResultSweep(db, client, grace).run_once()


class StrandedSweep:
    """Closes every open turn that its session's workflow no longer runs. Remembers, for a while,
    the turns it found running (a tool waiting days for approval, a step waiting for the database),
    so that many long turns cost Temporal a few calls a minute and never hide a stranded one."""

    def __init__(
        self, db: Database, client: Client, bus: redis.Redis, grace: timedelta = STRANDED_GRACE
    ) -> None:
        self.db = db
        self.client = client
        self.bus = bus
        self.grace = grace
        self._running_until: dict[str, float] = {}  # turn id -> until when it is taken as running

    async def run_once(self) -> int:
        """Returns how many turns it closed."""
        async with self.db.session() as session:
            candidates = await stranded.open_turns(session, self.grace)
        now = asyncio.get_running_loop().time()
        self._running_until = {t: u for t, u in self._running_until.items() if u > now}
        unsure = [t for t in candidates if t.turn_id not in self._running_until]
        gate = asyncio.Semaphore(CHECKS_AT_ONCE)

        async def check(turn: stranded.OpenTurn) -> bool:
            async with gate:
                return await self._check(turn)

        closed = await asyncio.gather(*(check(t) for t in unsure))
        return sum(closed)

    async def _check(self, turn: stranded.OpenTurn) -> bool:
        try:
            reason = await _why_stranded(self.client, SessionLoop.workflow_id(turn.session_id), turn.turn_id)
        except Exception as exc:  # no worker answers the query, Temporal is away: ask next time
            log.info(
                "cannot tell whether a turn is stranded", session_id=str(turn.session_id), error=str(exc)
            )
            return False
        if reason is None:
            self._running_until[turn.turn_id] = (
                asyncio.get_running_loop().time() + RUNNING_RECHECK.total_seconds()
            )
            return False
        async with self.db.session() as session:
            stored = await stranded.close_turn(session, turn, reason)
        if not stored:
            return False
        log.warning(
            "closed a stranded turn", session_id=str(turn.session_id), turn_id=turn.turn_id, why=reason
        )
        await events.publish_all(self.bus, stored)
        return True


async def close_stranded(
    db: Database, client: Client, bus: redis.Redis, grace: timedelta = STRANDED_GRACE
) -> int:
    """One sweep with nothing remembered: closes every open turn its workflow no longer runs."""
    return await StrandedSweep(db, client, bus, grace).run_once()


async def _why_stranded(client: Client, workflow_id: str, turn_id: str) -> str | None:
    """Why the turn can no longer end by itself, or None when its workflow still runs it. Raises when
    Temporal cannot tell now (the next sweep asks again)."""
    handle = client.get_workflow_handle(workflow_id)
    try:
        described = await handle.describe()
    except RPCError as exc:
        # Only the workflow's absence counts: a missing namespace (a misconfigured or reset
        # Temporal) must not make every open turn look stranded.
        if exc.status == RPCStatusCode.NOT_FOUND and "namespace" not in exc.message.lower():
            return "its workflow is gone"
        raise
    status = described.status
    if status != WorkflowExecutionStatus.RUNNING:
        name = status.name.lower().replace("_", " ") if status is not None else "ended"
        return f"its workflow {name}" if status != WorkflowExecutionStatus.COMPLETED else "its workflow ended"
    # Running: the turn is open only if it is the one the workflow runs now. A workflow that failed
    # and was started again by a later message runs another turn (or none yet).
    current = await handle.query(SessionLoop.CURRENT_TURN, rpc_timeout=QUERY_TIMEOUT)
    if current == turn_id:
        return None
    return "its workflow moved on without closing it"


class ExportSweep:
    """Sends the finished turns still owed to the OTLP backend (`TurnExporter.export_due`). Only
    one worker's sweep runs at a time (`sole_sweeper`): with several, each owed turn would go out
    once per worker."""

    def __init__(self, db: Database, exporter: TurnExporter) -> None:
        self.db = db
        self.exporter = exporter

    async def run_once(self) -> int:
        """Returns how many turns it sent (0 when another worker's sweep runs)."""
        async with sole_sweeper(self.db) as mine:
            return await self.exporter.export_due(self.db) if mine else 0


async def sweep_forever(
    db: Database,
    client: Client,
    task_queue: str,
    bus: redis.Redis,
    exporter: TurnExporter | None = None,
    *,
    webhook_schedule: tuple[float, ...],
) -> None:
    """The sweeps, each in its own loop (a slow one never holds up the others); the export sweep
    only with an exporter (OTEL_EXPORTER_OTLP_ENDPOINT). `webhook_schedule`: WEBHOOK_RETRY_SCHEDULE."""
    await asyncio.gather(
        _redispatch_forever(db, client, task_queue),
        _hand_on_forever(db, client),
        _close_forever(db, client, bus),
        _replays_forever(db, client, task_queue),
        WebhookDispatcher(db, client, task_queue, webhook_schedule).run_forever(),
        *([_export_forever(db, exporter)] if exporter is not None else []),
    )


class WebhookDispatcher:
    """Starts each webhook delivery's workflow (`services.webhooks.start_unstarted`). The triggers
    that store deliveries NOTIFY at commit; this LISTENs on its own connection and runs at once,
    and every EVERY_S regardless, so a notice missed while the connection was down costs at most
    that long. Several workers' dispatchers share the work (the claim skips locked rows)."""

    LISTEN_CHECK_S = 30.0  # how often the listening connection is checked to be alive

    def __init__(self, db: Database, client: Client, task_queue: str, schedule: tuple[float, ...]) -> None:
        self.db = db
        self.client = client
        self.task_queue = task_queue
        self.schedule = schedule
        self._wake = asyncio.Event()

    async def run_once(self) -> int:
        """Returns how many workflows it started."""
        return await webhooks.start_unstarted(self.db, self.client, self.task_queue, self.schedule)

    async def run_forever(self) -> None:
        listener = asyncio.create_task(self._listen_forever())
        try:
            while True:
                self._wake.clear()
                try:
                    await self.run_once()
                except Exception as exc:
                    log.warning("webhook dispatch failed", error=str(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), EVERY_S)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    def _notified(self, *_: Any) -> None:
        self._wake.set()

    async def _listen_forever(self) -> None:
        while True:
            try:
                async with self.db.engine.connect() as conn:
                    raw = (await conn.get_raw_connection()).driver_connection
                    assert raw is not None
                    await raw.add_listener(webhooks.CHANNEL, self._notified)
                    self._wake.set()  # whatever was stored while nobody listened
                    try:
                        while True:
                            await asyncio.sleep(self.LISTEN_CHECK_S)
                            await raw.fetchval("SELECT 1")
                    finally:
                        with contextlib.suppress(Exception):
                            await raw.remove_listener(webhooks.CHANNEL, self._notified)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the periodic run covers the gap
                log.info("webhook listener lost; reconnecting", error=str(exc))
            await asyncio.sleep(EVERY_S)


async def _redispatch_forever(db: Database, client: Client, task_queue: str) -> None:
    while True:
        try:
            await sweep_once(db, client, task_queue)
        except Exception as exc:  # the next sweep tries again
            log.warning("sweep failed", error=str(exc))
        await asyncio.sleep(EVERY_S)


async def _hand_on_forever(db: Database, client: Client) -> None:
    sweep = ResultSweep(db, client)
    while True:
        try:
            await sweep.run_once()
        except Exception as exc:
            log.warning("client tool result sweep failed", error=str(exc))
        await asyncio.sleep(EVERY_S)


async def _close_forever(db: Database, client: Client, bus: redis.Redis) -> None:
    sweep = StrandedSweep(db, client, bus)
    while True:
        try:
            await sweep.run_once()
        except Exception as exc:
            log.warning("stranded-turn sweep failed", error=str(exc))
        await asyncio.sleep(EVERY_S)


async def start_pending_replays(
    db: Database, client: Client, task_queue: str, grace: timedelta = GRACE
) -> int:
    """One sweep: starts every replay, fork and golden test run still `pending` after `grace`;
    returns how many."""
    async with db.session() as session:
        started = await replays.start_pending(session, client, task_queue, grace, HORIZON)
        started += await forks.start_pending(session, client, task_queue, grace, HORIZON)
        started += await golden.start_pending(session, client, task_queue, grace, HORIZON)
        stranded_forks = await forks.settle_stranded(session, client)
    if stranded_forks:
        log.info("failed forks whose workflow had ended", count=stranded_forks)
    if started:
        log.info("started pending replays", count=started)
    return started


async def _replays_forever(db: Database, client: Client, task_queue: str) -> None:
    while True:
        try:
            await start_pending_replays(db, client, task_queue)
        except Exception as exc:
            log.warning("pending replay sweep failed", error=str(exc))
        await asyncio.sleep(EVERY_S)


async def _export_forever(db: Database, exporter: TurnExporter) -> None:
    sweep = ExportSweep(db, exporter)
    while True:
        # A failed send pauses the exporter (10 s, doubling up to 5 min): no run meanwhile.
        if not exporter.paused():
            try:
                await sweep.run_once()
            except Exception as exc:
                log.warning("OTLP export sweep failed", error=str(exc))
        await asyncio.sleep(EVERY_S)
