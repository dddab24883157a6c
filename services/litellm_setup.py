"""litellm's first call, made at worker start instead of in a user's first turn.

litellm builds much of itself lazily: its first call in a process imports part of its proxy (for
managed file ids), its streaming and cost modules and their pydantic types. Measured on the 2-core
test machine (docs/benchmarks.md, "litellm's cost per call"): a fresh worker's first reason step took
~860 ms in litellm against ~25 ms for the next; after `warm_up` it takes ~130 ms (what is left is
the first connection and the client litellm caches per provider address, which no call here can
make for a provider not yet known).

None of litellm's module settings removes per-call work without changing what is recorded (see the
same section): `turn_off_message_logging` adds work (redaction), `disable_streaming_logging` only
concerns synchronous streams, `disable_token_counter` would record 0 tokens for a provider that
does not report usage, and httpx instead of aiohttp (`disable_aiohttp_transport`) costs more."""

from __future__ import annotations

import time
from typing import Any

import litellm
import structlog

log = structlog.get_logger("everloop.litellm_setup")

# litellm answers these itself (`mock_response`): no request leaves the process.
_MESSAGES = [{"role": "user", "content": "warm-up"}]
_TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {"name": "noop", "description": "", "parameters": {"type": "object"}}}
]


async def warm_up() -> float:
    """Makes litellm's first calls, a plain one and a streamed one with tools as a reason step
    streams, answered by litellm itself. Returns the seconds it took; a failure is logged, never
    raised (the worker works without it, its first step is only slower)."""
    started = time.monotonic()
    try:
        await litellm.acompletion(model="openai/warm-up", messages=_MESSAGES, mock_response="ok")
        stream = await litellm.acompletion(
            model="openai/warm-up",
            messages=_MESSAGES,
            tools=_TOOLS,
            mock_response="ok",
            stream=True,
            stream_options={"include_usage": True},
        )
        async for _chunk in stream:
            pass
    except Exception as exc:
        log.warning("litellm warm-up failed", error=str(exc)[:500] or type(exc).__name__)
    took = time.monotonic() - started
    log.info("litellm warmed up", seconds=round(took, 3))
    return took
