"""`/v1/golden-tests` at the HTTP edge (docs/golden_tests.md): a bad request is a 400 naming the
field and stores nothing; create, list, get, delete; another account's trace, test or run is a 404;
a project key is refused (it reaches trace routes only) and the service reads its project's
rows only; a start Temporal never took fails the run. No worker here:
the runs themselves are tests/loop/test_golden.py."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from temporalio.client import Client

from activities.golden import REGEX_LIMIT_S, search
from core.db import Database
from core.db.models import Agent, GoldenResult, GoldenRun, GoldenTest, Project, Trace
from core.errors import Forbidden, NotFound
from core.identity import Identity
from core.schemas.golden import MAX_PATTERN, MAX_TESTS, GoldenLoop, GoldenRunRequest
from everloop.stack import Endpoints
from services import golden
from services import golden_judges as judges
from tests.api.test_auth_full import As, clear_rate_limits, full_settings, register
from tests.apps import app_for


async def turn_trace_of(db: Database, agent_id: str, trace_id: str | None = None) -> str:
    """An agent turn's trace of the agent's owner, stored as the loop stores one (no worker runs
    here, so no turn does): what a golden test pins."""
    trace_id = trace_id or f"turn-{uuid.uuid4()}"
    async with db.session() as s:
        agent = await s.get(Agent, uuid.UUID(agent_id))
        assert agent is not None
        project = await s.scalar(
            select(Project).where(Project.owner_id == agent.owner_id, Project.is_default)
        )
        if project is None:
            project = Project(owner_id=agent.owner_id, name="Default", is_default=True)
            s.add(project)
            await s.flush()
        s.add(
            Trace(
                owner_id=agent.owner_id,
                project_id=project.id,
                trace_id=trace_id,
                name="Helper",
                status="ok",
                agent_id=agent.id,
                session_id=str(uuid.uuid4()),
            )
        )
        await s.commit()
    return trace_id


async def _agent(user: As, model_id: str = "sim-1") -> str:
    provider = (await user.post("/v1/llm-providers", {"name": "Sim", "provider_type": "simulator"})).json()
    model = await user.post(f"/v1/llm-providers/{provider['id']}/models", {"model_id": model_id})
    assert model.status_code == 201, model.text
    agent = await user.post("/v1/agents", {"name": "Helper", "default_model_id": model.json()["id"]})
    assert agent.status_code == 201, agent.text
    agent_id: str = agent.json()["id"]
    return agent_id


async def _count(db: Database, table: Any) -> int:
    async with db.session() as s:
        return int(await s.scalar(select(func.count()).select_from(table)) or 0)


@pytest.fixture
async def full(endpoints: Endpoints, task_queue: str) -> AsyncIterator[AsyncTestClient[Litestar]]:
    await clear_rate_limits(endpoints)
    # No worker on this task queue: a run's workflow is started and stays `pending`.
    settings = full_settings(endpoints, TEMPORAL_TASK_QUEUE=task_queue)
    async with AsyncTestClient(app=app_for(settings, configure_logs=False)) as test_client:
        yield test_client


SEMANTIC = {"final_message": "done", "match": "semantic", "embedding_model": "sim-1"}
BAD_OUTCOMES: list[tuple[Any, str]] = [
    ({}, "expected_outcome"),
    ([], "expected_outcome"),
    ({"colour": "red"}, "expected_outcome.colour"),
    ({"status": "done"}, "expected_outcome.status"),
    ({"final_message": "x", "match": "fuzzy"}, "expected_outcome.match"),
    ({"match": "contains"}, "expected_outcome.match"),
    ({"final_message": 7}, "expected_outcome.final_message"),
    ({"final_message": "", "match": "contains"}, "expected_outcome.final_message"),
    ({"final_message": "(unclosed", "match": "regex"}, "expected_outcome.final_message"),
    ({"final_message": "a" * (MAX_PATTERN + 1), "match": "regex"}, "expected_outcome.final_message"),
    ({"final_message": "not json", "match": "json_subset"}, "expected_outcome.final_message"),
    ({"final_message": 5, "match": "json_subset"}, "expected_outcome.final_message"),
    ({"final_message": "x", "match": "semantic"}, "expected_outcome.embedding_model"),
    ({**SEMANTIC, "embedding_model": "nope"}, "expected_outcome.embedding_model"),
    ({**SEMANTIC, "threshold": 2}, "expected_outcome.threshold"),
    ({**SEMANTIC, "threshold": 0}, "expected_outcome.threshold"),
    ({"final_message": "x", "threshold": 0.5}, "expected_outcome.threshold"),
    ({"judge": "be nice"}, "expected_outcome.judge"),
    ({"judge": {"rubric": "", "model": "sim-1"}}, "expected_outcome.judge.rubric"),
    ({"judge": {"rubric": "ok", "model": "nope"}}, "expected_outcome.judge.model"),
    ({"judge": {"rubric": "ok", "model": "sim-1", "colour": 1}}, "expected_outcome.judge.colour"),
    ({"max_cost": -1}, "expected_outcome.max_cost"),
    ({"max_cost": "cheap"}, "expected_outcome.max_cost"),
    ({"max_duration_ms": 0}, "expected_outcome.max_duration_ms"),
    ({"max_duration_ms": 1.5}, "expected_outcome.max_duration_ms"),
    ({"tools": []}, "expected_outcome.tools"),
    ({"tools": [3]}, "expected_outcome.tools"),
]


async def test_a_bad_test_is_a_400_naming_the_field_and_nothing_is_stored(
    full: AsyncTestClient[Litestar], db: Database
) -> None:
    alice = As(full, await register(full))
    trace_id = await turn_trace_of(db, await _agent(alice))
    before = await _count(db, GoldenTest)
    for expected, field in BAD_OUTCOMES:
        response = await alice.post(
            "/v1/golden-tests", {"trace_id": trace_id, "name": "t", "expected_outcome": expected}
        )
        assert response.status_code == 400, (expected, response.text)
        assert response.json()["field"] == field, (expected, response.json())
        assert field in response.json()["error"]
    bodies: list[tuple[dict[str, Any], str]] = [
        ({"trace_id": trace_id, "name": "", "expected_outcome": {"status": "completed"}}, "name"),
        ({"trace_id": trace_id, "name": "t", "expected_outcome": {"status": "completed"}, "x": 1}, "x"),
        ({"trace_id": trace_id, "name": "t"}, "expected_outcome"),
    ]
    for body, field in bodies:
        response = await alice.post("/v1/golden-tests", body)
        assert response.status_code == 400, (body, response.text)
        assert field in response.json()["error"], (body, response.json())
    # An app's trace (ingested) is no agent turn: it cannot be run again.
    spans = [{"trace_id": "ingested", "span_id": "s1", "name": "call", "kind": "llm"}]
    assert (await full.post("/v1/traces", json={"spans": spans}, headers=alice.headers)).status_code == 201
    response = await alice.post(
        "/v1/golden-tests", {"trace_id": "ingested", "name": "t", "expected_outcome": {"status": "completed"}}
    )
    assert response.status_code == 400 and response.json()["field"] == "trace_id", response.text
    assert await _count(db, GoldenTest) == before


async def test_create_list_get_and_delete(full: AsyncTestClient[Litestar], db: Database) -> None:
    alice = As(full, await register(full))
    trace_id = await turn_trace_of(db, await _agent(alice))
    expected = {
        "status": "completed",
        "final_message": r"resolved\b",
        "match": "regex",
        "judge": {"rubric": "Polite.", "model": "sim-1"},
        "max_cost": 0.5,
        "max_duration_ms": 30_000,
        "tools": ["current_time"],
    }
    created = []
    for name in ("first", "second"):
        response = await alice.post(
            "/v1/golden-tests",
            {
                "trace_id": trace_id,
                "name": name,
                "description": "Complete customer issue resolution workflow",
                "tags": ["support", "critical"],
                "expected_outcome": expected,
            },
        )
        assert response.status_code == 201, response.text
        created.append(response.json())
    first = created[0]
    assert first["trace_id"] == trace_id and first["expected_outcome"] == expected
    assert first["tags"] == ["support", "critical"] and first["created_by"]
    assert (await alice.get(f"/v1/golden-tests/{first['id']}")).json() == first
    page = (await alice.get("/v1/golden-tests?limit=1")).json()
    assert (page["total"], page["has_more"], page["limit"]) == (2, True, 1)
    assert [t["name"] for t in page["golden_tests"]] == ["second"]  # newest first
    last = (await alice.get("/v1/golden-tests?limit=1&offset=1")).json()
    assert last["has_more"] is False and [t["name"] for t in last["golden_tests"]] == ["first"]
    deleted = await alice.delete(f"/v1/golden-tests/{first['id']}")
    assert deleted.status_code == 200 and deleted.json() == {"deleted": True, "test_id": first["id"]}
    assert (await alice.get(f"/v1/golden-tests/{first['id']}")).status_code == 404
    assert (await alice.delete(f"/v1/golden-tests/{first['id']}")).status_code == 404


async def test_a_bad_run_is_a_400_naming_the_field(full: AsyncTestClient[Litestar], db: Database) -> None:
    alice = As(full, await register(full))
    trace_id = await turn_trace_of(db, await _agent(alice))
    test = await alice.post(
        "/v1/golden-tests", {"trace_id": trace_id, "name": "t", "expected_outcome": {"status": "completed"}}
    )
    test_id = test.json()["id"]
    before = await _count(db, GoldenRun)
    runs: list[tuple[dict[str, Any], str]] = [
        ({"test_ids": []}, "test_ids"),
        ({"test_ids": [str(uuid.uuid4()) for _ in range(MAX_TESTS + 1)]}, "test_ids"),
        ({"test_ids": ["abc"]}, "test_ids[0]"),
        ({"test_ids": [test_id, test_id]}, "test_ids[1]"),
        ({"test_ids": [test_id], "modifications": {"colour": "red"}}, "modifications.colour"),
        ({"test_ids": [test_id], "modifications": {"timeout": 0}}, "modifications.timeout"),
        ({"test_ids": [test_id], "modifications": {"timeout": 3601}}, "modifications.timeout"),
        ({"test_ids": [test_id], "modifications": {"timeout": "60"}}, "modifications.timeout"),
        ({"test_ids": [test_id], "modifications": {"temperature": 5}}, "modifications.temperature"),
        ({"test_ids": [test_id], "modifications": {"messages": []}}, "modifications.messages"),
        ({"test_ids": [test_id], "modifications": {"model": "nope"}}, "modifications.model"),
        ({"test_ids": [test_id], "modifications": []}, "modifications"),
    ]
    for body, field in runs:
        response = await alice.post("/v1/golden-tests/run", body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["field"] == field, (body, response.json())
    missing = await alice.post("/v1/golden-tests/run", {"test_ids": [str(uuid.uuid4())]})
    assert missing.status_code == 404
    assert await _count(db, GoldenRun) == before


async def test_another_account_s_tests_and_runs_are_404_and_a_project_key_only_reads(
    full: AsyncTestClient[Litestar], db: Database, temporal_client: Client
) -> None:
    alice = As(full, await register(full))
    trace_id = await turn_trace_of(db, await _agent(alice))
    pinned = await alice.post(
        "/v1/golden-tests",
        {"trace_id": trace_id, "name": "Alice's", "expected_outcome": {"status": "completed"}},
    )
    test_id = pinned.json()["id"]
    started = await alice.post(
        "/v1/golden-tests/run", {"test_ids": [test_id], "modifications": {"timeout": 60}}
    )
    assert started.status_code == 201, started.text
    run_id = started.json()["run_id"]
    try:
        assert started.json()["status"] == "pending" and started.json()["total_tests"] == 1
        run = (await alice.get(f"/v1/golden-tests/runs/{run_id}")).json()
        assert (run["status"], run["modifications"], run["test_ids"]) == (
            "pending",
            {"timeout": 60},
            [test_id],
        )
        [result] = run["results"]
        assert (result["status"], result["name"], result["trace_id"], result["checks"]) == (
            "pending",
            "Alice's",
            trace_id,
            [],
        )
        assert (await alice.get("/v1/golden-tests/runs")).json()["total"] == 1

        bob = As(full, await register(full))
        await turn_trace_of(db, await _agent(bob), trace_id)  # a trace of the same id, his own
        for path in (f"/v1/golden-tests/{test_id}", f"/v1/golden-tests/runs/{run_id}"):
            response = await bob.get(path)
            assert response.status_code == 404 and "Alice" not in response.text
        assert (await bob.delete(f"/v1/golden-tests/{test_id}")).status_code == 404
        assert (await bob.post("/v1/golden-tests/run", {"test_ids": [test_id]})).status_code == 404
        for path in ("/v1/golden-tests", "/v1/golden-tests/runs"):
            listed = (await bob.get(path)).json()
            assert listed["total"] == 0 and "Alice" not in str(listed)
        # Bob pins his own trace of that id, never Alice's.
        his = await bob.post(
            "/v1/golden-tests",
            {"trace_id": trace_id, "name": "Bob's", "expected_outcome": {"status": "completed"}},
        )
        assert his.status_code == 201 and his.json()["project_id"] != pinned.json()["project_id"]

        # A project key reads its own project's golden tests and runs only (api/security.py lets
        # it GET them; another project's test is 404), and starts no run (it spends the account's
        # models).
        project = (await alice.post("/v1/projects", {"name": "keyed"})).json()
        key = {"Authorization": f"Bearer {project['api_key']}"}
        assert (await full.get(f"/v1/golden-tests/{test_id}", headers=key)).status_code == 404
        listed = await full.get("/v1/golden-tests", headers=key)
        assert listed.status_code == 200 and listed.json()["total"] == 0
        refused = await full.post("/v1/golden-tests/run", json={"test_ids": [test_id]}, headers=key)
        assert refused.status_code == 403
        # Behind that, the service reads a project key's project only: a run of the default
        # project's tests is not another project's, and a project key starts no run.
        async with db.session() as s:
            test = await s.get(GoldenTest, uuid.UUID(test_id))
            assert test is not None
            owner = Identity(user_id=test.owner_id, email="a@example.com", role="user", method="project_key")
            own = msgspec.structs.replace(owner, project_id=test.project_id)
            other = msgspec.structs.replace(owner, project_id=uuid.UUID(project["id"]))
            assert (await golden.get_run(s, own, uuid.UUID(run_id))).results
            assert (await golden.get_test(s, own, test.id)).id == test.id
            with pytest.raises(NotFound):
                await golden.get_run(s, other, uuid.UUID(run_id))
            with pytest.raises(NotFound):
                await golden.get_test(s, other, test.id)
            assert (await golden.list_runs(s, other, 0, 10)).total == 0
            with pytest.raises(Forbidden):
                await golden.create_run(s, own, GoldenRunRequest(test_ids=[test_id]))
    finally:
        await temporal_client.get_workflow_handle(GoldenLoop.workflow_id(run_id)).terminate("test over")


async def test_a_start_whose_answer_was_lost_leaves_the_run_to_its_workflow(
    full: AsyncTestClient[Litestar], db: Database, temporal_client: Client
) -> None:
    """start_workflow failed after Temporal took the workflow: the run is not failed; one whose
    workflow Temporal does not have is."""
    alice = As(full, await register(full))
    trace_id = await turn_trace_of(db, await _agent(alice))
    test = await alice.post(
        "/v1/golden-tests", {"trace_id": trace_id, "name": "t", "expected_outcome": {"status": "completed"}}
    )
    started = await alice.post("/v1/golden-tests/run", {"test_ids": [test.json()["id"]]})
    run_id = uuid.UUID(started.json()["run_id"])
    try:
        async with db.session() as s:
            assert not await golden.settle_unstarted(s, temporal_client, run_id)
            row = await s.get(GoldenRun, run_id, populate_existing=True)
            assert row is not None and (row.status, row.error) == ("pending", None)
    finally:
        await temporal_client.get_workflow_handle(GoldenLoop.workflow_id(run_id)).terminate("test over")
    async with db.session() as s:
        row = await s.get(GoldenRun, run_id)
        assert row is not None
        twin = GoldenRun(owner_id=row.owner_id, test_ids=row.test_ids, total_tests=1)
        s.add(twin)
        await s.commit()
        assert await golden.settle_unstarted(s, temporal_client, twin.id)
        await s.refresh(twin)
        assert (twin.status, twin.error) == ("failed", golden.UNSTARTED)
        # Its workflow, if it ran after all, would fork nothing.
        assert (await golden.plan(s, twin.id)).result_ids == []
        assert (
            await s.scalar(
                select(func.count()).select_from(GoldenResult).where(GoldenResult.run_id == twin.id)
            )
            == 0
        )


def test_json_subset_is_recursive_and_says_where_it_differs() -> None:
    actual = '{"a": {"b": [1, {"c": 2, "d": 3}], "e": true}, "f": 1.0}'
    assert judges.json_subset({"a": {"b": [{"c": 2}]}}, actual) == (True, None)
    assert judges.json_subset({"f": 1}, actual) == (True, None)
    assert judges.json_subset([], "[1]") == (True, None)
    assert judges.json_subset({"a": {"e": 1}}, actual) == (False, "$.a.e: expected 1, got true")
    assert judges.json_subset({"a": {"x": 1}}, actual) == (False, "$.a.x: missing")
    assert judges.json_subset({"a": {"b": [{"c": 3}]}}, actual)[1] == (
        '$.a.b[0]: no item of the array contains {"c": 3}'
    )
    assert judges.json_subset({"a": 1}, 'Here you go: {"a": 1}') == (True, None)
    assert judges.json_subset({"a": 1}, "no json") == (False, "the final message is not JSON")
    assert judges.parse_verdict('```json\n{"pass": true, "reason": "fine"}\n```') == (True, "fine")
    assert judges.parse_verdict('{"pass": "yes"}') is None


async def test_a_regex_is_searched_in_a_process_of_its_own_with_a_time_limit() -> None:
    assert await search(r"^Issue \w+", "Issue resolved") is True
    assert await search(r"\d", "no digits") is False
    assert await search("ü+", "Grüüße") is True
    # Catastrophic backtracking: Python's re would hold the worker for hours; the search is killed.
    started = asyncio.get_running_loop().time()
    assert await search(r"^(a+)+$", "a" * 64 + "b") is None
    assert asyncio.get_running_loop().time() - started < REGEX_LIMIT_S + 3
    check = judges.regex(r"^(a+)+$", "a" * 64 + "b", None, REGEX_LIMIT_S)
    assert not check.passed and check.reason and "did not finish within 2 s" in check.reason
