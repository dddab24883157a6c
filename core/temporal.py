"""The one way to reach Temporal: a client with the shared data converter."""

from __future__ import annotations

import gc
import threading
from dataclasses import dataclass

from temporalio import workflow
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from core.converter import data_converter


async def connect(address: str, namespace: str, *, lazy: bool = False) -> Client:
    """`lazy=True` defers the connection to the first call, so a server that is down at start-up
    shows as not ready instead of stopping the process."""
    return await Client.connect(address, namespace=namespace, data_converter=data_converter, lazy=lazy)


async def workflow_exists(client: Client, workflow_id: str) -> bool:
    """Whether Temporal has a workflow of this id (running or closed). Raises when Temporal cannot
    tell (an unknown namespace is not an unknown workflow)."""
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND and "namespace" not in exc.message.lower():
            return False
        raise
    return True


# Modules the sandbox takes from the worker instead of importing them again inside it. Workflows
# never call them; the worker's own code does, and some of it runs inside a sandbox that happens to
# be applied in the thread (a logging filter, a finalizer), where a fresh import fails or races.
PASSTHROUGH_MODULES = ("litellm", "openai", "httpx", "httpcore", "redis")


@dataclass(frozen=True)
class _ValidateOncePerProcess(SandboxedWorkflowRunner):
    """Temporal's sandbox runner whose `prepare_workflow` (the Worker constructor's check that a
    workflow loads in the sandbox) runs once per workflow and sandbox configuration per process,
    with the cyclic garbage collector paused while it runs.

    Why: on Python 3.11 a module import takes a module lock whose bookkeeping is not re-entrant
    (`importlib._bootstrap._ModuleLock.acquire` deletes `_blocking_on[thread id]` on the way out;
    CPython gh-91351, fixed in 3.12). Loading the workflow modules inside the sandbox takes those
    locks (the sandbox imports through pure-Python importlib); if the garbage collector runs a
    finalizer in that window and the finalizer imports anything that takes a module lock, the
    nested import deletes the entry first and the workflow's own import raises `KeyError(<thread
    id>)`: "Failed validating workflow ..." (temporalio/sdk-python#585, #1833). redis-py's
    asyncio `ConnectionPool.__del__` is such a finalizer (it imports `redis.observability.recorder`)
    and the tests' threads leave such pools behind: 1,400 validations beside a thread leaving them
    failed twice that way (KeyError at importlib/_bootstrap.py:123). With the collector paused,
    nothing but the sandbox's own code runs in the window (tests/workflows/test_sandbox_validation.py:
    a finalizer probing for a missing module failed every validation without the pause).

    Validating once is sound: the check imports the workflow's module in a fresh sandbox and builds
    an instance, which depends only on the code and on this configuration, both fixed for the
    process; a production worker process builds one Worker anyway, while the tests build one per
    test (and paid the check, and the exposure, each time)."""

    def prepare_workflow(self, defn: workflow._Definition) -> None:
        key = (
            defn.cls,
            self.restrictions,
            self.runner_class,
            tuple(self._worker_level_failure_exception_types),
        )
        with _validated_lock:
            if key in _validated:
                return
            collecting = gc.isenabled()
            gc.disable()
            try:
                super().prepare_workflow(defn)
            finally:
                if collecting:
                    gc.enable()
            _validated.append(key)


# Compared with ==, not hashed: SandboxRestrictions holds sets.
_validated: list[tuple[object, ...]] = []
_validated_lock = threading.Lock()


def workflow_runner() -> SandboxedWorkflowRunner:
    """Temporal's sandbox, with litellm, the HTTP clients it loads and redis passed through.

    Workflows never call litellm, but litellm's secret-redaction filter sits on the `asyncio` logger
    and imports `litellm.constants` on every record. When asyncio logs while a workflow task runs
    (its exception handler does, under load), that import ran inside the sandbox, which re-imported
    litellm from scratch and failed on openai's `urllib.request.Request` subclass
    (`RestrictedWorkflowAccessError`): a failed workflow task. Passed through, the sandbox uses the
    worker's already-imported modules (tests/workflows/test_sandbox_logging.py). redis for the same
    reason: redis-py's pool finalizer imports a redis module, and the garbage collector may run it
    in a thread while a sandbox is applied there (a workflow task, a validation), where the import
    re-imported redis and could break the sandbox's own import (see `_ValidateOncePerProcess`)."""
    restrictions = SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    return _ValidateOncePerProcess(restrictions=restrictions)
