"""Golden tests (issue 14, Opswald; docs/golden_tests.md): a recorded agent turn's trace pinned with
the outcome it must keep, and runs that fork each pinned turn with the run's modifications
(services/forks.py: a new session answers the turn's user message again, through the real session
workflow) and judge what the fork did (services/golden_judges.py).

A run is a row of `golden_runs` with one `golden_results` row per test, stored by the POST, and a
durable workflow (`golden-run-{id}`, workflows/golden.py) whose steps are here: `plan`,
`fork_test` (once per result: the fork is committed with the result's `replay_id`, so a retried
step finds it), `judge_work` and `store_verdict` (once per result: a judged result is kept), and
`finish`."""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import WorkflowAlreadyStartedError

from core import temporal
from core.db.models import GoldenResult, GoldenRun, GoldenTest, LlmModel, Replay, Span, Trace
from core.errors import Forbidden, InvalidInput, NotFound
from core.identity import Identity
from core.schemas import golden as schema
from core.schemas.golden import (
    DEFAULT_THRESHOLD,
    MATCHES,
    MAX_EXPECTED_TEXT,
    MAX_PATTERN,
    MAX_RUBRIC,
    MAX_TESTS,
    MAX_TIMEOUT_S,
    OUTCOME_KEYS,
    OUTCOMES,
    GoldenCheck,
    GoldenLoop,
)
from services import forks, llm, model_names, trace_queries

UNSTARTED = "the run's workflow could not be started; send the request again"
TEST_GONE = "the golden test was deleted before the run reached it"
JUDGED = ("passed", "failed", "error")
FORK_ENDED = ("completed", "failed", "stopped")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _timeout(run: GoldenRun) -> float | None:
    """The run's per-test time limit (`modifications.timeout`, seconds), None for none."""
    given = (run.modifications or {}).get("timeout")
    return float(given) if isinstance(given, int | float) and not isinstance(given, bool) else None


# ------------------------------------------------------------------------------- expected_outcome


