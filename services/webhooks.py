"""Webhooks (docs/webhooks.md): an owner's endpoints with their encrypted secrets, the deliveries
(an outbox filled by database triggers in the transaction of the change that causes each event,
migration 0027), the dispatcher that starts each delivery's workflow, and one attempt's bookkeeping.

A delivery's life: inserted `pending` with `workflow_started_at` NULL (and `NOTIFY
everloop_webhooks` at commit) -> a worker's dispatcher claims it and starts its workflow
(`webhook-delivery-{id}-{series}`) -> each attempt is `delivering` while its POST is out, then
`delivered`, `pending` (waiting for the next) or `failed`. A redelivery starts the next series."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec
import structlog
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from core.crypto import SecretBox
from core.db import Database
from core.db.webhooks import Webhook, WebhookDelivery
from core.errors import Conflict, Forbidden, InvalidInput, NotFound, ServiceUnavailable
from core.identity import Identity
from core.ids import uuid7
from core.net import NetPolicy, check_public_url
from core.schemas import webhook_payloads
from core.schemas import webhooks as schemas
from core.schemas.webhook_payloads import PingBody, PingData
from core.schemas.webhooks import EVENTS, PING, DeliveryInput, WebhookLoop
from services import webhook_signing
from services.common import changed_fields, page_of

log = structlog.get_logger("everloop.webhooks")

# What the triggers NOTIFY at commit when they stored deliveries; the dispatcher LISTENs.
CHANNEL = "everloop_webhooks"
CLAIM_BATCH = 100
STARTS_AT_ONCE = 16
ERROR_CHARS = 500  # of a receiver's error kept on the delivery


def secret_context(webhook_id: uuid.UUID) -> str:
    return f"webhook:{webhook_id}:secret"


def to_schema(row: Webhook) -> schemas.Webhook:
    return schemas.Webhook(
        id=row.id,
        url=row.url,
        events=list(row.events),
        active=row.active,
        allow_private=row.allow_private,
        disabled_reason=row.disabled_reason,
        failing_since=row.failing_since,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def delivery_schema(row: WebhookDelivery) -> schemas.Delivery:
    return schemas.Delivery(
        id=row.id,
        webhook_id=row.webhook_id,
        event=row.event,
        status=row.status,  # type: ignore[arg-type]  # the column holds only DeliveryStatus values
        attempts=row.attempts,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        last_attempt_at=row.last_attempt_at,
        next_attempt_at=row.next_attempt_at,
        delivered_at=row.delivered_at,
        created_at=row.created_at,
        # Decoded through the contract: a body the triggers built otherwise is an error here and in
        # the tests, not a silent change of what receivers get.
        payload=webhook_payloads.convert(row.payload),
    )


def _box(box: SecretBox | None) -> SecretBox:
    if box is None:
        raise ServiceUnavailable(
            "webhook secrets are stored encrypted: that needs SECRETS_ENCRYPTION_KEY (32 random bytes, "
            "base64) on the server"
        )
    return box


def _check_events(events: list[str]) -> list[str]:
    unknown = sorted(set(events) - set(EVENTS))
    if unknown:
        raise InvalidInput(
            f"events: unknown event(s) {', '.join(unknown)}; the events are {', '.join(EVENTS)} "
            "(none: all of them)",
            field="events",
        )
    return sorted(set(events), key=EVENTS.index)


async def _check_url(who: Identity, url: str, allow_private: bool, policy: NetPolicy) -> None:
    """A user's webhook may only call a public internet address (the workers would otherwise POST
    into the operator's network for them); an admin's with `allow_private` anywhere."""
    if allow_private and not who.is_admin:
        raise Forbidden("allow_private: only an admin may let a webhook call a non-public address")
    await check_public_url(url, "url", "a webhook", policy, any_address=allow_private)


# CRUD


async def create(
    db: AsyncSession, who: Identity, box: SecretBox | None, data: schemas.CreateWebhook, *, policy: NetPolicy
) -> schemas.CreatedWebhook:
    events = _check_events(data.events)
    secret = (
        webhook_signing.normalised(data.secret) if data.secret is not None else webhook_signing.new_secret()
    )
    await _check_url(who, data.url, data.allow_private, policy)
    # The id is known before insert: the secret's ciphertext is bound to it.
    row = Webhook(
        id=uuid7(),
        owner_id=who.user_id,
        url=data.url,
        events=events,
        active=data.active,
        allow_private=data.allow_private,
    )
    row.secret_encrypted = _box(box).seal(secret, secret_context(row.id))
    db.add(row)
    await db.commit()
    return schemas.CreatedWebhook(**msgspec.structs.asdict(to_schema(row)), secret=secret)


async def list_(db: AsyncSession, who: Identity, offset: int, limit: int) -> tuple[list[Webhook], int]:
    query = select(Webhook).where(Webhook.owner_id == who.user_id).order_by(Webhook.id)
    return await page_of(db, query, offset, limit)


async def get(db: AsyncSession, who: Identity, webhook_id: uuid.UUID) -> Webhook:
    row = await db.get(Webhook, webhook_id)
    if row is None or row.owner_id != who.user_id:
        raise NotFound(f"webhook {webhook_id} not found")
    return row


async def update_(
    db: AsyncSession,
    who: Identity,
    box: SecretBox | None,
    webhook_id: uuid.UUID,
    patch: schemas.UpdateWebhook,
    *,
    policy: NetPolicy,
) -> Webhook:
    row = await get(db, who, webhook_id)
    values = changed_fields(patch)
    if "events" in values:
        values["events"] = _check_events(values["events"])
    if "secret" in values:
        secret = webhook_signing.normalised(values.pop("secret"))
        row.secret_encrypted = _box(box).seal(secret, secret_context(row.id))
    if "url" in values or "allow_private" in values:
        await _check_url(
            who, values.get("url", row.url), values.get("allow_private", row.allow_private), policy
        )
    if values.get("active") is True:
        # Turned on again by a person: the service's reason and failure clock start over.
        values.update(disabled_reason=None, failing_since=None)
    for name, value in values.items():
        setattr(row, name, value)
    await db.commit()
    return row


async def delete(db: AsyncSession, who: Identity, webhook_id: uuid.UUID) -> None:
    """Deletes the webhook and its deliveries; a delivery's workflow then finds nothing to send."""
    await db.delete(await get(db, who, webhook_id))
    await db.commit()


