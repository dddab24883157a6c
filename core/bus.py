"""The one way to reach Redis: a client for publishing and following session events."""

from __future__ import annotations

import redis.asyncio as redis


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=2, health_check_interval=30)