async def _model_named(db: AsyncSession, owner_id: uuid.UUID, value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{field}: the name (model_id) or id of one of your LLM models", field=field)
    if await model_names.find_model(db, owner_id, value) is None:
        raise InvalidInput(f"{field}: no model you may use is named {value!r}", field=field)
    return value


async def check_outcome(db: AsyncSession, owner_id: uuid.UUID, raw: Any) -> dict[str, Any]:
    """The expected outcome, each key checked: a 400 names `expected_outcome.<key>`."""
    top = "expected_outcome"
    if not isinstance(raw, dict) or not raw:
        raise InvalidInput(f"{top}: an object with at least one check (status, final_message...)", field=top)

    def bad(key: str, what: str) -> InvalidInput:
        return InvalidInput(f"{top}.{key}: {what}", field=f"{top}.{key}")

    for key in raw:
        if key not in OUTCOME_KEYS:
            raise bad(key, f"not an outcome key (one of {', '.join(OUTCOME_KEYS)})")
    out = dict(raw)
    if "status" in raw and raw["status"] not in OUTCOMES:
        raise bad("status", f"one of {', '.join(OUTCOMES)}")
    match = raw.get("match", "exact")
    if match not in MATCHES:
        raise bad("match", f"one of {', '.join(MATCHES)}")
    if "match" in raw and "final_message" not in raw:
        raise bad("match", "needs final_message")
    if "final_message" in raw:
        _check_final_message(raw["final_message"], match, bad)
    semantic_keys = [k for k in ("threshold", "embedding_model") if k in raw]
    if match != "semantic" and semantic_keys:
        raise bad(semantic_keys[0], 'only with "match": "semantic"')
    if match == "semantic":
        threshold = raw.get("threshold", DEFAULT_THRESHOLD)
        if not (_number(threshold) and 0 < threshold <= 1):
            raise bad("threshold", "a number above 0, at most 1")
        if "embedding_model" not in raw:
            raise bad("embedding_model", 'required with "match": "semantic" (one of your models)')
        await _model_named(db, owner_id, raw["embedding_model"], f"{top}.embedding_model")
    if "judge" in raw:
        given = raw["judge"]
        if not isinstance(given, dict):
            raise bad("judge", "an object {rubric, model}")
        for key in given:
            if key not in ("rubric", "model"):
                raise bad(f"judge.{key}", "not a judge key (rubric, model)")
        rubric = given.get("rubric")
        if not isinstance(rubric, str) or not rubric.strip() or len(rubric) > MAX_RUBRIC:
            raise bad("judge.rubric", f"a non-empty string of at most {MAX_RUBRIC} characters")
        await _model_named(db, owner_id, given.get("model"), f"{top}.judge.model")
    if "max_cost" in raw and not (_number(raw["max_cost"]) and raw["max_cost"] >= 0):
        raise bad("max_cost", "a number of at least 0 (USD)")
    if "max_duration_ms" in raw and not (
        isinstance(raw["max_duration_ms"], int)
        and not isinstance(raw["max_duration_ms"], bool)
        and raw["max_duration_ms"] >= 1
    ):
        raise bad("max_duration_ms", "a whole number of at least 1")
    if "tools" in raw:
        names = raw["tools"]
        if (
            not isinstance(names, list)
            or not names
            or len(names) > 50
            or not all(isinstance(n, str) and 0 < len(n) <= 255 for n in names)
        ):
            raise bad("tools", "a non-empty list of tool names")
    return out


def _check_final_message(expected: Any, match: str, bad: Any) -> None:
    if match == "json_subset":
        if isinstance(expected, str):
            try:
                expected = json.loads(expected)
            except ValueError:
                raise bad("final_message", "JSON (an object or array, or a string holding one)") from None
        if not isinstance(expected, dict | list) or len(json.dumps(expected)) > MAX_EXPECTED_TEXT:
            raise bad("final_message", f"a JSON object or array of at most {MAX_EXPECTED_TEXT} characters")
        return
    if not isinstance(expected, str) or len(expected) > MAX_EXPECTED_TEXT:
        raise bad("final_message", f"a string of at most {MAX_EXPECTED_TEXT} characters")
    if match == "regex":
        # Bounded: the pattern runs on every judged result, in the worker.
        if len(expected) > MAX_PATTERN:
            raise bad("final_message", f"a pattern of at most {MAX_PATTERN} characters")
        try:
            re.compile(expected)
        except re.error as exc:
            raise bad("final_message", f"not a regular expression (Python re): {exc}") from None
    if match in ("semantic", "contains") and not expected.strip():
        raise bad("final_message", "a non-empty string")


# ------------------------------------------------------------------------------------ the tests


def _tests(who: Identity) -> Any:
    query = select(GoldenTest).where(GoldenTest.owner_id == who.user_id)
    if who.project_id is not None:
        query = query.where(GoldenTest.project_id == who.project_id)
    return query


async def create_test(db: AsyncSession, who: Identity, data: schema.GoldenTestCreate) -> GoldenTest:
    """Pins one of the caller's agent turns (its trace) with the outcome it must keep."""
    trace = await trace_queries.get_trace(db, who, data.trace_id)
    if trace.agent_id is None:
        # Only an agent turn can be forked and run again (an ingested trace has no agent loop).
        raise InvalidInput(
            "trace_id: not an agent turn's trace (only an agent's turns can be run again)", field="trace_id"
        )
    expected = await check_outcome(db, who.user_id, data.expected_outcome)
    test = GoldenTest(
        owner_id=who.user_id,
        project_id=trace.project_id,
        trace_row_id=trace.id,
        trace_id=trace.trace_id,
        name=data.name,
        description=data.description,
        tags=list(data.tags),
        expected_outcome=expected,
        created_by=who.email,
    )
    db.add(test)
    await db.commit()
    await db.refresh(test)
    return test


async def get_test(db: AsyncSession, who: Identity, test_id: uuid.UUID) -> GoldenTest:
    found: GoldenTest | None = await db.scalar(_tests(who).where(GoldenTest.id == test_id))
    if found is None:
        raise NotFound("golden test not found")
    return found


async def list_tests(db: AsyncSession, who: Identity, offset: int, limit: int) -> schema.GoldenTestList:
    total = int(await db.scalar(select(func.count()).select_from(_tests(who).subquery())) or 0)
    rows = (
        await db.execute(
            _tests(who)
            .order_by(GoldenTest.created_at.desc(), GoldenTest.id.desc())
            .offset(offset)
            .limit(limit)
        )
    ).scalars()
    items = [test_of(t) for t in rows]
    return schema.GoldenTestList(
        golden_tests=items, total=total, offset=offset, limit=limit, has_more=offset + len(items) < total
    )


async def delete_test(db: AsyncSession, who: Identity, test_id: uuid.UUID) -> schema.GoldenTestDeleted:
    """Deletes the test; the runs that judged it keep their results (with its name and trace)."""
    test = await get_test(db, who, test_id)
    await db.delete(test)
    await db.commit()
    return schema.GoldenTestDeleted(deleted=True, test_id=test_id)


def test_of(test: GoldenTest) -> schema.GoldenTestOut:
    return schema.GoldenTestOut(
        id=test.id,
        trace_id=test.trace_id,
        name=test.name,
        description=test.description,
        tags=list(test.tags or []),
        expected_outcome=dict(test.expected_outcome or {}),
        project_id=test.project_id,
        created_by=test.created_by,
        created_at=test.created_at,
        updated_at=test.updated_at,
    )


# ------------------------------------------------------------------------------------ the runs


async def check_modifications(db: AsyncSession, owner_id: uuid.UUID, raw: Any) -> dict[str, Any]:
    """The run's modifications (the fork's keys and `timeout`): a 400 names `modifications.<key>`.
    Checked once here, so a bad key fails the POST, not every test of the run."""
    if not isinstance(raw, dict):
        raise InvalidInput("modifications: an object", field="modifications")
    timeout: Any = raw.get("timeout")
    if "timeout" in raw and not (_number(timeout) and 0 < timeout <= MAX_TIMEOUT_S):
        raise InvalidInput(
            f"modifications.timeout: a number of seconds above 0, at most {MAX_TIMEOUT_S}",
            field="modifications.timeout",
        )
    # The fork's own keys, checked as forks.create checks them (it checks them again per test).
    forks.check_modifications({k: v for k, v in raw.items() if k != "timeout"})
    if "model" in raw:
        await _model_named(db, owner_id, raw["model"], "modifications.model")
    return dict(raw)


async def create_run(db: AsyncSession, who: Identity, data: schema.GoldenRunRequest) -> GoldenRun:
    """Stores the run (`pending`) and one result per test (`pending`), committed: the caller starts
    its workflow."""
    if who.project_id is not None:
        # A run forks turns through the account's models: a project key reads, it does not spend.
        raise Forbidden("a project key may not run golden tests: they call the account's models")
    if not data.test_ids or len(data.test_ids) > MAX_TESTS:
        raise InvalidInput(f"test_ids: 1 to {MAX_TESTS} golden test ids", field="test_ids")
    ids: list[uuid.UUID] = []
    for i, given in enumerate(data.test_ids):
        try:
            test_id = uuid.UUID(given) if isinstance(given, str) else None
        except ValueError:
            test_id = None
        if test_id is None:
            raise InvalidInput(f"test_ids[{i}]: a golden test id", field=f"test_ids[{i}]")
        if test_id in ids:
            raise InvalidInput(f"test_ids[{i}]: given twice", field=f"test_ids[{i}]")
        ids.append(test_id)
    modifications = await check_modifications(db, who.user_id, data.modifications)
    found = {t.id: t for t in (await db.execute(_tests(who).where(GoldenTest.id.in_(ids)))).scalars()}
    for test_id in ids:
        if test_id not in found:
            raise NotFound(f"golden test {test_id} not found")
    run = GoldenRun(
        owner_id=who.user_id,
        status="pending",
        test_ids=[str(i) for i in ids],
        modifications=modifications,
        total_tests=len(ids),
        created_by=who.email,
    )
    db.add(run)
    await db.flush()
    for position, test_id in enumerate(ids):
        test = found[test_id]
        db.add(
            GoldenResult(
                run_id=run.id,
                test_id=test.id,
                test_name=test.name,
                trace_id=test.trace_id,
                position=position,
                status="pending",
            )
        )
    await db.commit()
    return run


async def start(client: Client, task_queue: str, run_id: uuid.UUID) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        GoldenLoop.WORKFLOW,
        schema.GoldenRunInput(run_id=str(run_id)),
        id=GoldenLoop.workflow_id(run_id),
        task_queue=task_queue,
    )


