"""The capability catalogue: `/v1/capabilities`."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.openapi import AUTHENTICATED, error_responses
from api.pagination import PageParams
from capabilities import registry
from core.errors import NotFound
from core.identity import Identity
from core.schemas.capabilities import Capability, CapabilityList
from services import mcp_servers


class CapabilityController(Controller):
    path = "/v1/capabilities"
    tags = ["capabilities"]
    security = AUTHENTICATED

    @get(operation_id="listCapabilities", responses=error_responses(400))
    async def list_capabilities(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        page_params: NamedDependency[PageParams],
        search: Annotated[
            str | None,
            QueryParameter(description="Only capabilities whose name or description has this (any case)"),
        ] = None,
    ) -> CapabilityList:
        """Every built-in capability, then the MCP servers the caller may use (`mcp:{id}`), with
        their prompt additions and tool definitions; `total` counts those that match `search`."""
        specs = registry.all_capabilities() + await mcp_servers.visible_specs(db_session, who)
        needle = (search or "").casefold()
        everything = [
            c.public() for c in specs if needle in c.name.casefold() or needle in c.description.casefold()
        ]
        chosen = everything[page_params.offset : page_params.offset + page_params.limit]
        return CapabilityList(
            data=chosen,
            items=chosen,
            total=len(everything),
            offset=page_params.offset,
            limit=page_params.limit,
        )

    @get("/{capability_id:str}", operation_id="getCapability", responses=error_responses(404))
    async def get_capability(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        capability_id: FromPath[str],
    ) -> Capability:
        """One capability; `tool_definitions[].parameters` are JSON Schema."""
        spec = registry.get(capability_id) or (
            await mcp_servers.specs_for(db_session, who.user_id, [capability_id])
        ).get(capability_id)
        if spec is None:
            raise NotFound(f"capability {capability_id!r} not found")
        return spec.public()
