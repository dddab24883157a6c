"""Calls through litellm exactly as the reason activity will: OpenAI provider, `api_base`, `extra_body`."""

from __future__ import annotations

import uuid
from typing import Any

import litellm


def user(text: str = "hello") -> dict[str, Any]:
    """A user message unique to the calling test, so "fail the first N" counters never collide."""
    return {"role": "user", "content": f"{text} {uuid.uuid4().hex[:8]}"}


async def complete(
    base: str, messages: list[dict[str, Any]], simulator: dict[str, Any] | None = None, **kwargs: Any
) -> Any:
    options: dict[str, Any] = {"num_retries": 0, **kwargs}
    if simulator is not None:
        options["extra_body"] = {"simulator": simulator}
    return await litellm.acompletion(
        model="openai/sim-1", api_base=base, api_key="sim", messages=messages, **options
    )


async def stream(
    base: str, messages: list[dict[str, Any]], simulator: dict[str, Any] | None = None, **kwargs: Any
) -> list[Any]:
    response = await complete(
        base, messages, simulator, stream=True, stream_options={"include_usage": True}, **kwargs
    )
    return [chunk async for chunk in response]


def rebuild(chunks: list[Any]) -> Any:
    """The whole response, reassembled by litellm from streamed chunks."""
    return litellm.stream_chunk_builder(chunks)