async def workflow_exists(client: Client, run_id: uuid.UUID) -> bool:
    """Whether Temporal has the run's workflow. Raises when Temporal cannot tell."""
    return await temporal.workflow_exists(client, GoldenLoop.workflow_id(run_id))


async def settle_unstarted(db: AsyncSession, client: Client | None, run_id: uuid.UUID) -> bool:
    """After a start that failed, as services.replays.settle_unstarted: a workflow Temporal has after
    all (its answer was lost) is left to run; else the run is failed. True when failed."""
    if client is not None:
        with contextlib.suppress(Exception):  # Temporal cannot tell either: failed
            if await workflow_exists(client, run_id):
                return False
    marked = await db.execute(
        update(GoldenRun)
        .where(GoldenRun.id == run_id, GoldenRun.status == "pending")
        .values(status="failed", error=UNSTARTED, completed_at=func.now())
    )
    await db.commit()
    return bool(getattr(marked, "rowcount", 0))


async def start_pending(
    db: AsyncSession, client: Client, task_queue: str, grace: timedelta, horizon: timedelta
) -> int:
    """For the sweeper (as services.replays.start_pending): starts the workflow of every run still
    `pending` after `grace` (the API stored it and died before starting it). A run whose workflow
    exists already is left to it (one workflow id per run). Returns how many it started."""
    ids = list(
        (
            await db.execute(
                select(GoldenRun.id)
                .where(
                    GoldenRun.status == "pending",
                    GoldenRun.created_at < func.now() - grace,
                    GoldenRun.created_at > func.now() - horizon,
                )
                .order_by(GoldenRun.created_at)
                .limit(500)
            )
        ).scalars()
    )
    await db.commit()
    started_now = 0
    for run_id in ids:
        try:
            await start(client, task_queue, run_id)
        except WorkflowAlreadyStartedError:
            continue
        started_now += 1
    return started_now


