"""A session's stored messages as the chat-completions messages an LLM reads, and the repair of
tool calls left without a result."""

from __future__ import annotations

import json
import uuid
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import Message
from core.net import NetPolicy, url_refusal
from core.schemas import events as ev
from core.schemas.content import (
    ContentPart,
    ImagePart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    content_from_json,
    content_to_json,
    model_text,
    tool_result_part,
)
from core.schemas.sessions import MessageRole
from core.schemas.turns import ToolStatus
from services import events

INTERRUPTED = "the tool call did not complete (interrupted or cancelled); no result is available"
# How long a turn waits for the DNS answer of an image URL's host before it lets the URL through.
IMAGE_DNS_TIMEOUT_S = 5.0


async def add_message(
    db: AsyncSession,
    session_id: uuid.UUID,
    role: MessageRole,
    content: list[dict[str, Any]],
    *,
    sequence: int | None = None,
    message_id: uuid.UUID | None = None,
    metadata: dict[str, Any] | None = None,
    controls: dict[str, Any] | None = None,
    tags: list[str] | None = None,
    idempotency_key: str | None = None,
    flush: bool = True,
) -> Message:
    """The one way a message enters a conversation, in the caller's transaction: it takes the
    session's next message `sequence` (which locks the session row until the transaction ends)
    unless the caller took it already, to look for an earlier attempt's message under that lock."""
    if sequence is None:
        sequence = await events.next_sequence(db, session_id, "last_message_sequence")
    message = Message(
        session_id=session_id,
        sequence=sequence,
        role=role,
        content=content,
        controls=controls,
        metadata_=metadata,
        tags=tags or [],
        idempotency_key=idempotency_key,
    )
    if message_id is not None:
        message.id = message_id
    db.add(message)
    if flush:
        await db.flush()
    return message


async def add_tool_result(
    db: AsyncSession,
    session_id: uuid.UUID,
    call: ToolCallPart,
    *,
    key: str,
    status: ToolStatus,
    result: Any,
    error: str | None,
    input_message_id: str | None,
    sequence: int | None = None,
    metadata: dict[str, Any] | None = None,
) -> tuple[Message, ev.ToolCallCompleted]:
    """A tool call's result as its tool message, and the `tool.call_completed` event to store with
    it (the caller adds the event under `{key}:tool.call_completed`). One form for every result: a
    capability's, an MCP server's, and a client's (`services/client_tools.py`). `key` names the
    call in its turn (`{turn_id}:{tool_call_id}`): the message's idempotency key is `{key}:result`,
    so a call never has two results, whoever stores it. `result` is JSON data (`json_value`): the
    message and the event hold its JSON text, as Everruns sends a result."""
    part = tool_result_part(call.id, result, error)
    message = await add_message(
        db,
        session_id,
        "tool_result",
        [msgspec.to_builtins(part)],
        sequence=sequence,
        metadata={
            "status": status,
            "tool_name": call.name,
            "input_message_id": input_message_id,
            **(metadata or {}),
        },
        idempotency_key=f"{key}:result",
    )
    return message, ev.ToolCallCompleted.of(part, call.name, status)


async def load(db: AsyncSession, session_id: uuid.UUID) -> list[Message]:
    query = select(Message).where(Message.session_id == session_id).order_by(Message.sequence)
    return list((await db.execute(query)).scalars())


def dangling_calls(messages: list[Message]) -> list[ToolCallPart]:
    """Tool calls of agent messages that have no result message."""
    answered = {
        part.tool_call_id
        for m in messages
        for part in content_from_json(m.content)
        if isinstance(part, ToolResultPart)
    }
    return [
        part
        for m in messages
        if m.role == "agent"
        for part in content_from_json(m.content)
        if isinstance(part, ToolCallPart) and part.id not in answered
    ]


def turn_of(message: Message) -> str | None:
    """The input message id of the turn that produced an agent or tool message."""
    return (message.metadata_ or {}).get("input_message_id")


