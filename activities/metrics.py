"""The worker's Prometheus metrics: every activity timed by an interceptor (docs/metrics.md).

An activity inbound interceptor sees each activity run (local ones too) with its decoded input and
its result, so activities and tool calls are measured here, where the worker runs them. What an
attempt's input and result cannot say, the activity tells with one line (`happened`): whether it
called the model or stored a step's reply or a turn's end, which a retried attempt may find done
already (so a turn counts once however often its end is retried). Labels are activity types and
outcomes only.
"""

from __future__ import annotations

import asyncio
import time
from contextvars import ContextVar
from enum import StrEnum
from typing import Any

import structlog
from prometheus_client import Counter, Gauge, Histogram
from redis.asyncio import Redis
from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from core.db import Database
from core.metrics import WORK_BUCKETS, PoolCollector, new_registry
from core.schemas.turns import SessionLoop, ToolOutcome, TurnEnd

log = structlog.get_logger("everloop.metrics")


class Effect(StrEnum):
    """What an activity attempt did, beyond what its input and result say."""

    LLM_CALLED = "llm_called"  # `reason` called the model (not: it found the reply stored)
    REPLY_STORED = "reply_stored"  # `reason` stored its step's reply (not: an earlier attempt had)
    TURN_ENDED = "turn_ended"  # `finish_turn` stored the turn's end (not: an earlier attempt had)


# The effects of the attempt the interceptor is running: an async activity runs in the
# interceptor's task, so it sees this context. None outside a timed worker (tests, no metrics).
_effects: ContextVar[set[Effect] | None] = ContextVar("everloop_activity_effects", default=None)


def happened(effect: Effect) -> None:
    """Tells the worker's metrics, if they time this attempt, that it did `effect`."""
    effects = _effects.get()
    if effects is not None:
        effects.add(effect)


class WorkerMetrics:
    """One worker process's metrics, in its own registry, with its pools' use read at each scrape."""

    def __init__(self, db: Database, redis: Redis) -> None:
        self.registry = registry = new_registry()
        registry.register(PoolCollector(lambda: (db, redis)))
        self.activities = Histogram(
            "everloop_activity_duration_seconds",
            "Seconds one activity attempt ran in this worker, by activity type and outcome "
            "(completed, failed, cancelled)",
            ["activity", "outcome"],
            buckets=WORK_BUCKETS,
            registry=registry,
        )
        self.waited = Histogram(
            "everloop_activity_schedule_to_start_seconds",
            "Seconds an activity attempt waited between being scheduled and starting, by activity "
            "type: it grows when the workers' slots are all taken",
            ["activity"],
            buckets=WORK_BUCKETS,
            registry=registry,
        )
        self.running = Gauge(
            "everloop_activities_running",
            "Activities running in this worker now, by activity type",
            ["activity"],
            registry=registry,
        )
        self.turns = Counter(
            "everloop_turns",
            "Turns ended, by outcome (completed, failed, cancelled)",
            ["outcome"],
            registry=registry,
        )
        self.turn_seconds = Histogram(
            "everloop_turn_duration_seconds",
            "Seconds from a turn's start to its end, by outcome",
            ["outcome"],
            buckets=WORK_BUCKETS,
            registry=registry,
        )
        self.steps = Counter(
            "everloop_steps",
            "Steps whose reply was stored (a step: one LLM call, then its tool calls), once each",
            registry=registry,
        )
        self.llm_seconds = Histogram(
            "everloop_llm_call_duration_seconds",
            "Seconds of one `reason` attempt that called the model (the call, streamed, and the "
            "step's two short transactions around it), by outcome",
            ["outcome"],
            buckets=WORK_BUCKETS,
            registry=registry,
        )
        self.tool_seconds = Histogram(
            "everloop_tool_call_duration_seconds",
            "Seconds of one tool call attempt (the `run_tool` activity), by the call's status "
            "(success, error, timeout, cancelled, denied; failed: the attempt raised)",
            ["status"],
            buckets=WORK_BUCKETS,
            registry=registry,
        )

    def record(
        self, kind: str, args: Any, result: Any, outcome: str, seconds: float, effects: set[Effect]
    ) -> None:
        self.activities.labels(kind, outcome).observe(seconds)
        # Counted by what the attempt did, whatever its outcome: a step's reply or a turn's end,
        # once stored, stays stored, and the retry that follows a failed attempt finds it done.
        if kind == SessionLoop.REASON:
            if Effect.LLM_CALLED in effects:
                self.llm_seconds.labels(outcome).observe(seconds)
            if Effect.REPLY_STORED in effects:
                self.steps.inc()
        elif kind == SessionLoop.RUN_TOOL:
            status = result.status if isinstance(result, ToolOutcome) else "failed"
            self.tool_seconds.labels(status).observe(seconds)
        elif kind == SessionLoop.FINISH_TURN and Effect.TURN_ENDED in effects:
            end = args[0] if args else None
            if isinstance(end, TurnEnd):
                self.turns.labels(end.outcome).inc()
                self.turn_seconds.labels(end.outcome).observe(end.duration_ms / 1000)


class _Inbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, metrics: WorkerMetrics) -> None:
        super().__init__(next)
        self.metrics = metrics

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        kind = info.activity_type
        if info.current_attempt_scheduled_time is not None:
            waited = (info.started_time - info.current_attempt_scheduled_time).total_seconds()
            self.metrics.waited.labels(kind).observe(max(waited, 0.0))
        running = self.metrics.running.labels(kind)
        running.inc()
        effects: set[Effect] = set()
        token = _effects.set(effects)
        started = time.perf_counter()
        outcome, result = "failed", None
        try:
            result = await super().execute_activity(input)
            outcome = "completed"
            return result
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            _effects.reset(token)
            running.dec()
            try:
                self.metrics.record(kind, input.args, result, outcome, time.perf_counter() - started, effects)
            except Exception:
                # A metric is not worth an activity: its result or its error goes on as it was.
                log.exception("activity metrics not recorded", activity=kind)


class MetricsInterceptor(Interceptor):
    """Times every activity the worker runs into `metrics`."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next, self.metrics)