def _runs(who: Identity) -> Any:
    query = select(GoldenRun).where(GoldenRun.owner_id == who.user_id)
    if who.project_id is not None:
        # A run has no project of its own (its tests may be in several): a project key sees the runs
        # whose tests are all still there and all in its project.
        of_run = (
            select(GoldenResult.id)
            .outerjoin(GoldenTest, GoldenTest.id == GoldenResult.test_id)
            .where(GoldenResult.run_id == GoldenRun.id)
        )
        outside = of_run.where(GoldenTest.project_id.is_distinct_from(who.project_id))
        query = query.where(exists(of_run), ~exists(outside))
    return query


async def get_run(db: AsyncSession, who: Identity, run_id: uuid.UUID) -> schema.GoldenRunOut:
    run: GoldenRun | None = await db.scalar(
        _runs(who).where(GoldenRun.id == run_id).execution_options(populate_existing=True)
    )
    if run is None:
        raise NotFound("golden test run not found")
    rows = (
        await db.execute(
            select(GoldenResult, Replay.session_id)
            .outerjoin(Replay, Replay.id == GoldenResult.replay_id)
            .where(GoldenResult.run_id == run.id)
            .order_by(GoldenResult.position)
            .execution_options(populate_existing=True)
        )
    ).all()
    return run_of(run, [result_of(r, session_id) for r, session_id in rows])