def for_turn(messages: list[Message], input_message: Message) -> list[Message]:
    """The conversation as the model of this turn should read it: each earlier turn's user
    message followed by what that turn produced, then this turn's message and its work so far.
    User messages queued behind this turn are left out; the turn that takes them sees them."""
    produced: dict[str | None, list[Message]] = {}
    for message in messages:
        if message.role != "user":
            produced.setdefault(turn_of(message), []).append(message)
    ordered: list[Message] = []
    for message in messages:
        if message.role == "user" and message.sequence <= input_message.sequence:
            ordered.append(message)
            ordered.extend(produced.pop(str(message.id), []))
    # Messages from before turns were recorded on messages: in stored order.
    ordered.extend(m for group in produced.values() for m in group)
    return ordered


async def close_dangling(db: AsyncSession, session_id: uuid.UUID, messages: list[Message]) -> list[Message]:
    """Stores a synthetic error result for every call left open, so a provider never sees a call
    without its answer. Returns the new messages (the caller commits)."""
    added = []
    owners = {
        part.id: turn_of(m)
        for m in messages
        if m.role == "agent"
        for part in content_from_json(m.content)
        if isinstance(part, ToolCallPart)
    }
    for call in dangling_calls(messages):
        message = await add_message(
            db,
            session_id,
            "tool_result",
            content_to_json([tool_result_part(call.id, None, INTERRUPTED)]),
            metadata={"status": "error", "tool_name": call.name, "input_message_id": owners.get(call.id)},
            idempotency_key=f"synthetic-result:{call.id}",
            flush=False,
        )
        added.append(message)
    if added:
        await db.flush()
    return added


async def refused_image(messages: list[Message], network: NetPolicy) -> str | None:
    """Why this server will not pass on an image URL of these messages (the turn's conversation),
    or None. Checked before every LLM call although posting checked it: the provider may have this
    server fetch the image (litellm does for some), or be a model server inside this network, and
    a name's DNS answer may have changed since. The text is the user's to read: the URL's host and
    the kind of address, never an address a name resolved to (core.net's rule)."""
    seen: set[str] = set()
    for message in messages:
        if message.role != "user":
            continue
        for part in content_from_json(message.content):
            if not isinstance(part, ImagePart) or part.url is None or part.url in seen:
                continue
            seen.add(part.url)
            reason = await url_refusal(part.url, network, dns_wait_s=IMAGE_DNS_TIMEOUT_S)
            if reason is not None:
                return (
                    f"an image URL in message {message.sequence} was refused by this server: {reason} "
                    "(an image must be on a public internet address), so the model was not called"
                )
    return None


def _user_content(parts: list[ContentPart]) -> str | list[dict[str, Any]]:
    if len(parts) == 1 and isinstance(parts[0], TextPart):
        return parts[0].text
    out: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, TextPart):
            out.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            url = part.url or f"data:{part.media_type};base64,{part.base64}"
            out.append({"type": "image_url", "image_url": {"url": url}})
    return out


def _text(parts: list[ContentPart]) -> str:
    return "".join(p.text for p in parts if isinstance(p, TextPart))


def to_llm_messages(system_prompt: str, messages: list[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for message in messages:
        parts = content_from_json(message.content)
        if message.role == "user":
            out.append({"role": "user", "content": _user_content(parts)})
        elif message.role == "agent":
            calls = [
                {
                    "id": p.id,
                    "type": "function",
                    "function": {"name": p.name, "arguments": json.dumps(p.arguments)},
                }
                for p in parts
                if isinstance(p, ToolCallPart)
            ]
            entry: dict[str, Any] = {"role": "assistant", "content": _text(parts) or None}
            if calls:
                entry["tool_calls"] = calls
            out.append(entry)
        else:
            for part in parts:
                if isinstance(part, ToolResultPart):
                    # The JSON text clients get in the part is what the model reads.
                    out.append(
                        {"role": "tool", "tool_call_id": part.tool_call_id, "content": model_text(part)}
                    )
    return out
