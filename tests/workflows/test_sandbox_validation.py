"""The Worker constructor's sandbox validation must not fail because the garbage collector ran a
finalizer in the middle of it, nor a workflow task because a finalizer ran inside its sandbox.

On Python 3.11 an import's module-lock bookkeeping is not re-entrant (CPython gh-91351): a finalizer
that imports anything taking a module lock, run inside the window where the sandbox's own import
takes one, makes that import raise `KeyError(<thread id>)`, seen in CI as "RuntimeError: Failed
validating workflow WebhookDelivery" (temporalio/sdk-python#585). redis-py's asyncio pool
finalizer is such a finalizer, and the tests' threads leave such pools behind.
`core.temporal.workflow_runner` pauses the collector while it validates, validates a definition
once per process, and passes redis through."""

from __future__ import annotations

import contextlib
import gc
import sys
import uuid
from collections.abc import Iterator

from temporalio import workflow

# The sandbox imports this module again to run its workflows: what they do not use comes from the
# worker as it is.
with workflow.unsafe.imports_passed_through():
    import pytest
    import redis as host_redis
    import redis.asyncio as aioredis
    from temporalio.testing import WorkflowEnvironment
    from temporalio.worker import Worker
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

    from core.temporal import workflow_runner


@workflow.defn(sandboxed=True)
class Probe:
    @workflow.run
    async def run(self) -> int:
        return 1


@workflow.defn(sandboxed=True)
class CollectsGarbage:
    @workflow.run
    async def run(self) -> list[int]:
        # What the collector does on its own at any allocation: here at a known point, inside the
        # sandbox, with a redis pool waiting to be finalized (`_leave_a_pool`).
        collected = gc.collect()
        # Which redis the pool's finalizer imported in here: the worker's, or one of its own.
        return [collected, id(sys.modules.get("redis"))]


class _Finalizer:
    """Garbage that is always pending: each one, when collected, leaves the next, and runs `action`
    in whatever thread the collector runs in, as the tests' threads' garbage does."""

    active = True

    def __init__(self, action: str) -> None:
        self.action = action
        self.cycle = self

    def __del__(self) -> None:
        if _Finalizer.active:
            _actions[self.action]()
            _Finalizer(self.action)


def _import_missing() -> None:
    # As an optional dependency's probe does: the lookup takes a module lock.
    with contextlib.suppress(ImportError):
        import everloop_no_such_module  # type: ignore[import-not-found]  # noqa: F401


def _pool() -> aioredis.ConnectionPool:
    pool = aioredis.ConnectionPool.from_url("redis://127.0.0.1:1")
    # Never opened, as the tests' pools are not after `aclose()`: their finalizer counts them.
    pool._available_connections.append(pool.make_connection())  # type: ignore[no-untyped-call]
    return pool


_ready_pools: list[aioredis.ConnectionPool] = []  # made beforehand: making one imports things


def _leave_a_pool() -> None:
    if _ready_pools:
        pool = _ready_pools.pop()
        pool.cycle = pool  # type: ignore[attr-defined]  # only the cyclic collector frees it


_actions = {"import_missing": _import_missing, "leave_a_pool": _leave_a_pool}


@pytest.fixture
def collector_always_finalizing() -> Iterator[None]:
    """The collector runs at nearly every allocation, and each run finalizes an object that
    imports a module that does not exist."""
    thresholds = gc.get_threshold()
    _Finalizer.active = True
    _Finalizer("import_missing")
    gc.set_threshold(1)
    try:
        yield
    finally:
        _Finalizer.active = False
        gc.set_threshold(*thresholds)
        gc.collect()


# Validation builds a workflow instance, which wants a running event loop: the tests are async.
async def test_the_premise_temporals_runner_fails_when_a_finalizer_imports_mid_validation(
    collector_always_finalizing: None,
) -> None:
    # Temporal's own runner, with core.temporal's restrictions: without the collector paused, the
    # finalizer's import lands in an import's lock window (if this passes, the premise is gone:
    # CPython or temporalio fixed it, and the pause may go).
    plain = SandboxedWorkflowRunner(restrictions=workflow_runner().restrictions)
    with pytest.raises(KeyError):
        plain.prepare_workflow(Probe.__temporal_workflow_definition)  # type: ignore[attr-defined]


def fresh_runner() -> SandboxedWorkflowRunner:
    """`workflow_runner()` in a configuration no earlier validation in this process had (one more
    module passed through, one that does not exist), so none may stand in for this one."""
    runner = workflow_runner()
    unique = runner.restrictions.with_passthrough_modules(f"everloop_fresh_{uuid.uuid4().hex}")
    object.__setattr__(runner, "restrictions", unique)
    return runner


async def test_validation_is_not_broken_by_a_finalizer_importing_mid_way(
    collector_always_finalizing: None,
) -> None:
    fresh_runner().prepare_workflow(Probe.__temporal_workflow_definition)  # type: ignore[attr-defined]


async def test_a_definition_is_validated_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    sandboxes: list[object] = []
    create_instance = SandboxedWorkflowRunner.create_instance

    def counted(self: SandboxedWorkflowRunner, det: object) -> object:
        sandboxes.append(det)
        return create_instance(self, det)  # type: ignore[arg-type]

    monkeypatch.setattr(SandboxedWorkflowRunner, "create_instance", counted)
    defn = Probe.__temporal_workflow_definition  # type: ignore[attr-defined]
    runner = fresh_runner()
    runner.prepare_workflow(defn)
    # A second Worker in the process, with a runner of the same configuration: the same check.
    again = workflow_runner()
    object.__setattr__(again, "restrictions", runner.restrictions)
    again.prepare_workflow(defn)
    assert len(sandboxes) == 1
    fresh_runner().prepare_workflow(defn)  # another configuration is another check
    assert len(sandboxes) == 2


async def test_a_redis_pool_finalized_inside_a_workflow_task_uses_the_workers_redis(
    env: WorkflowEnvironment,
) -> None:
    _ready_pools.extend(_pool() for _ in range(200))
    _Finalizer.active = True
    _Finalizer("leave_a_pool")
    gc.collect()  # the first pool is now waiting for the next collection, wherever it runs
    task_queue = f"sandbox-gc-{uuid.uuid4().hex}"
    try:
        async with Worker(
            env.client,
            task_queue=task_queue,
            workflows=[CollectsGarbage],
            workflow_runner=workflow_runner(),
            # Collecting 200 pools inside one workflow task outlasts the 2 s deadlock detector on a
            # loaded machine (it failed a full run); the test is about which redis the finalizer uses.
            debug_mode=True,
        ):
            collected, seen = await env.client.execute_workflow(
                CollectsGarbage.run, id=f"sandbox-gc-{uuid.uuid4()}", task_queue=task_queue
            )
    finally:
        _Finalizer.active = False
        _ready_pools.clear()
        gc.collect()
    assert collected > 0  # the premise: a pool was finalized inside the workflow's sandbox
    assert seen == id(host_redis)