async def list_runs(db: AsyncSession, who: Identity, offset: int, limit: int) -> schema.GoldenRunList:
    total = int(await db.scalar(select(func.count()).select_from(_runs(who).subquery())) or 0)
    rows = (
        await db.execute(
            _runs(who).order_by(GoldenRun.created_at.desc(), GoldenRun.id.desc()).offset(offset).limit(limit)
        )
    ).scalars()
    items = [run_of(r) for r in rows]
    return schema.GoldenRunList(
        runs=items, total=total, offset=offset, limit=limit, has_more=offset + len(items) < total
    )


def run_of(run: GoldenRun, results: list[schema.GoldenResultOut] | None = None) -> schema.GoldenRunOut:
    return schema.GoldenRunOut(
        run_id=run.id,
        status=run.status,
        total_tests=run.total_tests,
        passed=run.passed,
        failed=run.failed,
        test_ids=list(run.test_ids or []),
        modifications=dict(run.modifications or {}),
        created_by=run.created_by,
        error=run.error,
        created_at=run.created_at,
        started_at=run.started_at,
        completed_at=run.completed_at,
        results=results,
    )


def result_of(result: GoldenResult, session_id: uuid.UUID | None) -> schema.GoldenResultOut:
    return schema.GoldenResultOut(
        test_id=result.test_id,
        name=result.test_name,
        trace_id=result.trace_id,
        status=result.status,
        checks=[GoldenCheck(**c) for c in result.checks or []],
        diff=list(result.diff or []),
        final_output=result.final_output,
        cost=float(result.cost) if result.cost is not None else None,
        duration_ms=result.duration_ms,
        replay_id=result.replay_id,
        session_id=session_id,
        error=result.error,
    )


# ------------------------------------------------------------------------------ the workflow's steps


class RunGone(Exception):
    """The run's row is gone (its account was deleted): nothing left to do."""


async def plan(db: AsyncSession, run_id: uuid.UUID) -> schema.GoldenPlan:
    """The run starts: `running`, and its results still to judge, in order."""
    # One statement: the API's `settle_unstarted` moves it from `pending` too, and only one wins.
    await db.execute(
        update(GoldenRun)
        .where(GoldenRun.id == run_id, GoldenRun.status == "pending")
        .values(status="running", started_at=func.now())
    )
    await db.commit()
    run = await db.get(GoldenRun, run_id, populate_existing=True)
    if run is None:
        raise RunGone(f"golden run {run_id}")
    if run.status != "running":
        return schema.GoldenPlan()  # failed before it started: nothing is forked
    ids = (
        await db.execute(
            select(GoldenResult.id)
            .where(GoldenResult.run_id == run_id, GoldenResult.status.not_in(JUDGED))
            .order_by(GoldenResult.position)
        )
    ).scalars()
    return schema.GoldenPlan(result_ids=[str(i) for i in ids], timeout_s=_timeout(run))


async def _result(
    db: AsyncSession, run_id: uuid.UUID, result_id: uuid.UUID
) -> tuple[GoldenRun, GoldenResult]:
    run = await db.get(GoldenRun, run_id, populate_existing=True)
    result = await db.get(GoldenResult, result_id, populate_existing=True)
    if run is None or result is None or result.run_id != run.id:
        raise RunGone(f"golden run {run_id} result {result_id}")
    return run, result


