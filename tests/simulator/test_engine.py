"""The pure parts: step selection, fingerprints, token estimates, chunking."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
import pytest

from api.simulator import engine, render
from api.simulator.config import SimulatorConfig
from api.simulator.schemas import ChatCompletionMessage, ChatCompletionRequest


def _request(*messages: Mapping[str, object], model: str = "m") -> ChatCompletionRequest:
    return msgspec.convert({"model": model, "messages": list(messages)}, ChatCompletionRequest)


U = {"role": "user", "content": "hi"}
A = {"role": "assistant", "content": "ok"}
T = {"role": "tool", "tool_call_id": "call_1", "content": "42"}


@pytest.mark.parametrize(
    ("messages", "step"),
    [
        ([], 0),
        ([U], 0),
        ([U, A], 1),
        ([U, A, T, A, T], 2),
        ([U, A, T, A, U], 0),
        ([{"role": "system", "content": "s"}, A, A], 2),
    ],
)
def test_step_is_the_number_of_assistant_messages_after_the_last_user_message(
    messages: list[dict[str, object]], step: int
) -> None:
    assert engine.step_index(msgspec.convert(messages, list[ChatCompletionMessage])) == step


def test_fingerprint_depends_on_model_and_messages_only() -> None:
    base = engine.fingerprint(_request(U))
    assert base == engine.fingerprint(_request({**U, "unknown": 1}))
    assert base != engine.fingerprint(_request(U, model="other"))
    assert base != engine.fingerprint(_request({**U, "content": "hi!"}))


@pytest.mark.parametrize(("text", "tokens"), [("", 0), ("a", 1), ("abcd", 1), ("abcde", 2), ("x" * 400, 100)])
def test_token_estimate(text: str, tokens: int) -> None:
    assert engine.estimate_tokens(text) == tokens


@pytest.mark.parametrize("text", ["one", "  leading and trailing  ", "tabs\tand\nnewlines", "a  b"])
def test_words_join_back_to_the_text(text: str) -> None:
    words = render.split_words(text)
    assert "".join(words) == text
    assert len(words) == len(text.split()) + (text[0].isspace())


def test_echo_without_a_user_message() -> None:
    reply = engine.plan_reply(_request({"role": "system", "content": "s"}), SimulatorConfig(), "fp")
    assert reply.text == "Echo: (no user message)"
    assert reply.finish_reason == "stop"


def test_tool_call_ids_depend_on_conversation_step_and_position() -> None:
    ids = {engine.tool_call_id(c, s, i) for c in ("a", "b") for s in (0, 1) for i in (0, 1)}
    assert len(ids) == 8
    assert engine.tool_call_id("a", 0, 0) == engine.tool_call_id("a", 0, 0)
    assert all(i.startswith("call_") for i in ids)
