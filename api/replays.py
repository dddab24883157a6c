"""Replays of a trace with per-span mutations (seed 001): `POST /v1/traces/{trace_id}/replay`,
`GET .../replay/{replay_id}` and `GET .../replay/{replay_id}/diff` (docs/replay.md)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import structlog
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, WorkflowHandle

from api.openapi import AUTHENTICATED, error_responses
from api.state import Services
from core.identity import Identity
from core.schemas import replays as schema
from core.schemas.replays import ReplayLoop
from services import replays

log = structlog.get_logger("everloop.replays")


class ReplayController(Controller):
    path = "/v1/traces"
    tags = ["replays"]
    security = AUTHENTICATED

    @post(
        "/{trace_id:str}/replay",
        operation_id="replayTrace",
        status_code=200,
        responses=error_responses(400, 403, 404, 503),
    )
    async def replay(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        trace_id: FromPath[str],
        data: Annotated[schema.ReplayRequest, Body()],
    ) -> schema.ReplayStarted:
        """Replay a trace with per-span mutations: each mutated LLM span is re-executed through your
        models (`mutated_output`), the re-run is stored as a new trace (`result_trace_id`), tool and
        unmutated spans keep their recorded outputs. Waits up to REPLAY_WAIT_S; a run not done by
        then answers `status: running` (GET .../diff has the rest later)."""
        replay = await replays.create(db_session, who, trace_id, data)
        settings = services.settings
        client: Client | None = None
        handle: WorkflowHandle[Any, Any] | None
        try:
            client = await services.temporal()
            handle = await replays.start(client, settings.temporal_task_queue, replay.id)
        except Exception:
            log.exception("replay not started", replay_id=str(replay.id))
            # A start whose answer was lost may have gone through: then the run is answered as it
            # stands, not failed (the client would send again and pay twice). A run still `pending`
            # because this process died here is started by the sweeper.
            if await replays.settle_unstarted(db_session, client, replay.id):
                raise
            handle = client.get_workflow_handle(ReplayLoop.workflow_id(replay.id)) if client else None
        if handle is not None:
            await replays.wait(handle, settings.replay_wait_s)
        return replays.started(await replays.get_replay(db_session, who, trace_id, replay.id))

    @get(
        "/{trace_id:str}/replay/{replay_id:uuid}",
        operation_id="getReplay",
        responses=error_responses(403, 404),
    )
    async def get_replay(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        trace_id: FromPath[str],
        replay_id: FromPath[uuid.UUID],
    ) -> schema.ReplayRun:
        """A replay run: its status (pending, running, completed, failed), request, result trace."""
        return replays.run_of(await replays.get_replay(db_session, who, trace_id, replay_id))

    @get(
        "/{trace_id:str}/replay/{replay_id:uuid}/diff",
        operation_id="getReplayDiff",
        responses=error_responses(403, 404),
    )
    async def get_diff(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        trace_id: FromPath[str],
        replay_id: FromPath[uuid.UUID],
    ) -> schema.ReplayDiff:
        """The run's diffs: per mutated span, the original and mutated input and output."""
        return replays.diff_of(await replays.get_replay(db_session, who, trace_id, replay_id))
