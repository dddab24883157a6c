"""Rate limits an admin sets (docs/rate_limits.md): `/v1/rate-limits`. A user may read the plan table
and nothing else (403): their own limits are in every response's `X-RateLimit-*` headers."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, delete, get, put
from litestar.di import NamedDependency
from litestar.params import Body, FromPath
from sqlalchemy.ext.asyncio import AsyncSession

from api.openapi import AUTHENTICATED, error_responses
from api.state import Services
from core.errors import Forbidden
from core.identity import Identity
from core.schemas.rate_limits import Plans, RateLimit, RateLimitList, RateLimitSet, SubjectType
from services import rate_limits


def _admin(who: Identity) -> None:
    if not who.is_admin:
        raise Forbidden("only an admin may read or set rate limits")


class RateLimitController(Controller):
    path = "/v1/rate-limits"
    tags = ["rate-limits"]
    security = AUTHENTICATED

    @get(operation_id="listRateLimits", responses=error_responses(401, 403))
    async def list_rate_limits(
        self, db_session: NamedDependency[AsyncSession], who: NamedDependency[Identity]
    ) -> RateLimitList:
        """Every limit an admin set (on users and on keys), newest first. Admins only."""
        _admin(who)
        return await rate_limits.list_set(db_session)

    @get("/plans", operation_id="listRateLimitPlans", responses=error_responses(401))
    async def list_plans(self, services: NamedDependency[Services]) -> Plans:
        """The plans (requests per minute and burst; enterprise's are set with it) and the default."""
        return rate_limits.plans(services.settings)

    @get(
        "/{subject_type:str}/{subject_id:uuid}",
        operation_id="getRateLimit",
        responses=error_responses(401, 403, 404),
    )
    async def get_rate_limit(
        self,
        services: NamedDependency[Services],
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        subject_type: FromPath[SubjectType],
        subject_id: FromPath[uuid.UUID],
    ) -> RateLimit:
        """The limits in force for a user or a key, and whether they are its own, its user's or the
        default. Admins only."""
        _admin(who)
        return await rate_limits.effective(db_session, services.settings, subject_type, subject_id)

    @put(
        "/{subject_type:str}/{subject_id:uuid}",
        operation_id="setRateLimit",
        responses=error_responses(401, 403, 404, 409),
    )
    async def set_rate_limit(
        self,
        services: NamedDependency[Services],
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        subject_type: FromPath[SubjectType],
        subject_id: FromPath[uuid.UUID],
        data: Annotated[RateLimitSet, Body()],
    ) -> RateLimit:
        """Sets a user's plan (each of their credentials gets it, each its own bucket) or one key's
        own (over its user's). `enterprise` takes `per_minute` and `burst`. Admins only."""
        _admin(who)
        return await rate_limits.set_limit(db_session, services.settings, subject_type, subject_id, data)

    @delete(
        "/{subject_type:str}/{subject_id:uuid}",
        operation_id="deleteRateLimit",
        status_code=204,
        responses=error_responses(401, 403, 404),
    )
    async def delete_rate_limit(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        subject_type: FromPath[SubjectType],
        subject_id: FromPath[uuid.UUID],
    ) -> None:
        """Removes what an admin set: the user or key falls back to its user's plan or the default."""
        _admin(who)
        await rate_limits.delete_limit(db_session, subject_type, subject_id)
