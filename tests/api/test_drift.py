"""Drift detection through the API on the real stack (full auth): synthetic traffic ingested with
`POST /v1/traces` whose cost doubles makes one cost alert (high, both values, both windows), the same
traffic unchanged makes none; a repeated run adds nothing; resolving moves the alert out of the
default list and into the summary's counts; another account sees none of it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select, text

from core.db import Database
from core.db.drift import DriftAlert
from core.db.traces import Project
from core.schemas.drift import Severity
from core.settings import Settings
from everloop.stack import Endpoints
from services import drift, drift_stats
from services.drift_stats import Finding
from tests import drift_traffic
from tests.api.test_auth_full import As, clear_rate_limits, full_settings, register
from tests.apps import app_for

WINDOW_END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
async def client(endpoints: Endpoints, db: Database) -> AsyncIterator[AsyncTestClient[Litestar]]:
    await clear_rate_limits(endpoints)
    async with AsyncTestClient(app=app_for(full_settings(endpoints), configure_logs=False)) as test_client:
        yield test_client


async def _run(who: As, window_end: datetime = WINDOW_END) -> dict[str, object]:
    ran = await who.post("/v1/drift/run", {"window_end": window_end.isoformat()})
    assert ran.status_code == 200, ran.text
    result: dict[str, object] = ran.json()
    return result


async def test_a_doubled_cost_is_one_high_cost_alert(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))
    await drift_traffic.baseline_and_recent(alice, WINDOW_END, baseline_cost=0.01, recent_cost=0.02)

    result = await _run(alice)
    assert result["groups_tested"] == 2  # the model's calls, and the trace name's tool mix
    assert result["alerts_created"] == 1
    assert result["window_end"] == "2026-11-20T12:00:00Z"
    assert result["window_start"] == "2026-11-19T12:00:00Z"
    assert result["baseline_start"] == "2026-11-12T12:00:00Z"

    alerts = (await alice.get("/v1/drift/alerts")).json()
    assert isinstance(alerts, list) and len(alerts) == 1  # a bare array, as 001 answers
    alert = alerts[0]
    assert (alert["metric"], alert["severity"], alert["test"]) == ("cost", "high", "mann_whitney_u")
    assert (alert["scope_kind"], alert["scope"], alert["model"]) == (
        "trace_name",
        "pipeline-drift",
        "gpt-drift",
    )
    assert alert["baseline_value"] == pytest.approx(0.01, rel=0.03)
    assert alert["current_value"] == pytest.approx(0.02, rel=0.03)
    assert alert["change"] == pytest.approx(1.0, rel=0.05)
    assert alert["p_value"] < 1e-6
    assert alert["windows"] == {
        "baseline": {"start": "2026-11-12T12:00:00Z", "end": "2026-11-19T12:00:00Z", "count": 40},
        "current": {"start": "2026-11-19T12:00:00Z", "end": "2026-11-20T12:00:00Z", "count": 40},
    }
    assert alert["resolved_at"] is None and alert["created_at"]
    assert result["alerts"] == alerts

    # The same windows again (a retried or second run): the alert is found, not made twice.
    again = await _run(alice)
    assert again["alerts_created"] == 0 and again["alerts"] == alerts
    assert len((await alice.get("/v1/drift/alerts")).json()) == 1

    # An hour later the drift is still there: while its alert is open, no second one.
    later = await _run(alice, WINDOW_END + timedelta(hours=1))
    assert later["alerts_created"] == 0

    # Another account sees nothing, and cannot resolve it.
    bob = As(client, await register(client))
    assert (await bob.get("/v1/drift/alerts?include_resolved=true")).json() == []
    assert (await bob.get("/v1/drift/summary")).json()["total_alerts"] == 0
    assert (await bob.post(f"/v1/drift/alerts/{alert['id']}/resolve", {})).status_code == 404

    resolved = await alice.post(f"/v1/drift/alerts/{alert['id']}/resolve", {})
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["resolved_at"] is not None
    # Resolving again keeps the first time.
    twice = await alice.post(f"/v1/drift/alerts/{alert['id']}/resolve", {})
    assert twice.json()["resolved_at"] == resolved.json()["resolved_at"]

    assert (await alice.get("/v1/drift/alerts")).json() == []
    everything = (await alice.get("/v1/drift/alerts?include_resolved=true")).json()
    assert [a["id"] for a in everything] == [alert["id"]] and everything[0]["resolved_at"]
    summary = (await alice.get("/v1/drift/summary")).json()
    assert (summary["total_alerts"], summary["unresolved"]) == (1, 0)
    assert summary["by_severity"] == {"low": 0, "medium": 0, "high": 0}
    assert [a["id"] for a in summary["recent_alerts"]] == [alert["id"]]

    # Resolved while the drift goes on: the next run alerts again.
    after = await _run(alice, WINDOW_END + timedelta(hours=2))
    assert after["alerts_created"] == 1
    summary = (await alice.get("/v1/drift/summary")).json()
    assert (summary["total_alerts"], summary["unresolved"], summary["by_severity"]["high"]) == (2, 1, 1)


async def test_traffic_that_does_not_change_makes_no_alert(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))
    await drift_traffic.baseline_and_recent(alice, WINDOW_END, baseline_cost=0.01, recent_cost=0.01)
    result = await _run(alice)
    assert result["groups_tested"] == 2  # tested, and found nothing
    assert (result["alerts_created"], result["alerts"]) == (0, [])
    assert (await alice.get("/v1/drift/alerts?include_resolved=true")).json() == []
    summary = (await alice.get("/v1/drift/summary")).json()
    assert summary == {
        "total_alerts": 0,
        "unresolved": 0,
        "by_severity": {"low": 0, "medium": 0, "high": 0},
        "recent_alerts": [],
    }


async def test_too_few_samples_are_not_tested(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))
    await drift_traffic.baseline_and_recent(alice, WINDOW_END, baseline_cost=0.01, recent_cost=0.05, count=10)
    result = await _run(alice)
    assert (result["groups_tested"], result["alerts_created"]) == (2, 0)  # 10 < DRIFT_MIN_SAMPLES


async def test_bad_requests(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))
    assert (await alice.post(f"/v1/drift/alerts/{uuid.uuid4()}/resolve", {})).status_code == 404
    assert (await alice.post("/v1/drift/run", {"window_end": "yesterday"})).status_code == 400
    assert (await alice.post("/v1/drift/run", {"unknown": 1})).status_code == 400
    assert (await alice.post("/v1/drift/run", {"window_end": 1764417600})).status_code == 400
    assert (await alice.get("/v1/drift/alerts?limit=0")).status_code == 400
    # A project key reads and writes traces only: drift is the account's (403).
    project = await alice.post("/v1/projects", {"name": "keyed"})
    key = {"Authorization": f"Bearer {project.json()['api_key']}"}
    assert (await client.get("/v1/drift/alerts", headers=key)).status_code == 403
    assert (await client.post("/v1/drift/run", json={}, headers=key)).status_code == 403
    assert (await alice.post("/v1/drift/run", {"window_end": "0001-01-02T00:00:00Z"})).status_code == 400
    # An empty body: a run for now, over no traffic.
    now = await alice.post("/v1/drift/run", {})
    assert now.status_code == 200 and now.json()["groups_tested"] == 0
    # No body at all (curl -X POST without -d): the same.
    bare = await client.post("/v1/drift/run", headers=alice.headers)
    assert bare.status_code == 200, bare.text
    assert bare.json()["groups_tested"] == 0 and bare.json()["window_end"]


async def alert_of(db: Database, project_id: str, scope: str) -> str:
    """An alert stored for the owner of `project_id` (the isolation walk's resource)."""
    async with db.session() as session:
        project = await session.scalar(select(Project).where(Project.id == uuid.UUID(project_id)))
        assert project is not None
        start = WINDOW_END - timedelta(days=1)
        alert = DriftAlert(
            owner_id=project.owner_id,
            project_id=project.id,
            scope_kind="trace_name",
            scope=scope,
            model="",
            metric="cost",
            severity="high",
            baseline_value=1.0,
            current_value=2.0,
            test="mann_whitney_u",
            statistic=0.0,
            p_value=1e-9,
            baseline_count=40,
            window_count=40,
            baseline_start=start - timedelta(days=7),
            baseline_end=start,
            window_start=start,
            window_end=WINDOW_END,
            details={"note": scope},
        )
        session.add(alert)
        await session.commit()
        return str(alert.id)


# An agent's turns (only the loop sets `agent_id`, so they are written here as the loop writes
# them: a trace per turn, an `llm` span and a `tool` span): `n` turns from `first`, 10 minutes apart.
AGENT_TURNS = """
WITH t AS (
    INSERT INTO traces (id, owner_id, project_id, trace_id, name, agent_id, status, started_at)
    SELECT gen_random_uuid(), :owner, :project, :prefix || g, 'Helper', :agent, 'ok',
           CAST(:first AS timestamptz) + g * interval '10 minutes'
    FROM generate_series(1, :n) g
    RETURNING id, started_at, CAST(split_part(trace_id, '-', 2) AS int) AS g
)
INSERT INTO spans (id, owner_id, trace_pk, span_id, name, kind, status, start_time, end_time, model,
                   input_tokens, output_tokens, cost)
SELECT gen_random_uuid(), :owner, t.id, s.kind, s.name, s.kind,
       CASE WHEN s.kind = 'llm' AND t.g % 3 = 0 AND :failing THEN 'error' ELSE 'ok' END,
       t.started_at, t.started_at + (:latency_ms + (t.g % 7) * 10) * interval '1 millisecond',
       CASE WHEN s.kind = 'llm' THEN 'gpt-agent' END, 100, 20, CASE WHEN s.kind = 'llm' THEN 0.01 END
FROM t, LATERAL (VALUES ('llm', 'reason'),
                        ('tool', CASE WHEN :browsing AND t.g % 2 = 0 THEN 'browse' ELSE 'search' END)
                ) AS s(kind, name)
"""


async def test_an_agents_slower_failing_turns_with_another_tool_mix(
    client: AsyncTestClient[Litestar], db: Database
) -> None:
    """Scoped by the agent: latency doubles, a third of the calls fail, half the tool calls move to
    another tool; cost, tokens and output length stay: three alerts, those three."""
    alice = As(client, await register(client))
    agent = await alice.post("/v1/agents", {"name": "Helper", "system_prompt": "Be brief."})
    assert agent.status_code == 201, agent.text
    agent_id = agent.json()["id"]
    projects = (await alice.get("/v1/projects")).json()["projects"]
    async with db.session() as session:
        owner = await session.scalar(
            select(Project.owner_id).where(Project.id == uuid.UUID(projects[0]["id"]))
        )
        common = {
            "owner": owner,
            "project": uuid.UUID(projects[0]["id"]),
            "agent": uuid.UUID(agent_id),
            "n": 60,
        }
        await session.execute(
            text(AGENT_TURNS),
            {
                **common,
                "prefix": "base-",
                "first": WINDOW_END - timedelta(days=3),
                "latency_ms": 500,
                "failing": False,
                "browsing": False,
            },
        )
        await session.execute(
            text(AGENT_TURNS),
            {
                **common,
                "prefix": "recent-",
                "first": WINDOW_END - timedelta(hours=11),
                "latency_ms": 1000,
                "failing": True,
                "browsing": True,
            },
        )
        await session.commit()

    result = await _run(alice)
    assert result["groups_tested"] == 2 and result["alerts_created"] == 3
    found = {a["metric"]: a for a in (await alice.get("/v1/drift/alerts")).json()}
    assert sorted(found) == ["error_rate", "latency_ms", "tool_mix"]
    for alert in found.values():
        assert (alert["scope_kind"], alert["scope"], alert["severity"]) == ("agent", agent_id, "high")
    latency = found["latency_ms"]
    assert (latency["model"], latency["test"]) == ("gpt-agent", "mann_whitney_u")
    assert latency["baseline_value"] == pytest.approx(530, abs=5)
    assert latency["current_value"] == pytest.approx(1030, abs=5)
    errors = found["error_rate"]
    assert (errors["test"], errors["baseline_value"], errors["current_value"]) == (
        "fisher_exact",
        0.0,
        pytest.approx(1 / 3),
    )
    assert errors["details"] == {"baseline_events": 0, "current_events": 20}
    mix = found["tool_mix"]
    assert (mix["model"], mix["test"], mix["details"]["tool"]) == ("", "chi_square", "search")
    assert (mix["baseline_value"], mix["current_value"]) == (1.0, 0.5)
    assert mix["windows"]["current"]["count"] == 60


async def test_the_statistics_run_off_the_event_loop(
    client: AsyncTestClient[Litestar], monkeypatch: pytest.MonkeyPatch
) -> None:
    """POST /v1/drift/run's tests (CPU seconds for a large account) run in a thread: the API's event
    loop keeps answering meanwhile (review item 3)."""
    alice = As(client, await register(client))
    await drift_traffic.baseline_and_recent(alice, WINDOW_END, baseline_cost=0.01, recent_cost=0.02)
    on_loop: list[bool] = []
    compare = drift_stats.compare_values

    def watched(metric: str, baseline: Sequence[float], current: Sequence[float], **kw: Any) -> object:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:  # no loop in this thread: a worker thread
            on_loop.append(False)
        return compare(metric, baseline, current, **kw)

    monkeypatch.setattr(drift_stats, "compare_values", watched)
    result = await _run(alice)
    assert result["alerts_created"] == 1
    assert on_loop and not any(on_loop)


def _cost(severity: Severity, current: float) -> Finding:
    return Finding(
        metric="cost",
        test="mann_whitney_u",
        statistic=1.0,
        p_value=1e-9,
        baseline_value=0.01,
        current_value=current,
        baseline_count=40,
        current_count=40,
        severity=severity,
    )


async def _open_alerts(db: Database, owner: uuid.UUID) -> list[tuple[str, float, datetime]]:
    async with db.session() as session:
        rows = (
            await session.execute(
                select(DriftAlert.severity, DriftAlert.current_value, DriftAlert.window_end).where(
                    DriftAlert.owner_id == owner, DriftAlert.resolved_at.is_(None)
                )
            )
        ).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


async def test_two_runs_at_once_open_one_alert_which_the_later_window_keeps_current(
    client: AsyncTestClient[Litestar], db: Database, settings: Settings
) -> None:
    """The schedule's run and a POST /v1/drift/run with another window_end, at once (READ COMMITTED):
    one open alert for the drift, not two; it shows the later window's values and severity, so a
    drift grown from low to high reads high (review item 10)."""
    alice = As(client, await register(client))
    project_id = uuid.UUID((await alice.get("/v1/projects")).json()["projects"][0]["id"])
    async with db.session() as session:
        owner = await session.scalar(select(Project.owner_id).where(Project.id == project_id))
    assert owner is not None
    key = (project_id, "trace_name", "pipeline", "gpt")
    early, later = (
        drift.windows(settings, WINDOW_END),
        drift.windows(settings, WINDOW_END + timedelta(hours=1)),
    )

    async with db.session() as first, db.session() as second:
        made_first = await drift.store_alerts(first, owner, early, [(key, _cost("low", 0.012))])

        async def other_run() -> list[uuid.UUID]:
            made = await drift.store_alerts(second, owner, later, [(key, _cost("high", 0.02))])
            await second.commit()
            return made

        racing = asyncio.create_task(other_run())
        # The other run's insert waits for the first's uncommitted one (the open alerts' unique
        # index); without the index it would not wait, and would insert a second open alert.
        async with db.session() as watcher:
            for _ in range(400):  # at most ~4 s
                if racing.done():
                    break
                waiting = await watcher.scalar(text("SELECT count(*) FROM pg_locks WHERE NOT granted"))
                await watcher.rollback()
                if waiting:
                    break
                await asyncio.sleep(0.01)  # nothing to await: a lock wait is seen only by polling
        await first.commit()
        made_later = await racing

    assert len(made_first) == 1 and made_later == []  # the later run updated the open alert
    assert await _open_alerts(db, owner) == [("high", 0.02, later.window_end)]

    # An older window than the open alert's changes nothing.
    async with db.session() as session:
        assert await drift.store_alerts(session, owner, early, [(key, _cost("medium", 0.014))]) == []
        await session.commit()
    assert await _open_alerts(db, owner) == [("high", 0.02, later.window_end)]
