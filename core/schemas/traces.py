"""What every writer of the trace store hands it: one span, whoever made it (an agent turn, 001's
batch ingestion, Opswald's events, Opper's `/v2/spans`, OTLP)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import msgspec

# The kinds the specs name; any other is kept as given (a custom kind), never refused.
KNOWN_KINDS = ("llm", "tool", "agent", "chain", "retrieval", "user_input", "embedding", "custom")
# Containers: a trace's `steps` (Opswald) count every span but these.
CONTAINER_KINDS = ("agent", "chain")
# Roll-ups: a span whose tokens and cost restate its children's. A `/v2/call`'s span carries its
# model requests' sum (Opper's clients read the usage there) while each request is a child `llm`
# span with its own; trace totals and usage analytics count the children only, or a call counts twice.
# The writer marks a roll-up in its metadata (ROLLUP_MARK), not by its kind: a client's span of
# type `call` (POST /v2/spans, a batch) is usage like any other, and a client's own restating span
# may carry the mark too.
ROLLUP_MARK: dict[str, Any] = {"rollup": True}


def usage_counted(table: str | None = None) -> str:
    """SQL: whether a span's usage counts (it is no roll-up), for the spans of `table` (an alias)
    or unqualified. One text for the partial index ix_spans_llm_calls' predicate (migration 0029)
    and the queries it serves, so the planner matches them; `@>` is immutable, as an index needs."""
    column = f"{table}.metadata" if table else "metadata"
    return f"""NOT ({column} @> '{{"rollup": true}}'::jsonb)"""


# The unqualified form (trace aggregates over `spans`; the index predicate).
USAGE_COUNTED = usage_counted()
SpanStatus = Literal["unset", "ok", "error"]


class SpanWrite(msgspec.Struct, kw_only=True):
    """One span to insert, or to update when the trace already has a span of that id (a retried
    batch, or a span sent again with its output)."""

    span_id: str
    name: str
    parent_span_id: str | None = None
    kind: str = "custom"
    status: SpanStatus = "unset"
    input: Any = None
    output: Any = None
    error: str | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    start_time: datetime | None = None
    end_time: datetime | None = None
    model: str | None = None
    provider: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: Decimal | None = None
    # An agent turn's span: the stored event / message that holds its content (not copied).
    source_event_id: uuid.UUID | None = None
    source_message_id: uuid.UUID | None = None
