"""The webhook bodies' contract (core/schemas/webhook_payloads.py): one Struct per event a webhook
can ask for, the same set the API accepts and the docs list, and strict about what a body holds.
That the triggers' SQL builds exactly these: tests/api/test_webhooks.py, tests/loop/test_webhooks.py."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any, get_args

import msgspec
import pytest

from core.schemas import webhook_payloads
from core.schemas.webhooks import EVENTS, PING

DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


def turn_completed() -> dict[str, Any]:
    return {
        "event": "turn.completed",
        "timestamp": "2026-03-17T14:18:45Z",
        "data": {
            "turn_id": "t1",
            "iterations": 2,
            "duration_ms": 812,
            "session_id": str(uuid.uuid4()),
            "agent_id": str(uuid.uuid4()),
            "event_id": str(uuid.uuid4()),
            "sequence": 9,
            "ts": "2026-03-17T14:18:45.123456+00:00",
        },
    }


def test_there_is_one_body_per_event_the_api_accepts_and_the_docs_list() -> None:
    tags = [webhook_payloads.event_of(body) for body in get_args(webhook_payloads.WebhookBody)]
    assert sorted(tags) == sorted([*EVENTS, PING])
    documented = re.findall(r"^\| `([a-z_.]+)` \|", DOCS.read_text(), flags=re.MULTILINE)
    assert sorted(documented) == sorted(tags)


def test_a_body_decodes_as_its_events_struct() -> None:
    body = webhook_payloads.decode(msgspec.json.encode(turn_completed()))
    assert isinstance(body, webhook_payloads.TurnCompletedBody)
    assert body.data.iterations == 2 and body.timestamp.tzinfo is not None
    # The deliveries API answers the stored body through the same Struct: the same JSON comes back.
    again = msgspec.json.decode(msgspec.json.encode(webhook_payloads.convert(turn_completed())))
    assert again["data"]["turn_id"] == "t1" and again["event"] == "turn.completed"


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b["data"].update(extra=1),  # a field the contract does not have
        lambda b: b["data"].pop("sequence"),  # a field it requires
        lambda b: b["data"].update(iterations="2"),  # a field of the wrong type
        lambda b: b.update(event="turn.finished"),  # an event that does not exist
        lambda b: b.update(extra=1),  # beside `event`, `timestamp` and `data`
    ],
    ids=["extra field", "missing field", "wrong type", "unknown event", "extra top-level field"],
)
def test_a_body_that_breaks_the_contract_is_refused(change: Any) -> None:
    body = turn_completed()
    change(body)
    with pytest.raises(msgspec.ValidationError):
        webhook_payloads.decode(msgspec.json.encode(body))