async def _fail(db: AsyncSession, result_id: uuid.UUID, error: str) -> None:
    await db.execute(
        update(GoldenResult)
        .where(GoldenResult.id == result_id, GoldenResult.status.not_in(JUDGED))
        .values(status="error", error=error, updated_at=func.now())
    )
    await db.commit()


async def fork_test(db: AsyncSession, run_id: uuid.UUID, result_id: uuid.UUID) -> forks.Fork | None:
    """The fork of one result's test, made once: a retried step finds the fork the first attempt
    committed (with the result's `replay_id`, in one transaction). None when the test cannot run
    (its result is then `error`, saying why) or was judged already."""
    run, result = await _result(db, run_id, result_id)
    if result.status in JUDGED:
        return None
    if result.replay_id is not None:
        try:
            return await forks.load(db, result.replay_id)
        except NotFound as exc:  # the fork's session was deleted meanwhile
            await _fail(db, result_id, exc.message)
            return None
    test = await db.get(GoldenTest, result.test_id) if result.test_id is not None else None
    if test is None:
        await _fail(db, result_id, TEST_GONE)
        return None
    trace = await db.get(Trace, test.trace_row_id) if test.trace_row_id is not None else None
    if trace is None or trace.owner_id != run.owner_id:
        await _fail(db, result_id, f"the pinned trace {test.trace_id!r} was deleted")
        return None
    modifications = {k: v for k, v in (run.modifications or {}).items() if k != "timeout"}
    try:
        fork = await forks.create(
            db,
            owner_id=run.owner_id,
            trace=trace,
            modifications=modifications,
            fork_from_step=None,
            mode="auto",
            created_by=run.created_by,
        )
    except InvalidInput as exc:
        await db.rollback()
        await _fail(db, result_id, exc.message)
        return None
    # The run's workflow starts the fork's session workflow (as its child), so the fork is taken:
    # `running`, as the API marks a fork it started. The sweeper starts only `pending` forks (a
    # POST that died before starting its own), and must not start this one outside the run.
    fork.replay.status = "running"
    fork.replay.started_at = datetime.now(UTC)
    await db.flush()
    result.replay_id = fork.replay.id
    result.status = "running"
    await db.commit()
    return fork


@dataclass(frozen=True)
class JudgeWork:
    """What judging one result needs, read from the store: the expected outcome, what the fork did,
    and the models the semantic match and the LLM judge call (each None when not asked for)."""

    expected: dict[str, Any]
    outcome: str | None
    final_output: str | None
    cost: float | None
    duration_ms: int | None
    diff: list[dict[str, Any]]
    tools_called: list[str]
    timeout_s: float | None
    embedding_model: LlmModel | None
    judge_model: LlmModel | None


async def judge_work(
    db: AsyncSession, run_id: uuid.UUID, result_id: uuid.UUID, child_error: str | None
) -> JudgeWork | None:
    """None when there is nothing to judge: judged already, or now `error` (the test or fork gone,
    the fork's turn never ended)."""
    run, result = await _result(db, run_id, result_id)
    if result.status in JUDGED:
        return None
    test = await db.get(GoldenTest, result.test_id) if result.test_id is not None else None
    if test is None:
        await _fail(db, result_id, TEST_GONE)
        return None
    replay = await db.get(Replay, result.replay_id, populate_existing=True) if result.replay_id else None
    if replay is None or replay.status not in FORK_ENDED:
        why = child_error or "its workflow ended without an outcome"
        await _fail(db, result_id, f"the forked turn did not finish: {why}")
        return None
    outcome: dict[str, Any] = replay.result or {}
    expected = dict(test.expected_outcome or {})
    tools_called: list[str] = []
    if "tools" in expected and replay.result_trace_id:
        tools_called = list(
            (
                await db.execute(
                    select(Span.name)
                    .join(Trace, Trace.id == Span.trace_pk)
                    .where(
                        Trace.owner_id == run.owner_id,
                        Trace.trace_id == replay.result_trace_id,
                        Span.kind == "tool",
                    )
                )
            ).scalars()
        )
    embedding = judge = None
    if expected.get("match") == "semantic":
        embedding = await model_names.find_model(db, run.owner_id, str(expected.get("embedding_model")))
    if isinstance(expected.get("judge"), dict):
        judge = await model_names.find_model(db, run.owner_id, str(expected["judge"].get("model")))
    final = outcome.get("final_output")
    return JudgeWork(
        expected=expected,
        outcome=outcome.get("outcome") if isinstance(outcome.get("outcome"), str) else None,
        final_output=final if isinstance(final, str) else None,
        cost=float(outcome["total_cost"]) if _number(outcome.get("total_cost")) else None,
        duration_ms=int(outcome["duration_ms"]) if _number(outcome.get("duration_ms")) else None,
        diff=list(outcome.get("changes_from_original") or []),
        tools_called=tools_called,
        timeout_s=_timeout(run),
        embedding_model=embedding,
        judge_model=judge,
    )


