"""Announced: multi-step web research. No tools until its issue lands."""

from __future__ import annotations

from capabilities.base import CapabilitySpec

CAPABILITY = CapabilitySpec(
    id="research",
    name="Research",
    description="Deep research across many sources with citations (coming soon)",
    status="coming_soon",
    icon="search",
    category="Research",
)
