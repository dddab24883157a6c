"""Projects and their keys (001): `/v1/projects`."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath
from sqlalchemy.ext.asyncio import AsyncSession

from api.openapi import AUTHENTICATED, error_responses
from core.identity import Identity
from core.schemas.trace_api import CreateProject, Project, ProjectList, RotatedKey
from services import projects


class ProjectController(Controller):
    path = "/v1/projects"
    tags = ["projects"]
    security = AUTHENTICATED

    @post(operation_id="createProject", responses=error_responses(400, 403))
    async def create_project(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        data: Annotated[CreateProject, Body()],
    ) -> Project:
        """A new project with its first key: `api_key` is the full key, shown this once."""
        return await projects.create(db_session, who, data)

    @get(operation_id="listProjects", responses=error_responses(403))
    async def list_projects(
        self, db_session: NamedDependency[AsyncSession], who: NamedDependency[Identity]
    ) -> ProjectList:
        """The caller's projects, the default project (which holds the agents' turns) first."""
        return await projects.list_(db_session, who)

    @get("/{project_id:uuid}", operation_id="getProject", responses=error_responses(403, 404))
    async def get_project(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        project_id: FromPath[uuid.UUID],
    ) -> Project:
        """One project, with its keys' prefixes."""
        return await projects.one(db_session, who, project_id)

    @post(
        "/{project_id:uuid}/rotate-key",
        operation_id="rotateProjectKey",
        responses=error_responses(403, 404),
    )
    async def rotate_key(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        project_id: FromPath[uuid.UUID],
    ) -> RotatedKey:
        """A new key for the project; its earlier keys stop working at once."""
        return RotatedKey(key=await projects.rotate_key(db_session, who, project_id))