def ready(model: LlmModel | None, what: str) -> str | None:
    """Why the judge's model cannot be called, or None."""
    if model is None:
        return f"the {what} is none of the models you may use any more"
    if not llm.healthy(model):
        return (
            f"the {what} {model.model_id!r} is not ready (it or its provider is inactive, or it has no key)"
        )
    return None


async def store_verdict(
    db: AsyncSession, run_id: uuid.UUID, result_id: uuid.UUID, work: JudgeWork, checks: list[GoldenCheck]
) -> str:
    """Stores the verdict unless one is stored already (a retried judge keeps the first)."""
    status = "passed" if all(c.passed for c in checks) else "failed"
    stored = await db.execute(
        update(GoldenResult)
        .where(
            GoldenResult.id == result_id, GoldenResult.run_id == run_id, GoldenResult.status.not_in(JUDGED)
        )
        .values(
            status=status,
            checks=[
                {
                    "check": c.check,
                    "passed": c.passed,
                    "expected": c.expected,
                    "actual": c.actual,
                    "reason": c.reason,
                }
                for c in checks
            ],
            diff=work.diff,
            final_output=work.final_output,
            cost=Decimal(str(work.cost)) if work.cost is not None else None,
            duration_ms=work.duration_ms,
            updated_at=func.now(),
        )
    )
    await db.commit()
    if not getattr(stored, "rowcount", 0):
        found = await db.scalar(select(GoldenResult.status).where(GoldenResult.id == result_id))
        return str(found or status)
    return status


async def fail_result(db: AsyncSession, run_id: uuid.UUID, result_id: uuid.UUID, error: str) -> None:
    await _result(db, run_id, result_id)
    await _fail(db, result_id, error)


async def finish(db: AsyncSession, run_id: uuid.UUID) -> schema.GoldenFinished:
    """Counts the verdicts and closes the run (`completed`; a run failed before it started stays
    `failed`). Idempotent."""
    run = await db.get(GoldenRun, run_id, populate_existing=True)
    if run is None:
        raise RunGone(f"golden run {run_id}")
    counts = dict(
        (
            await db.execute(
                select(GoldenResult.status, func.count())
                .where(GoldenResult.run_id == run_id)
                .group_by(GoldenResult.status)
            )
        ).all()
    )
    passed = int(counts.get("passed", 0))
    failed = sum(int(n) for s, n in counts.items() if s != "passed")
    if run.status == "running":
        await db.execute(
            update(GoldenRun)
            .where(GoldenRun.id == run_id, GoldenRun.status == "running")
            .values(status="completed", passed=passed, failed=failed, completed_at=func.now())
        )
        await db.commit()
        run = await db.get(GoldenRun, run_id, populate_existing=True)
        assert run is not None
    return schema.GoldenFinished(status=run.status, passed=run.passed, failed=run.failed)
