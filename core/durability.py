"""How long the loop waits out its own infrastructure (PostgreSQL) before a turn gives up.

Shared by the workflow (activity timeouts) and the activities (their retry loops), so the two agree.
A provider's or a tool's failure is the work's own and has its own small budget (`LLM_RETRY` below,
`TOOL_RETRY` in workflows/session.py); a database that is away spends none of it.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

# Longer than any outage an operator would sit through (a failover, a restore, a night). A step
# that still cannot reach the database then fails, and the sweeper closes its turn once it can.
STORE_RETRY_WINDOW = timedelta(hours=24)
# The longest a short tool's call may run as a local activity before it moves to a regular one.
# Below the 8 s at which Temporal heartbeats a workflow task that waits on a local activity: while
# the call runs, the task holds the session's cancels, approvals and other calls back.
LOCAL_TOOL_LIMIT = timedelta(seconds=3)
# Backoff between attempts to reach the database: doubles from the first to the cap.
STORE_BACKOFF_FIRST = timedelta(seconds=0.5)
STORE_BACKOFF_MAX = timedelta(seconds=30)
# The retries of a workflow's store step (the turn's end, a replay's plan and finish, drift's
# steps): each waits out an outage inside its attempt (activities/persist.py), so these only cover a
# worker that died; they leave no trace in the history, however many there are.
STORE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=STORE_BACKOFF_MAX
)

# The retries of a model call (a turn's `reason`, a span replay's call, a golden judge's embeddings
# or LLM judge): 429, 5xx, timeouts and dropped connections back off and try again; the activity
# marks what no retry can fix (400/401/403/404) non-retryable.
LLM_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=6,
)
