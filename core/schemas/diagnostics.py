from __future__ import annotations

import msgspec


class StackCheckInput(msgspec.Struct, kw_only=True, frozen=True):
    token: str


class StackCheckResult(msgspec.Struct, kw_only=True, frozen=True):
    token: str
    postgres_version: str
    redis_version: str
    task_queue: str
