"""Opswald's replays: `POST /v1/replays` forks an agent turn at a step and runs it again by the real
agent loop; `GET /v1/replays[/{id}]`; `POST /v1/replays/{id}/control` (docs/replay.md, "Forks")."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import structlog
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.messages import IdempotencyKey
from api.openapi import AUTHENTICATED, error_responses
from api.pagination import PageParams
from api.state import Services
from core.db.models import Replay
from core.errors import ServiceUnavailable
from core.identity import Identity
from core.schemas import replays as schema
from core.schemas.turns import ReplayControl
from services import forks, replays

log = structlog.get_logger("everloop.forks")


def _base(request: Request[Any, Any, Any], services: Services) -> str:
    return (services.settings.public_url or f"{request.url.scheme}://{request.url.netloc}").rstrip("/")


class ForkController(Controller):
    path = "/v1/replays"
    tags = ["replays"]
    security = AUTHENTICATED

    @post("/", operation_id="startReplay", status_code=201, responses=error_responses(400, 403, 404, 503))
    async def start_replay(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        data: Annotated[schema.StartReplay, Body()],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[schema.ReplayStartedView]:
        """Fork an agent turn's trace at `fork_from_step` (a reasoning step; default 1) and run it
        again with `modifications`, by the real agent loop in a new session (`session_id`: its
        events stream like any session's). The steps before the fork are the recording's and never
        run again. `mode: interactive` holds before the first forked step until a control."""
        fork, replayed = await forks.start_replay(db_session, who, data, idempotency_key)
        # A repeated key answers the first replay (its workflow started again only if it never was:
        # one workflow id per replay, so that start is harmless).
        headers = {"idempotent-replayed": "true"} if replayed else {}
        if not isinstance(fork, forks.Fork):
            started = await self._start_span_replay(request, db_session, who, services, fork)
            return Response(started, status_code=201, headers=headers)
        try:
            if not replayed or fork.replay.status == "pending":
                await forks.start(await services.temporal(), services.settings.temporal_task_queue, fork)
        except WorkflowAlreadyStartedError:
            pass
        except Exception:
            # Stored and `pending`: the worker's sweeper starts it (the workflow id makes a second
            # start harmless), so the client need not send again.
            log.exception("fork not started; the sweeper will", replay_id=str(fork.replay.id))
            raise ServiceUnavailable(
                "the replay is stored but Temporal did not take it; it starts within a minute "
                f"(GET /v1/replays/{fork.replay.id})"
            ) from None
        await forks.mark_started(db_session, fork.replay.id, paused=fork.start.interactive)
        replay = await forks.get_fork(db_session, who, fork.replay.id)
        view = schema.ReplayStartedView(
            replay_id=replay.id,
            trace_id=replay.original_trace_id,
            mode=replay.mode,
            status=replay.status,
            url=f"{_base(request, services)}/v1/replays/{replay.id}",
            started_at=replay.started_at,
            session_id=replay.session_id,
            fork_from_step=fork.start.step,
        )
        return Response(view, status_code=201, headers=headers)

    async def _start_span_replay(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        who: Identity,
        services: Services,
        replay: Replay,
    ) -> schema.ReplayStartedView:
        """An app's trace: its span replay's workflow, started as POST /v1/traces/{id}/replay starts
        one (a start whose answer was lost is asked about; a run never started is failed, 503)."""
        client = None
        try:
            client = await services.temporal()
            if replay.status == "pending":
                await replays.start(client, services.settings.temporal_task_queue, replay.id)
        except WorkflowAlreadyStartedError:
            pass
        except Exception:
            log.exception("span replay not started", replay_id=str(replay.id))
            if await replays.settle_unstarted(db_session, client, replay.id):
                raise
        replay = await forks.get_fork(db_session, who, replay.id)
        return schema.ReplayStartedView(
            replay_id=replay.id,
            trace_id=replay.original_trace_id,
            mode=replay.mode,
            status="running" if replay.status == "pending" else replay.status,
            url=f"{_base(request, services)}/v1/replays/{replay.id}",
            started_at=replay.started_at or replay.created_at,
            session_id=None,
            fork_from_step=int(replay.config.get("fork_from_step") or 1),
        )

    @get("/", operation_id="listReplays", responses=error_responses(403))
    async def list_replays(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        page_params: NamedDependency[PageParams],
        trace_id: Annotated[str | None, QueryParameter(description="One trace's replays.")] = None,
    ) -> schema.ReplayList:
        """Your replays, newest first: forks and span replays (POST /v1/traces/{id}/replay) alike.
        The statuses are the stored ones (GET one replay for a running fork's live step)."""
        rows, total = await forks.list_replays(
            db_session, who, page_params.limit, page_params.offset, trace_id
        )
        base = _base(request, services)
        return schema.ReplayList(
            replays=[forks.view(r, base, None) for r in rows],
            total=total,
            has_more=page_params.offset + len(rows) < total,
        )

    @get("/{replay_id:uuid}", operation_id="getReplayStatus", responses=error_responses(403, 404))
    async def get_replay(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        replay_id: FromPath[uuid.UUID],
    ) -> schema.ReplayView:
        """A replay: status (pending, running, paused, completed, failed, stopped), the step it is
        at, and when done its result and changes from the original."""
        replay = await forks.get_fork(db_session, who, replay_id)
        live = None
        if replay.status in ("pending", "running", "paused") and replay.kind == forks.KIND:
            try:
                live = await forks.live_state(await services.temporal(), replay)
            except Exception:
                live = None  # Temporal away: the stored values stand
        return forks.view(replay, _base(request, services), live)

    @post(
        "/{replay_id:uuid}/control",
        operation_id="controlReplay",
        status_code=200,
        responses=error_responses(400, 403, 404, 409, 503),
    )
    async def control(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        replay_id: FromPath[uuid.UUID],
        data: Annotated[ReplayControl, Body()],
    ) -> schema.ReplayView:
        """play, pause (before `step`, or the next step), step (one more), jump (run on to `step` and
        hold before it), stop. 409 when the replay has finished, or for a step that has run."""
        replay = await forks.get_fork(db_session, who, replay_id)
        forks.may_run(who)
        state = await forks.control(await services.temporal(), replay, data)
        await forks.record_control(db_session, replay.id, state)
        replay = await forks.get_fork(db_session, who, replay_id)
        return forks.view(replay, _base(request, services), state)
