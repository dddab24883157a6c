"""Webhooks on the wire (`/v1/webhooks`), the event names, and the delivery workflow's payloads."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from core.schemas.webhook_payloads import WebhookBody

# Every event a webhook can ask for; a webhook with no `events` gets them all. `ping` is sent only
# by `POST /v1/webhooks/{id}/test`.
EVENTS = (
    "turn.completed",
    "turn.failed",
    "tool.approval_requested",
    "session.idled",
    "trace.completed",
    "trace.error",
    "replay.completed",
    "golden_test_run.completed",
)
PING = "ping"

DeliveryStatus = Literal["pending", "delivering", "delivered", "failed"]
Url = Annotated[str, Meta(pattern=r"^https?://[^\s/]+", max_length=2000)]
# Standard Webhooks: `whsec_` and base64 of the key; a raw secret is taken as the key's bytes.
Secret = Annotated[str, Meta(min_length=1, max_length=200)]
EventName = Annotated[str, Meta(min_length=1, max_length=60)]
Events = Annotated[list[EventName], Meta(max_length=len(EVENTS))]


class Webhook(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    url: str
    events: list[str]  # empty: every event
    active: bool
    allow_private: bool
    disabled_reason: str | None  # why the service turned it off (a 410, failing for days)
    failing_since: datetime | None  # since when every attempt has failed
    created_at: datetime
    updated_at: datetime


class CreatedWebhook(Webhook, kw_only=True):
    """The create answer: the only time the secret is shown."""

    secret: str


class CreateWebhook(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    url: Url
    events: Events = msgspec.field(default_factory=list)
    # Omitted: one is made (`whsec_` + 32 random bytes) and returned once.
    secret: Secret | None = None
    active: bool = True
    allow_private: bool = False  # admins only: the URL may be on a private or loopback address


class UpdateWebhook(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    url: Url | UnsetType = UNSET
    events: Events | UnsetType = UNSET
    secret: Secret | UnsetType = UNSET  # replaces the secret (write-only)
    active: bool | UnsetType = UNSET  # true again clears `disabled_reason`
    allow_private: bool | UnsetType = UNSET


class Delivery(msgspec.Struct, kw_only=True):
    id: uuid.UUID  # the `webhook-id` header, the same on every attempt and redelivery
    webhook_id: uuid.UUID
    event: str
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime
    payload: WebhookBody  # the body as sent (core/schemas/webhook_payloads.py)


# The delivery workflow (workflows/webhook_delivery.py): ids and small values only.


class WebhookLoop:
    WORKFLOW = "WebhookDelivery"
    ATTEMPT = "webhook_attempt"

    @staticmethod
    def workflow_id(delivery_id: str, series: int) -> str:
        # One workflow per attempt series: starting one twice is refused by Temporal, and a
        # redelivery (the next series) may start while an older series still waits.
        return f"webhook-delivery-{delivery_id}-{series}"


class DeliveryInput(msgspec.Struct, kw_only=True, frozen=True):
    delivery_id: str
    series: int
    # The wait before each attempt, in seconds (WEBHOOK_RETRY_SCHEDULE when it was started): in the
    # input, so a changed setting never changes a running workflow's history.
    schedule_s: list[float]


class AttemptInput(msgspec.Struct, kw_only=True, frozen=True):
    delivery_id: str
    series: int
    # The wait before the next attempt, stored as `next_attempt_at`; None on the schedule's last
    # attempt (a failure then fails the delivery).
    next_wait_s: float | None


# What an attempt leaves the workflow to do: stop (delivered, failed for good, superseded, gone)
# or wait for the next attempt.
AttemptOutcome = Literal["done", "retry"]


class AttemptResult(msgspec.Struct, kw_only=True, frozen=True):
    outcome: AttemptOutcome
    status_code: int | None = None
