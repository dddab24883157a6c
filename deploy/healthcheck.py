"""The image's health check: `python /app/deploy/healthcheck.py [api|worker|migrate]` exits 0 when
the process in this container is healthy, 1 (with one line saying why) when it is not.

- `api`: `GET /ready` on the API's own port answers 200: PostgreSQL, Redis and Temporal all answer
  (`--live` asks `/health` instead: the process answers, whatever its services do).
- `worker`: Temporal lists a worker of *this container* (its identity is `pid@hostname`, the SDK's
  default) among the pollers of the task queue, for workflow or activity tasks, seen within
  `--stale` seconds (150: a long poll lasts up to about 70 s on an idle queue). Either kind: a
  worker whose activity slots are all busy stops polling activity tasks while it works, and is
  healthy. This asks Temporal, so it fails for every worker at once while Temporal is away: it is
  the compose healthcheck and the Kubernetes readiness probe (and an alert), never a restart.
- `worker --live`: the file WORKER_LIVENESS_FILE names was touched within `--stale` seconds (60):
  the worker's event loop turns and its Temporal worker runs (everloop/liveness.py touches it every
  5 s). Local and cheap: the Kubernetes liveness and startup probes.
- `migrate`: a one-shot job; nothing to check.

Without an argument the role is read from the container's main process (`everloop worker`, ...),
so the image's own HEALTHCHECK fits whichever command the container runs. Standard library,
Temporal's SDK and the project's settings only: the image has no curl.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROLES = ("api", "worker", "migrate")


def role_of_main_process(cmdline: Path = Path("/proc/1/cmdline")) -> str:
    """`api` unless PID 1 runs `everloop worker` or `everloop migrate` (the image's default is api)."""
    try:
        args = cmdline.read_bytes().split(b"\0")
    except OSError:
        return "api"
    for role in ("worker", "migrate"):
        if role.encode() in args:
            return role
    return "api"


def check_api(port: int, path: str, timeout_s: float) -> str | None:
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return f"{path} answered {exc.code}: {exc.read(500).decode(errors='replace')}"
    except OSError as exc:
        return f"{path} did not answer: {exc}"
    return None if status == 200 else f"{path} answered {status}"


def check_worker_alive(path: Path | None, stale_s: float) -> str | None:
    """None when `path` was touched within `stale_s` seconds."""
    if path is None:
        return "WORKER_LIVENESS_FILE is not set"
    try:
        age = time.time() - path.stat().st_mtime
    except OSError as exc:
        return f"no liveness file {str(path)!r} ({exc.strerror}): the worker has not started"
    if age > stale_s:
        return f"the worker last touched {str(path)!r} {age:.0f} s ago"
    return None


async def check_worker(
    address: str, namespace: str, task_queue: str, host: str, stale_s: float, timeout_s: float
) -> str | None:
    """None when a poller whose identity ends in `@host` polled workflow or activity tasks within
    `stale_s`."""
    # Imported here: the API's check should not pay for the SDK's import.
    from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    from core import temporal

    client = await temporal.connect(address, namespace)
    now = datetime.now(UTC)
    seen: list[datetime] = []
    for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
        answer = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=namespace,
                task_queue=TaskQueue(name=task_queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
                task_queue_type=kind,
            ),
            timeout=timedelta(seconds=timeout_s),
        )
        seen += [
            poller.last_access_time.ToDatetime(tzinfo=UTC)
            for poller in answer.pollers
            if poller.identity.endswith(f"@{host}")
        ]
    if not seen:
        return f"no worker on host {host!r} polls task queue {task_queue!r}"
    age = (now - max(seen)).total_seconds()
    if age > stale_s:
        return f"this host's worker last polled task queue {task_queue!r} {age:.0f} s ago"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", nargs="?", choices=ROLES, help="default: the container's main command")
    parser.add_argument(
        "--live",
        action="store_true",
        help="api: /health instead of /ready; worker: its liveness file instead of Temporal's pollers",
    )
    parser.add_argument(
        "--stale", type=float, help="worker: seconds since its last poll (150) or touch (--live: 60)"
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds for each request")
    parser.add_argument("--host", default=socket.gethostname(), help="worker: the host name to look for")
    args = parser.parse_args(argv)
    role = args.role or role_of_main_process()
    if role == "migrate":
        return 0

    from core.settings import SettingsError, get_settings

    try:
        settings = get_settings()
    except SettingsError as exc:
        print(f"unhealthy: configuration: {exc}")
        return 1
    if role == "api":
        problem = check_api(settings.port, "/health" if args.live else "/ready", args.timeout)
    elif args.live:
        problem = check_worker_alive(
            settings.worker_liveness_file, 60.0 if args.stale is None else args.stale
        )
    else:
        address = settings.temporal_address
        if not address:
            print("unhealthy: TEMPORAL_ADDRESS is not set")
            return 1
        try:
            problem = asyncio.run(
                asyncio.wait_for(
                    check_worker(
                        address,
                        settings.temporal_namespace,
                        settings.temporal_task_queue,
                        args.host,
                        150.0 if args.stale is None else args.stale,
                        args.timeout,
                    ),
                    args.timeout * 3,
                )
            )
        except Exception as exc:  # whatever stops the question, the answer is "not healthy"
            problem = f"cannot ask Temporal at {address}: {str(exc) or type(exc).__name__}"
    if problem:
        print(f"unhealthy: {problem}")
        return 1
    print("healthy")
    return 0


if __name__ == "__main__":
    status = main()
    # Leave without finalizing: the Temporal client's Rust threads can abort the interpreter while
    # it finalizes (temporalio/sdk-python#300), which turned an answer already printed into a
    # SIGABRT (exit -6) in a loaded test run. Everything is said by now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
