"""Webhooks: `/v1/webhooks` and their deliveries (docs/webhooks.md)."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath
from sqlalchemy.ext.asyncio import AsyncSession

from api.openapi import AUTHENTICATED, error_responses
from api.pagination import Page, PageParams, page
from api.state import Services
from core.identity import Identity
from core.net import NetPolicy
from core.schemas.webhooks import CreatedWebhook, CreateWebhook, Delivery, UpdateWebhook, Webhook
from services import webhooks


def _policy(services: Services) -> NetPolicy:
    return NetPolicy(allow_loopback=services.settings.outbound_allow_loopback)


class WebhookController(Controller):
    path = "/v1/webhooks"
    tags = ["webhooks"]
    security = AUTHENTICATED

    @post(operation_id="createWebhook", responses=error_responses(400, 403, 503))
    async def create_webhook(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        data: Annotated[CreateWebhook, Body()],
    ) -> CreatedWebhook:
        """Add a webhook: the caller's events (`events`, none: all) are POSTed to `url`, signed
        as Standard Webhooks. `secret` (`whsec_` + base64, or any 16 to 64 bytes) is write-only;
        omitted, one is made. This answer is the only one that shows it. The URL must be on a
        public address; an admin may set `allow_private`."""
        return await webhooks.create(db_session, who, services.secrets, data, policy=_policy(services))

    @get(operation_id="listWebhooks", responses=error_responses(400))
    async def list_webhooks(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        page_params: NamedDependency[PageParams],
    ) -> Page[Webhook]:
        """The caller's webhooks (never their secrets)."""
        rows, total = await webhooks.list_(db_session, who, page_params.offset, page_params.limit)
        return page([webhooks.to_schema(r) for r in rows], total, page_params)

    @get("/{webhook_id:uuid}", operation_id="getWebhook", responses=error_responses(404))
    async def get_webhook(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        webhook_id: FromPath[uuid.UUID],
    ) -> Webhook:
        """One webhook; `disabled_reason` says why the service turned it off."""
        return webhooks.to_schema(await webhooks.get(db_session, who, webhook_id))

    @patch("/{webhook_id:uuid}", operation_id="updateWebhook", responses=error_responses(400, 403, 404, 503))
    async def update_webhook(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        webhook_id: FromPath[uuid.UUID],
        data: Annotated[UpdateWebhook, Body()],
    ) -> Webhook:
        """Change a webhook; `active: true` turns a disabled one on again (its reason cleared)."""
        row = await webhooks.update_(
            db_session, who, services.secrets, webhook_id, data, policy=_policy(services)
        )
        return webhooks.to_schema(row)

    @delete("/{webhook_id:uuid}", operation_id="deleteWebhook", responses=error_responses(404))
    async def delete_webhook(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        webhook_id: FromPath[uuid.UUID],
    ) -> None:
        """Delete a webhook and its deliveries (any still waiting are not sent)."""
        await webhooks.delete(db_session, who, webhook_id)

    @post(
        "/{webhook_id:uuid}/test",
        operation_id="testWebhook",
        status_code=202,
        responses=error_responses(404, 409),
    )
    async def test_webhook(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        webhook_id: FromPath[uuid.UUID],
    ) -> Delivery:
        """Send a `ping` event, as any event is sent (durably, with retries): the delivery it made;
        `GET .../deliveries` shows how it went."""
        return webhooks.delivery_schema(await webhooks.ping(db_session, who, webhook_id))

    @get(
        "/{webhook_id:uuid}/deliveries",
        operation_id="listWebhookDeliveries",
        responses=error_responses(400, 404),
    )
    async def list_deliveries(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        webhook_id: FromPath[uuid.UUID],
        page_params: NamedDependency[PageParams],
    ) -> Page[Delivery]:
        """The webhook's deliveries, newest first: status, attempts, the last answer's code and time."""
        rows, total = await webhooks.deliveries(
            db_session, who, webhook_id, page_params.offset, page_params.limit
        )
        return page([webhooks.delivery_schema(r) for r in rows], total, page_params)

    @post(
        "/{webhook_id:uuid}/deliveries/{delivery_id:uuid}/redeliver",
        operation_id="redeliverWebhookDelivery",
        status_code=202,
        responses=error_responses(404, 409),
    )
    async def redeliver(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        webhook_id: FromPath[uuid.UUID],
        delivery_id: FromPath[uuid.UUID],
    ) -> Delivery:
        """Send a delivery again from the schedule's start, with the same `webhook-id`."""
        row = await webhooks.redeliver(db_session, who, webhook_id, delivery_id)
        return webhooks.delivery_schema(row)
