"""Searching a `/v2` knowledge base (services/knowledge.py) from an agent: the base is chosen in the
agent's configuration of this capability (its id or name; one of the agent owner's bases), the
model sends a query and gets the most similar chunks.

capabilities/ sits below services/: the search itself comes in through the tool's context
(`ToolContext.knowledge_search`, set by the worker's tool step, activities/tools.py)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from capabilities.base import CapabilityConfig, CapabilitySpec, Tool, ToolContext, ToolError
from core.errors import EverloopError

MAX_TOP_K = 20


class KnowledgeSearchConfig(CapabilityConfig, frozen=True):
    knowledge_base: (
        Annotated[
            str,
            msgspec.Meta(
                min_length=1,
                max_length=200,
                description="The knowledge base to search: its id or its name (a base of the agent's "
                "owner, /v2/knowledge)",
            ),
        ]
        | None
    ) = None
    top_k: Annotated[
        int, msgspec.Meta(ge=1, le=MAX_TOP_K, description="How many passages a search returns by default")
    ] = 5


class SearchKnowledge(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    query: Annotated[
        str, msgspec.Meta(min_length=1, max_length=2000, description="What to look for, in natural language")
    ]
    top_k: (
        Annotated[
            int, msgspec.Meta(ge=1, le=MAX_TOP_K, description="How many passages (default: configured)")
        ]
        | None
    ) = None


async def search_knowledge(params: SearchKnowledge, ctx: ToolContext) -> dict[str, Any]:
    config = ctx.config_as(KnowledgeSearchConfig)
    if config.knowledge_base is None:
        raise ToolError(
            "no knowledge base is configured: set `knowledge_base` in the agent's knowledge_search config"
        )
    if ctx.knowledge_search is None:
        raise ToolError("knowledge search is not available here")
    try:
        found = await ctx.knowledge_search(config.knowledge_base, params.query, params.top_k or config.top_k)
    except EverloopError as exc:  # the base is gone, its model fails (502): the model may say so
        raise ToolError(f"the search failed: {exc.message}") from None
    return {"knowledge_base": config.knowledge_base, "results": found}


CAPABILITY = CapabilitySpec(
    id="knowledge_search",
    name="Knowledge Search",
    description="Search a knowledge base of documents (configured per agent)",
    icon="book-open",
    category="Knowledge",
    system_prompt=(
        "You can search a knowledge base of documents with search_knowledge: use it when a question "
        "may be answered by them, and say which passages (their key) you used."
    ),
    config=KnowledgeSearchConfig,
    timeout_s=60.0,
    tools=(
        Tool(
            name="search_knowledge",
            description="Search the configured knowledge base: the passages most similar to the query, "
            "best first, each with its document's key, a similarity score (1 is best) and metadata",
            params=SearchKnowledge,
            handler=search_knowledge,
        ),
    ),
)