async def rewrap_all(db: AsyncSession, box: SecretBox) -> int:
    """Re-encrypts every webhook's secret under the current master key (`everloop rotate-secrets`);
    returns how many changed."""
    changed = 0
    for row in (await db.execute(select(Webhook))).scalars():
        if box.needs_rewrap(row.secret_encrypted):
            plaintext = box.open(row.secret_encrypted, secret_context(row.id))
            row.secret_encrypted = box.seal(plaintext, secret_context(row.id))
            changed += 1
    await db.commit()
    return changed


# Deliveries


async def _notify(db: AsyncSession) -> None:
    # Sent at commit (never for a rolled-back transaction), as the triggers do.
    await db.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})


async def ping(db: AsyncSession, who: Identity, webhook_id: uuid.UUID) -> WebhookDelivery:
    """A `ping` delivery through the same durable path as every event."""
    row = await get(db, who, webhook_id)
    if not row.active:
        raise Conflict(f"webhook {webhook_id} is disabled; set active to true first")
    delivery = WebhookDelivery(
        id=uuid7(),
        webhook_id=row.id,
        owner_id=row.owner_id,
        event=PING,
        payload=msgspec.to_builtins(
            # Whole seconds, as the triggers' bodies have them.
            PingBody(timestamp=datetime.now(UTC).replace(microsecond=0), data=PingData(webhook_id=row.id))
        ),
        next_attempt_at=datetime.now(UTC),
    )
    db.add(delivery)
    await _notify(db)
    await db.commit()
    return delivery


async def deliveries(
    db: AsyncSession, who: Identity, webhook_id: uuid.UUID, offset: int, limit: int
) -> tuple[list[WebhookDelivery], int]:
    """Newest first."""
    await get(db, who, webhook_id)
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook_id)
        .order_by(WebhookDelivery.id.desc())
    )
    return await page_of(db, query, offset, limit)


