"""Golden tests (issue 14, Opswald; docs/golden_tests.md): `/v1/golden-tests` (create, list, get,
delete), `POST /v1/golden-tests/run` and the runs' reads."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import structlog
from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from api.openapi import AUTHENTICATED, error_responses
from api.pagination import PageParams
from api.state import Services
from core.errors import ServiceUnavailable
from core.identity import Identity
from core.schemas import golden as schema
from services import golden

log = structlog.get_logger("everloop.golden")


class GoldenTestController(Controller):
    path = "/v1/golden-tests"
    tags = ["golden tests"]
    security = AUTHENTICATED

    @post(operation_id="createGoldenTest", status_code=201, responses=error_responses(400, 403, 404))
    async def create_test(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        data: Annotated[schema.GoldenTestCreate, Body()],
    ) -> schema.GoldenTestOut:
        """Pin one of your agent turns (its trace) with the outcome it must keep: `status`,
        `final_message` with a `match`, an LLM `judge`, cost and duration limits, `tools`."""
        return golden.test_of(await golden.create_test(db_session, who, data))

    @get(operation_id="listGoldenTests", responses=error_responses(403))
    async def list_tests(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        page_params: NamedDependency[PageParams],
    ) -> schema.GoldenTestList:
        """Your golden tests, newest first."""
        return await golden.list_tests(db_session, who, page_params.offset, page_params.limit)

    @get("/{test_id:uuid}", operation_id="getGoldenTest", responses=error_responses(403, 404))
    async def get_test(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        test_id: FromPath[uuid.UUID],
    ) -> schema.GoldenTestOut:
        """One golden test."""
        return golden.test_of(await golden.get_test(db_session, who, test_id))

    @delete(
        "/{test_id:uuid}",
        operation_id="deleteGoldenTest",
        status_code=200,
        responses=error_responses(403, 404),
    )
    async def delete_test(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        test_id: FromPath[uuid.UUID],
    ) -> schema.GoldenTestDeleted:
        """Delete a golden test (the runs that judged it keep their results)."""
        return await golden.delete_test(db_session, who, test_id)

    @post(
        "/run", operation_id="runGoldenTests", status_code=201, responses=error_responses(400, 403, 404, 503)
    )
    async def run(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        data: Annotated[schema.GoldenRunRequest, Body()],
    ) -> schema.GoldenRunStarted:
        """Run golden tests: each pinned turn is forked and answered again with `modifications`
        (the fork's keys, and `timeout`: seconds per test), then judged. Answers at once; `url`
        gives the verdicts as they come."""
        run = await golden.create_run(db_session, who, data)
        client: Client | None = None
        try:
            client = await services.temporal()
            await golden.start(client, services.settings.temporal_task_queue, run.id)
        except Exception as exc:
            log.exception("golden run not started", run_id=str(run.id))
            # A start whose answer was lost may have gone through: then the run is left to it.
            if await golden.settle_unstarted(db_session, client, run.id):
                raise ServiceUnavailable(
                    "Temporal is not answering; the run was not started, send it again"
                ) from exc
        await db_session.refresh(run)
        base = str(request.base_url).rstrip("/")
        return schema.GoldenRunStarted(
            run_id=run.id,
            status=run.status,
            total_tests=run.total_tests,
            url=f"{base}/v1/golden-tests/runs/{run.id}",
        )

    @get("/runs", operation_id="listGoldenRuns", responses=error_responses(403))
    async def list_runs(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        page_params: NamedDependency[PageParams],
    ) -> schema.GoldenRunList:
        """Your golden test runs, newest first (without their results)."""
        return await golden.list_runs(db_session, who, page_params.offset, page_params.limit)

    @get("/runs/{run_id:uuid}", operation_id="getGoldenRun", responses=error_responses(403, 404))
    async def get_run(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        run_id: FromPath[uuid.UUID],
    ) -> schema.GoldenRunOut:
        """A run: its status, counts and a verdict per test (checks with reasons, the fork's diff,
        output, cost and duration)."""
        return await golden.get_run(db_session, who, run_id)
