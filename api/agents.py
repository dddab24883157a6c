"""Agents: `/v1/agents`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.di import NamedDependency
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import Body, FromPath, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.openapi import AUTHENTICATED, error_responses
from api.pagination import Page, PageParams, page
from api.state import Services
from core.errors import InvalidInput
from core.identity import Identity
from core.json_limits import JsonLimits
from core.schemas.agents import Agent, AgentStatus, CreateAgent, UpdateAgent
from core.schemas.capabilities import AgentCapabilities, SetAgentCapabilities
from services import agent_io, agents


@dataclass
class _AgentFileOperation(Operation):
    """Documents the raw agent file that `POST /v1/agents/import` reads from the request body."""

    def __post_init__(self) -> None:
        file = OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING, description="The agent file"))
        self.request_body = RequestBody(
            required=True,
            description="Markdown with YAML front matter (the body is the system prompt), YAML, or JSON.",
            content={"text/markdown": file, "application/yaml": file, "application/json": file},
        )


class AgentController(Controller):
    path = "/v1/agents"
    tags = ["agents"]
    security = AUTHENTICATED

    @post(operation_id="createAgent", responses=error_responses(400, 409))
    async def create_agent(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        data: Annotated[CreateAgent, Body()],
    ) -> Response[Agent]:
        """Create an agent (201). `capabilities` is an ordered list of capability ids, or of
        `{"ref": ..., "config": {...}}` (or `{"id": ...}`) for a capability with a configuration
        (mixed is fine). `tools` are client-side tools; `initial_files` go into each new session's
        files. With an `id` (`agent_<32 hex>` or a UUID) of one of your agents, that agent is
        replaced by this one (200), as Everruns' `apply` expects; an id someone else has is a 409."""
        row, created = await agents.create(db_session, who, data)
        return Response(agents.to_schema(row), status_code=201 if created else 200)

    @get(operation_id="listAgents", responses=error_responses(400))
    async def list_agents(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        page_params: NamedDependency[PageParams],
        status: Annotated[
            AgentStatus | None, QueryParameter(description="Only agents with this status")
        ] = None,
        tag: Annotated[str | None, QueryParameter(description="Only agents with this tag")] = None,
        search: Annotated[
            str | None, QueryParameter(description="Substring of the name or description")
        ] = None,
        include_archived: Annotated[bool, QueryParameter(description="Include archived agents")] = False,
    ) -> Page[Agent]:
        """List agents, newest first. Archived agents are hidden unless `include_archived=true`
        or `status=archived`."""
        rows, total = await agents.list_(
            db_session,
            who,
            offset=page_params.offset,
            limit=page_params.limit,
            status=status,
            tag=tag,
            search=search,
            include_archived=include_archived,
        )
        return page([agents.to_schema(r) for r in rows], total, page_params)

    @post(
        "/import",
        operation_id="importAgent",
        responses=error_responses(400, 413),
        operation_class=_AgentFileOperation,
    )
    async def import_agent(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        request: Request[Any, Any, Any],
    ) -> Agent:
        """Create an agent from a file: Markdown with YAML front matter (the body is the system
        prompt), YAML, or JSON. Send the file as the request body; `Content-Type` `text/markdown`,
        `application/yaml` or `application/json` picks the format, else it is detected."""
        body = await request.body()
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise InvalidInput("the agent file is not UTF-8 text", field="body") from None
        data = agent_io.parse_agent(
            text, request.headers.get("content-type"), JsonLimits.of(services.settings)
        )
        row, _ = await agents.create(db_session, who, data)  # the file's `id` is dropped: always new
        return agents.to_schema(row)

    @get("/{agent_id:uuid}", operation_id="getAgent", responses=error_responses(404))
    async def get_agent(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        agent_id: FromPath[uuid.UUID],
    ) -> Agent:
        """Get an agent (archived ones too)."""
        return agents.to_schema(await agents.get(db_session, who, agent_id))

    @patch("/{agent_id:uuid}", operation_id="updateAgent", responses=error_responses(400, 404))
    async def update_agent(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        agent_id: FromPath[uuid.UUID],
        data: Annotated[UpdateAgent, Body()],
    ) -> Agent:
        """Change some fields of an agent; `status: active` un-archives it."""
        return agents.to_schema(await agents.update(db_session, who, agent_id, data))

    @delete("/{agent_id:uuid}", operation_id="archiveAgent", responses=error_responses(404))
    async def archive_agent(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        agent_id: FromPath[uuid.UUID],
    ) -> None:
        """Archive an agent: it stays readable, its sessions become read-only, and new sessions
        are refused."""
        await agents.archive(db_session, who, agent_id)

    @get(
        "/{agent_id:uuid}/export",
        operation_id="exportAgent",
        media_type="text/markdown",
        responses=error_responses(404),
    )
    async def export_agent(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        agent_id: FromPath[uuid.UUID],
    ) -> Response[str]:
        """The agent as Markdown with YAML front matter; `POST /v1/agents/import` reads it back."""
        agent = await agents.get(db_session, who, agent_id)
        return Response(
            agent_io.export_markdown(agent),
            media_type="text/markdown; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="agent-{agent.id}.md"'},
        )

    @get("/{agent_id:uuid}/capabilities", operation_id="getAgentCapabilities", responses=error_responses(404))
    async def get_capabilities(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        agent_id: FromPath[uuid.UUID],
    ) -> AgentCapabilities:
        """The agent's capability ids, in order, and the configurations given, by id."""
        row = await agents.get(db_session, who, agent_id)
        return AgentCapabilities(capabilities=row.capabilities, capability_configs=row.capability_configs)

    @put(
        "/{agent_id:uuid}/capabilities",
        operation_id="setAgentCapabilities",
        responses=error_responses(400, 404),
    )
    async def set_capabilities(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        agent_id: FromPath[uuid.UUID],
        data: Annotated[SetAgentCapabilities, Body()],
    ) -> AgentCapabilities:
        """Replace the agent's capabilities and their configurations. Each item is an id (default
        configuration) or `{"id": ..., "config": {...}}`, validated against the capability's
        `config_schema`. The order is kept; an unknown id, an invalid configuration (the error names
        the field) or two capabilities offering the same tool name is a 400."""
        row = await agents.set_capabilities(db_session, who, agent_id, data.capabilities)
        return AgentCapabilities(capabilities=row.capabilities, capability_configs=row.capability_configs)