async def redeliver(
    db: AsyncSession, who: Identity, webhook_id: uuid.UUID, delivery_id: uuid.UUID
) -> WebhookDelivery:
    """Starts a new attempt series now, with the same `webhook-id` (receivers deduplicate on it); a
    series still waiting for its next attempt stops there."""
    hook = await get(db, who, webhook_id)
    if not hook.active:
        raise Conflict(f"webhook {webhook_id} is disabled; set active to true first")
    found = await db.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.webhook_id == webhook_id)
        .values(
            series=WebhookDelivery.series + 1,
            status="pending",
            workflow_started_at=None,
            next_attempt_at=datetime.now(UTC),
            delivered_at=None,
        )
        .returning(WebhookDelivery)
    )
    delivery = found.scalar_one_or_none()
    if delivery is None:
        raise NotFound(f"delivery {delivery_id} not found")
    await _notify(db)
    await db.commit()
    return delivery


# The dispatcher (everloop/sweeper.py runs it in every worker)

_UNSTARTED = text(
    """
    SELECT id, series FROM webhook_deliveries
    WHERE workflow_started_at IS NULL
    ORDER BY created_at
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
    """
)


async def start_unstarted(
    db: Database, client: Client, task_queue: str, schedule_s: tuple[float, ...]
) -> int:
    """Starts the workflow of every delivery that has none yet; returns how many it started.

    The rows stay locked (SKIP LOCKED: other workers take others) until their start is recorded, so
    a worker that dies mid-way leaves them unclaimed for the next, and a start that Temporal had
    already taken is refused there (one workflow id per series): a delivery's series runs once."""
    started = 0
    gate = asyncio.Semaphore(STARTS_AT_ONCE)
    while True:
        async with db.session() as session:
            rows = (await session.execute(_UNSTARTED, {"batch": CLAIM_BATCH})).all()
            if not rows:
                return started

            async def start(delivery_id: uuid.UUID, series: int) -> uuid.UUID | None:
                async with gate:
                    try:
                        await client.start_workflow(
                            WebhookLoop.WORKFLOW,
                            DeliveryInput(
                                delivery_id=str(delivery_id), series=series, schedule_s=list(schedule_s)
                            ),
                            id=WebhookLoop.workflow_id(str(delivery_id), series),
                            task_queue=task_queue,
                            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                        )
                    except WorkflowAlreadyStartedError:
                        pass  # an earlier claim started it and died before recording it
                    except Exception as exc:  # Temporal away: left unclaimed for the next sweep
                        log.info(
                            "cannot start a webhook delivery", delivery_id=str(delivery_id), error=str(exc)
                        )
                        return None
                    return delivery_id

            done = [d for d in await asyncio.gather(*(start(i, s) for i, s in rows)) if d is not None]
            if done:
                await session.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id.in_(done))
                    .values(workflow_started_at=datetime.now(UTC))
                )
            await session.commit()
            started += len(done)
            if len(done) < len(rows) or len(rows) < CLAIM_BATCH:
                return started


# One attempt (activities/webhooks.py)


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """What one attempt sends, read in its own transaction."""

    delivery_id: uuid.UUID
    webhook_id: uuid.UUID
    url: str
    secret_encrypted: bytes
    allow_private: bool
    body: bytes


async def begin_attempt(db: AsyncSession, delivery_id: uuid.UUID, series: int) -> Attempt | None:
    """The attempt to make, marked `delivering`; None when there is nothing to send: the delivery or
    its webhook is gone, a newer series runs, it has ended, or its webhook is disabled (then the
    delivery fails, saying so)."""
    found = (
        await db.execute(
            select(WebhookDelivery, Webhook)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(WebhookDelivery.id == delivery_id)
            .with_for_update(of=WebhookDelivery)
        )
    ).first()
    if found is None:
        return None
    delivery, hook = found
    if delivery.series != series or delivery.status in ("delivered", "failed"):
        return None
    if not hook.active:
        delivery.status = "failed"
        delivery.last_error = "the webhook is disabled" + (
            f": {hook.disabled_reason}" if hook.disabled_reason else ""
        )
        delivery.next_attempt_at = None
        await db.commit()
        return None
    delivery.status = "delivering"
    await db.commit()
    return Attempt(
        delivery_id=delivery.id,
        webhook_id=hook.id,
        url=hook.url,
        secret_encrypted=hook.secret_encrypted,
        allow_private=hook.allow_private,
        body=msgspec.json.encode(delivery.payload),
    )


