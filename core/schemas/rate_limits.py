"""Rate limits on the wire: the plan table, and an admin's plan or figures for a user or a key."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

PerMinute = Annotated[int, Meta(ge=1, le=10_000_000, description="requests per minute, sustained")]
Burst = Annotated[int, Meta(ge=1, le=10_000_000, description="requests at once (the bucket's size)")]


class SubjectType(StrEnum):
    """What a limit is set on: a user (all their credentials, each its own bucket) or one key."""

    USERS = "users"
    API_KEYS = "api-keys"
    PROJECT_KEYS = "project-keys"


class Plan(msgspec.Struct, kw_only=True):
    name: str
    per_minute: int | None  # None: custom (enterprise), set with the plan
    burst: int | None


class Plans(msgspec.Struct, kw_only=True):
    data: list[Plan]
    default: str  # RATE_LIMIT_PLAN: the plan of whoever has none set


class RateLimitSet(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A plan of the table; `enterprise` takes its own `per_minute` and `burst` (and only it does)."""

    plan: Literal["free", "pro", "teams", "enterprise"]
    per_minute: PerMinute | None = None
    burst: Burst | None = None


class RateLimit(msgspec.Struct, kw_only=True):
    """The limits in force for a user or a key, and where they come from."""

    subject_type: SubjectType
    subject_id: uuid.UUID
    plan: str
    per_minute: int
    burst: int
    # `key`: set on this key; `user`: the owner's plan; `default`: RATE_LIMIT_PLAN.
    source: Literal["key", "user", "default"]
    updated_at: datetime | None = None  # when an admin last set it (None: nobody did)


class RateLimitList(msgspec.Struct, kw_only=True):
    data: list[RateLimit]  # every limit an admin set, newest first
