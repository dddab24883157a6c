"""Replaying a workflow history in a test, as the workers run workflows (`core.temporal.workflow_runner`,
the project's data converter), failing on any nondeterminism.

Why on a thread and event loop of its own: in a full run, `Replayer.replay_workflow` once never
returned. It awaited a future of the SDK's Rust core that never resolved (the same run's sdk-core had
panicked in its local-activity manager, `local_activities.rs` "receive half not dropped"; similar
reports are open upstream). pytest-timeout ended the test, but every test of an xdist worker shares
the session's event loop, which then waited for the stuck task forever at its close: the whole run
hung. On a loop of its own, a replay that hangs is left behind (a daemon thread) and tried once more
from the start, and the test fails with a clear message if that one hangs too. A replay that
*fails* (nondeterminism, an error) is never tried again: that is what the tests are for.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Sequence

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer, WorkflowReplayResult

from core.converter import data_converter
from core.temporal import workflow_runner

# A replay takes a second or two; this much only when it is stuck (two attempts stay well inside
# pytest-timeout's 300 s).
ATTEMPT_TIMEOUT_S = 100.0
ATTEMPTS = 2


async def replay(history: WorkflowHistory, workflows: Sequence[type]) -> WorkflowReplayResult:
    """`history` replayed with `workflows`; raises on a replay failure (`replay_failure` is None)."""
    for _ in range(ATTEMPTS - 1):
        with contextlib.suppress(TimeoutError):  # stuck: left behind, and tried again from the start
            return await _attempt(history, workflows)
    try:
        return await _attempt(history, workflows)
    except TimeoutError:
        raise TimeoutError(
            f"replaying {history.workflow_id} hung {ATTEMPTS} times ({ATTEMPT_TIMEOUT_S:.0f} s each)"
        ) from None


async def _attempt(history: WorkflowHistory, workflows: Sequence[type]) -> WorkflowReplayResult:
    done: concurrent.futures.Future[WorkflowReplayResult] = concurrent.futures.Future()
    thread = threading.Thread(
        target=_replay_on_own_loop, args=(history, workflows, done), name="replay", daemon=True
    )
    thread.start()
    return await asyncio.wait_for(asyncio.wrap_future(done), ATTEMPT_TIMEOUT_S)


def _replay_on_own_loop(
    history: WorkflowHistory,
    workflows: Sequence[type],
    done: concurrent.futures.Future[WorkflowReplayResult],
) -> None:
    replayer = Replayer(workflows=workflows, data_converter=data_converter, workflow_runner=workflow_runner())
    try:
        result = asyncio.run(replayer.replay_workflow(history, raise_on_replay_failure=True))
    except BaseException as exc:  # handed to the test, which raises it
        if not done.cancelled():
            done.set_exception(exc)
        return
    if not done.cancelled():
        done.set_result(result)