def open_secret(box: SecretBox | None, attempt: Attempt) -> str:
    return _box(box).open(attempt.secret_encrypted, secret_context(attempt.webhook_id))


async def record_attempt(
    db: AsyncSession,
    delivery_id: uuid.UUID,
    series: int,
    *,
    status_code: int | None,
    error: str | None,
    next_wait_s: float | None,
    disable_after_s: float,
) -> schemas.AttemptOutcome:
    """Stores one attempt's outcome: 2xx delivered; 410 the webhook disabled and the delivery
    failed; anything else `pending` until the next attempt (`next_wait_s`), or failed after the
    last. A webhook whose attempts have all failed for `disable_after_s` is disabled."""
    # Rows are locked in the order a webhook's DELETE takes them: the webhook, then (its cascade)
    # the delivery. The other order deadlocks with it: the attempt holding the delivery waits to
    # write the webhook, the DELETE holding the webhook waits to delete the delivery. KEY SHARE
    # conflicts only with that DELETE: attempts (and the triggers, which take the same) do not wait
    # for each other here, and one that then writes the webhook upgrades to the UPDATE's lock,
    # which KEY SHARE does not block. A webhook deleted meanwhile is waited for, then not found.
    webhook_of_delivery = (
        select(WebhookDelivery.webhook_id).where(WebhookDelivery.id == delivery_id).scalar_subquery()
    )
    locked = await db.execute(
        select(Webhook.id).where(Webhook.id == webhook_of_delivery).with_for_update(key_share=True)
    )
    if locked.first() is None:
        return "done"
    found = (
        await db.execute(
            select(WebhookDelivery, Webhook)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(WebhookDelivery.id == delivery_id)
            # The delivery only: every attempt of every delivery of a webhook locking its row
            # exclusively would queue them all up behind each other. Two failures racing to start
            # the webhook's failure clock or to disable it write the same thing.
            .with_for_update(of=WebhookDelivery)
        )
    ).first()
    if found is None:
        return "done"
    delivery, hook = found
    if delivery.series != series:
        return "done"  # a redelivery took over meanwhile; its own attempts report
    now = datetime.now(UTC)
    delivery.attempts += 1
    delivery.last_status_code = status_code
    delivery.last_attempt_at = now
    delivery.last_error = error[:ERROR_CHARS] if error else None
    outcome: schemas.AttemptOutcome = "done"
    if status_code is not None and 200 <= status_code < 300:
        delivery.status, delivery.delivered_at, delivery.next_attempt_at = "delivered", now, None
        if hook.failing_since is not None:  # else the webhook's row is not written at all
            hook.failing_since = None
    elif status_code == 410:
        delivery.status, delivery.next_attempt_at = "failed", None
        _disable(hook, "the receiver answered 410 Gone")
    else:
        if hook.failing_since is None:
            hook.failing_since = now
        elif now - hook.failing_since >= timedelta(seconds=disable_after_s):
            _disable(hook, f"every delivery failed since {hook.failing_since:%Y-%m-%d %H:%M:%S} UTC")
        if next_wait_s is None or not hook.active:
            delivery.status, delivery.next_attempt_at = "failed", None
        else:
            delivery.status = "pending"
            delivery.next_attempt_at = now + timedelta(seconds=next_wait_s)
            outcome = "retry"
    await db.commit()
    return outcome


def _disable(hook: Webhook, reason: str) -> None:
    if hook.active:
        hook.active, hook.disabled_reason = False, reason
        log.warning("webhook disabled", webhook_id=str(hook.id), reason=reason)


def describe_error(exc: BaseException) -> str:
    text_ = str(exc) or type(exc).__name__
    return text_[:ERROR_CHARS]
