"""A record logged while a workflow runs in Temporal's sandbox must not import litellm there.

litellm (imported by the worker for its activities) puts a secret-redaction filter on the `asyncio`
logger, and that filter imports `litellm.constants` on each record. Under load asyncio's own
exception handler logs while a workflow task runs; inside the sandbox the import re-imported
litellm from scratch, which reached openai's `urllib.request.Request` subclass and raised
`RestrictedWorkflowAccessError` (seen as a failed workflow task in CI). `core.temporal.workflow_runner`
passes litellm and its clients through, so the sandbox uses the worker's own modules."""

from __future__ import annotations

import importlib
import logging
import uuid

from temporalio import workflow
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from core.temporal import workflow_runner


@workflow.defn(sandboxed=True)
class LogsOnAsyncio:
    @workflow.run
    async def run(self) -> str:
        try:
            # What asyncio's default exception handler does with a stray error.
            logging.getLogger("asyncio").error("Task exception was never retrieved: %s", "boom")
        except Exception as exc:  # the failure is returned, so the test shows it
            return f"{type(exc).__name__}: {exc}"
        return "logged"


def _import_litellm() -> None:
    # Imported here, not at the top: the sandbox re-imports this module to validate the workflow,
    # and the worker's workflow modules do not import litellm either (its activities do).
    importlib.import_module("litellm")


def test_litellm_filters_the_asyncio_logger() -> None:
    _import_litellm()
    # The premise: without litellm's filter on this logger there is nothing to guard against.
    assert logging.getLogger("asyncio").filters, "litellm no longer filters the asyncio logger"


async def test_a_record_logged_in_the_sandbox_does_not_reimport_litellm(env: WorkflowEnvironment) -> None:
    _import_litellm()
    task_queue = f"sandbox-logging-{uuid.uuid4().hex}"
    async with Worker(
        env.client, task_queue=task_queue, workflows=[LogsOnAsyncio], workflow_runner=workflow_runner()
    ):
        result = await env.client.execute_workflow(
            LogsOnAsyncio.run, id=f"sandbox-logging-{uuid.uuid4()}", task_queue=task_queue
        )
    assert result == "logged"
