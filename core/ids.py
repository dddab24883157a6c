"""UUIDv7 identifiers, with no database import: workflow code builds ids here too."""

from __future__ import annotations

import uuid

import uuid6


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7): new rows land at the end of the primary-key index."""
    return uuid.UUID(bytes=uuid6.uuid7().bytes)


def uuid7_at(unix_ms: int, random_bits: int) -> uuid.UUID:
    """A UUIDv7 from a given time and 74 random bits: for workflow code, which must get both from
    Temporal (`workflow.now()`, `workflow.random()`) to stay deterministic on replay."""
    rand_a = (random_bits >> 62) & 0xFFF
    rand_b = random_bits & ((1 << 62) - 1)
    value = (unix_ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)
