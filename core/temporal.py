"""The one way to reach Temporal: a client with the shared data converter."""

from __future__ import annotations

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


def workflow_runner() -> SandboxedWorkflowRunner:
    """Temporal's sandbox, with litellm and the HTTP clients it loads passed through.

    Workflows never call litellm, but litellm's secret-redaction filter sits on the `asyncio` logger
    and imports `litellm.constants` on every record. When asyncio logs while a workflow task runs
    (its exception handler does, under load), that import ran inside the sandbox, which re-imported
    litellm from scratch and failed on openai's `urllib.request.Request` subclass
    (`RestrictedWorkflowAccessError`): a failed workflow task. Passed through, the sandbox uses the
    worker's already-imported modules (tests/workflows/test_sandbox_logging.py)."""
    restrictions = SandboxRestrictions.default.with_passthrough_modules(
        "litellm", "openai", "httpx", "httpcore"
    )
    return SandboxedWorkflowRunner(restrictions=restrictions)
