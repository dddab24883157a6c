"""Webhooks: where an owner's events are POSTed, and each delivery (the outbox a workflow drains).

Deliveries are inserted by database triggers in the transaction of the change that causes them
(migration 0027: a turn's end, a trace's status, a replay's or golden run's end), or by
`services.webhooks` for a `ping`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import TimestampedModel


class Webhook(TimestampedModel):
    __tablename__ = "webhooks"
    __table_args__ = (
        Index("ix_webhooks_owner_id", "owner_id", "id"),
        # The triggers' first question, on every event: has this owner an active webhook?
        Index("ix_webhooks_owner_active", "owner_id", postgresql_where=text("active")),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)
    # Event types to send; empty: all of them.
    events: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list, server_default=text("'{}'::text[]"))
    # `whsec_...`, envelope-encrypted (core.crypto); shown once, when created, never again.
    secret_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    # Set by an admin only: the URL may be on a private or loopback address.
    allow_private: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # Why the service turned it off (a 410, failing for days); None when a person did or it is on.
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    # Since when every attempt has failed (None after a success).
    failing_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookDelivery(TimestampedModel):
    """One event for one webhook. `id` is the `webhook-id` header: the same on every attempt and
    redelivery, so a receiver deduplicates on it."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_webhook_id", "webhook_id", "id"),
        # The dispatcher's claim: deliveries whose workflow has not been started yet.
        Index(
            "ix_webhook_deliveries_unstarted",
            "created_at",
            postgresql_where=text("workflow_started_at IS NULL"),
        ),
    )

    webhook_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(60))
    # The body sent, as JSON: {event, timestamp, data}.
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # pending (waiting for its next attempt), delivering (an attempt is out), delivered, failed.
    status: Mapped[str] = mapped_column(String(20), default="pending", server_default="pending")
    # Which attempt series runs: a redelivery starts the next; a workflow of an older one stops.
    series: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    workflow_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
