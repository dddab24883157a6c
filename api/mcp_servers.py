"""MCP servers: `/v1/mcp-servers`. Each is the capability `mcp:{id}`."""

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
from core.schemas.mcp import CreateMcpServer, McpServer, UpdateMcpServer
from services import mcp_servers


class McpServerController(Controller):
    path = "/v1/mcp-servers"
    tags = ["mcp-servers"]
    security = AUTHENTICATED

    @post(operation_id="createMcpServer", responses=error_responses(400, 403, 503))
    async def create_server(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        data: Annotated[CreateMcpServer, Body()],
    ) -> McpServer:
        """Add an MCP server and list its tools. `streamable_http`: `url` and write-only `headers`
        (stored encrypted; `header_names` shows which are set). `stdio` (admins only): `command`
        and `args`, run on the workers. A server that does not answer is still added, with
        `tools_error` saying why. An admin's servers are shared with everyone."""
        settings = services.settings
        row = await mcp_servers.create(
            db_session,
            who,
            services.secrets,
            data,
            policy=NetPolicy(allow_loopback=settings.outbound_allow_loopback),
            list_timeout_s=settings.mcp_list_timeout_s,
        )
        return mcp_servers.to_schema(row, who)

    @get(operation_id="listMcpServers", responses=error_responses(400))
    async def list_servers(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        page_params: NamedDependency[PageParams],
    ) -> Page[McpServer]:
        """The caller's servers and the shared ones."""
        rows, total = await mcp_servers.list_(db_session, who, page_params.offset, page_params.limit)
        return page([mcp_servers.to_schema(r, who) for r in rows], total, page_params)

    @get("/{server_id:uuid}", operation_id="getMcpServer", responses=error_responses(404))
    async def get_server(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        server_id: FromPath[uuid.UUID],
    ) -> McpServer:
        """One server, with its cached tools."""
        return mcp_servers.to_schema(await mcp_servers.get(db_session, who, server_id), who)

    @patch("/{server_id:uuid}", operation_id="updateMcpServer", responses=error_responses(400, 403, 404, 503))
    async def update_server(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        server_id: FromPath[uuid.UUID],
        data: Annotated[UpdateMcpServer, Body()],
    ) -> McpServer:
        """Change a server; `headers` replaces every stored header. A changed address lists the
        tools again."""
        settings = services.settings
        row = await mcp_servers.update(
            db_session,
            who,
            services.secrets,
            server_id,
            data,
            policy=NetPolicy(allow_loopback=settings.outbound_allow_loopback),
            list_timeout_s=settings.mcp_list_timeout_s,
        )
        return mcp_servers.to_schema(row, who)

    @delete("/{server_id:uuid}", operation_id="deleteMcpServer", responses=error_responses(403, 404, 409))
    async def delete_server(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        server_id: FromPath[uuid.UUID],
    ) -> None:
        """Delete a server; 409 naming the agents that enable it."""
        await mcp_servers.delete(db_session, who, server_id)

    @post(
        "/{server_id:uuid}/refresh",
        operation_id="refreshMcpServer",
        status_code=200,
        responses=error_responses(403, 404, 502),
    )
    async def refresh_server(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        server_id: FromPath[uuid.UUID],
    ) -> McpServer:
        """List the server's tools again and cache them; 502 if it does not answer (the cached
        tools stay, `tools_error` says why)."""
        settings = services.settings
        row = await mcp_servers.refresh(
            db_session,
            who,
            services.secrets,
            server_id,
            policy=NetPolicy(allow_loopback=settings.outbound_allow_loopback),
            list_timeout_s=settings.mcp_list_timeout_s,
        )
        return mcp_servers.to_schema(row, who)
