"""Announced: searching an agent's knowledge base. No tools until its issue lands."""

from __future__ import annotations

from capabilities.base import CapabilitySpec

CAPABILITY = CapabilitySpec(
    id="knowledge_search",
    name="Knowledge Search",
    description="Search documents attached to the agent (coming soon)",
    status="coming_soon",
    icon="book-open",
    category="Knowledge",
)
