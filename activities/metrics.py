"""The worker's Prometheus metrics: every activity timed by an interceptor (docs/metrics.md).

An activity inbound interceptor sees each activity run (local ones too) with its decoded input and
its result, so turns, steps, LLM calls and tool calls are measured here, where the worker runs them,
without a line in the activities themselves. Labels are activity types and outcomes only.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from redis.asyncio import Redis
from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from core.db import Database
from core.metrics import WORK_BUCKETS, PoolCollector, new_registry
from core.schemas.turns import SessionLoop, ToolOutcome, TurnEnd


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
            "Steps of turns run to their end (a step: one LLM call, then its tool calls)",
            registry=registry,
        )
        self.llm_seconds = Histogram(
            "everloop_llm_call_duration_seconds",
            "Seconds of one LLM call attempt (the `reason` activity: the call, streamed, and the "
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

    def record(self, kind: str, args: Any, result: Any, outcome: str, seconds: float) -> None:
        self.activities.labels(kind, outcome).observe(seconds)
        if kind == SessionLoop.REASON:
            self.llm_seconds.labels(outcome).observe(seconds)
            if outcome == "completed":
                self.steps.inc()
        elif kind == SessionLoop.RUN_TOOL:
            status = result.status if isinstance(result, ToolOutcome) else "failed"
            self.tool_seconds.labels(status).observe(seconds)
        elif kind == SessionLoop.FINISH_TURN and outcome == "completed":
            # Counted when the turn's end is stored: a failed attempt is retried (the local attempt
            # by a regular activity), and the turn ends once.
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
            running.dec()
            self.metrics.record(kind, input.args, result, outcome, time.perf_counter() - started)


class MetricsInterceptor(Interceptor):
    """Times every activity the worker runs into `metrics`."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next, self.metrics)
