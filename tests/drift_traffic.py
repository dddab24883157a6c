"""Synthetic traffic for the drift tests, sent through `POST /v1/traces` with explicit span times: a
baseline window's traces and a recent window's, one LLM call and one tool call each."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from tests.api.test_auth_full import As

NAME, MODEL = "pipeline-drift", "gpt-drift"
DAY = timedelta(days=1)


def _wobble(i: int) -> float:
    """A fixed +-8 % pattern, so values vary like real ones and the tests stay deterministic."""
    return 1 + 0.08 * (((i * 7) % 11) - 5) / 5


async def send(
    who: As, *, prefix: str, first: datetime, count: int, cost: float, offset: int = 0, name: str = NAME
) -> None:
    """`count` traces starting at `first`, 10 minutes apart: each an LLM call of cost ~`cost`
    (400-1000 ms, 120 tokens) and a tool call (`search`, every third `lookup`), sent 10 at a time."""
    for batch in range(0, count, 10):
        await asyncio.gather(
            *(_one(who, prefix, first, i, cost, offset, name) for i in range(batch, min(count, batch + 10)))
        )


async def _one(who: As, prefix: str, first: datetime, i: int, cost: float, offset: int, name: str) -> None:
    start = first + timedelta(minutes=10 * i)
    llm_end = start + timedelta(milliseconds=700 * _wobble(i + offset))
    tool_end = llm_end + timedelta(milliseconds=50)
    trace_id = f"{prefix}-{i}"
    sent = await who.post(
        "/v1/traces",
        {
            "trace_name": name,
            "spans": [
                {
                    "trace_id": trace_id,
                    "span_id": "llm",
                    "name": "llm-call",
                    "kind": "llm",
                    "status": "ok",
                    "model": MODEL,
                    "input_tokens": 100,
                    "output_tokens": 20,
                    "cost": round(cost * _wobble(i + offset), 8),
                    "start_time": start.isoformat(),
                    "end_time": llm_end.isoformat(),
                },
                {
                    "trace_id": trace_id,
                    "span_id": "tool",
                    "name": "lookup" if i % 3 == 0 else "search",
                    "kind": "tool",
                    "status": "ok",
                    "start_time": llm_end.isoformat(),
                    "end_time": tool_end.isoformat(),
                },
            ],
        },
    )
    assert sent.status_code == 201, sent.text


async def baseline_and_recent(
    who: As, window_end: datetime, *, baseline_cost: float, recent_cost: float, count: int = 40
) -> None:
    """`count` traces in the baseline window (two days before `window_end`) and `count` in the
    recent one (the hours before it), with the default windows (1 day, after 7 days)."""
    await send(who, prefix="base", first=window_end - 2 * DAY, count=count, cost=baseline_cost)
    recent_first = window_end - timedelta(minutes=10 * count + 5)
    await send(who, prefix="recent", first=recent_first, count=count, cost=recent_cost, offset=3)
