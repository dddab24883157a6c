"""The SSE frames `api/events.py` writes as bytes are the bytes Litestar's `ServerSentEventMessage`
wrote before (clients parse them: Everruns' SDK, EventSource, the console)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec
import pytest
from litestar.response.sse import ServerSentEventMessage

from api import events as api_events
from core.schemas import events as ev
from services import event_stream

_WHEN = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
_CONTEXT = ev.EventContext(turn_id="t1", input_message_id=None, exec_id=None)


def _stored(type_: str) -> ev.Event:
    return ev.Event(
        id=uuid.uuid4(),
        type=type_,
        ts=_WHEN,
        session_id=uuid.uuid4(),
        sequence=3,
        context=_CONTEXT,
        data={"text": "line one\nline two\r\u2028"},
        metadata=None,
        tags=[],
    )


def _live(type_: str) -> ev.LiveEvent:
    return ev.LiveEvent(
        id=uuid.uuid4(),
        type=type_,
        ts=_WHEN,
        session_id=uuid.uuid4(),
        context=_CONTEXT,
        data={"delta": "a\nb"},
    )


@pytest.mark.parametrize("type_", ["test.step", "evil\r\nid: forged"])
def test_stored_and_live_frames_are_litestars_bytes(type_: str) -> None:
    stored, live = _stored(type_), _live(type_)
    assert (
        api_events._frame(event_stream.Stored(event=stored))
        == ServerSentEventMessage(
            event=stored.type, id=str(stored.id), data=msgspec.json.encode(stored).decode()
        ).encode()
    )
    assert (
        api_events._frame(event_stream.Ephemeral(event=live))
        == ServerSentEventMessage(event=live.type, data=msgspec.json.encode(live).decode()).encode()
    )


@pytest.mark.parametrize(
    "text", [event_stream.KEEPALIVE, event_stream.POLLING, "two\nlines", "three\r\nmore\rlines", "", "end\n"]
)
def test_comments_and_connected_are_litestars_bytes(text: str) -> None:
    comment = event_stream.Comment(text=text)
    assert api_events._frame(comment) == ServerSentEventMessage(comment=text, data=None).encode()
    connected = ServerSentEventMessage(event="connected", data='{"status":"connected"}').encode()
    assert api_events._frame(event_stream.Connected()) == connected


def test_a_live_frame_is_encoded_once_for_every_reader_of_it() -> None:
    item = event_stream.Ephemeral(event=_live("output.message.delta"))
    first = api_events._frame(item)
    assert api_events._frame(item) is first  # the same bytes object: not encoded again
    other = event_stream.Ephemeral(event=_live("output.message.delta"))
    assert api_events._frame(other) is not first
