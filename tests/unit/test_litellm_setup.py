"""The worker's litellm warm-up (services/litellm_setup.py): litellm answers it itself, and a failure
never stops a worker from starting."""

from __future__ import annotations

from typing import Any

import litellm
import pytest

from services import litellm_setup


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.events.append(("info", event, fields))

    def warning(self, event: str, **fields: Any) -> None:
        self.events.append(("warning", event, fields))


async def test_the_warm_up_makes_litellms_first_calls_without_a_provider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = Recorder()
    monkeypatch.setattr(litellm_setup, "log", log)
    calls: list[dict[str, Any]] = []
    real = litellm.acompletion

    async def counted(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return await real(**kwargs)

    monkeypatch.setattr(litellm, "acompletion", counted)
    assert await litellm_setup.warm_up() >= 0
    assert [e[:2] for e in log.events] == [("info", "litellm warmed up")]
    # Answered by litellm (mock_response): no address, no key, one plain call and one streamed.
    assert [(c.get("stream", False), c["mock_response"], "api_base" in c) for c in calls] == [
        (False, "ok", False),
        (True, "ok", False),
    ]


async def test_a_failed_warm_up_is_logged_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    log = Recorder()
    monkeypatch.setattr(litellm_setup, "log", log)

    async def broken(**kwargs: Any) -> Any:
        raise RuntimeError("litellm changed")

    monkeypatch.setattr(litellm, "acompletion", broken)
    await litellm_setup.warm_up()
    assert [e[:2] for e in log.events] == [
        ("warning", "litellm warm-up failed"),
        ("info", "litellm warmed up"),
    ]
    assert log.events[0][2]["error"] == "litellm changed"
