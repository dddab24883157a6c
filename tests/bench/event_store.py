"""The CPU a step's event store costs the worker: `events.append_many` and the trace projection.

    .venv/bin/python -m tests.bench.event_store [--steps 300] [--rounds 3]

Every step of every turn stores its events through `append_many` (the session's sequence numbers,
the idempotency keys, the rows) and, in the same transaction, projects them onto the turn's spans
(`services.turn_traces`: the trace's key, the spans' upsert, the trace's aggregates). On a fresh
embedded stack, one session stores `--steps` steps shaped like a turn's (a turn's opening with
`turn.started`, then `reason.started` and one more event per step, and an end every fourth), each in
its own transaction, one after the other. It prints, per round, this process's CPU time per step
(what the worker's event loop spends: SQLAlchemy, asyncpg, our code; PostgreSQL is another process)
and the wall time per step. Figures only: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid

from litestar.testing import AsyncTestClient

from core.db import Database
from core.schemas import events as ev
from everloop.stack import Endpoints
from services import events
from tests import factories
from tests.apps import app_for
from tests.bench.stack import run_on_fresh_stack
from tests.conftest import make_settings

WARM_UP_STEPS = 40


def step_events(index: int, agent_id: str) -> tuple[list[events.NewEvent], dict[str, str]]:
    """Step `index`'s events: four steps a turn, the first opening it and the last ending it."""
    turn = f"turn{index // 4}"
    iteration = index % 4
    # Not a message's id: the spans' `source_message_id` stays empty (no message rows needed).
    context = {"turn_id": turn, "input_message_id": "bench"}
    new = []
    if iteration == 0:
        new.append(
            events.NewEvent(ev.TurnStarted(turn_id=turn, input_message_id="bench"), f"{turn}:turn.started")
        )
    started = ev.ReasonStarted(agent_id=agent_id, metadata=ev.ReasonStep(model="sim-1", iteration=iteration))
    new.append(events.NewEvent(started, f"{turn}:{iteration}:reason.started"))
    if iteration == 3:
        new.append(events.NewEvent(ev.TurnCancelled(turn_id=turn), f"{turn}:turn.cancelled"))
    else:
        idled = ev.SessionIdled(turn_id=turn, iterations=iteration)
        new.append(events.NewEvent(idled, f"{turn}:{iteration}:session.idled"))
    return new, context


async def bench(endpoints: Endpoints, steps: int, rounds: int) -> None:
    async with AsyncTestClient(app=app_for(make_settings(endpoints))) as client:
        agent = await factories.agent(client)
        session = await factories.session(client, agent["id"])
    session_id = uuid.UUID(session["id"])
    db = Database(endpoints.database_url)

    async def store(index: int) -> None:
        new, context = step_events(index, agent["id"])
        async with db.session() as s:
            stored = await events.append_many(s, session_id, new, context=context)
            assert stored is not None and len(stored) == len(new)
            await s.commit()

    try:
        for index in range(WARM_UP_STEPS):  # pools, prepared statements, SQLAlchemy's caches
            await store(index)
        print(f"one session, {steps} steps a round, each in its own transaction")
        for round_ in range(rounds):
            first = (round_ + 1) * 100_000
            cpu, wall = time.process_time(), time.perf_counter()
            for index in range(first, first + steps):
                await store(index)
            cpu_ms = (time.process_time() - cpu) / steps * 1000
            wall_ms = (time.perf_counter() - wall) / steps * 1000
            print(f"  round {round_ + 1}: {cpu_ms:.2f} ms of CPU, {wall_ms:.2f} ms wall a step", flush=True)
    finally:
        await db.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=300, help="steps a round (default 300)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    args = parser.parse_args()
    return run_on_fresh_stack(lambda endpoints, _data_dir: bench(endpoints, args.steps, args.rounds))


if __name__ == "__main__":
    sys.exit(main())
