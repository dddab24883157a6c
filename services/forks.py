"""Opswald's replays: a recorded agent turn forked at a step and run again by the real agent loop
(docs/replay.md, "Forks"). Work in progress: the interface below is the contract golden tests use."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import Replay, Trace
from core.schemas.turns import ForkStart, SessionInput

KIND = "fork"


@dataclass(frozen=True)
class Fork:
    """A stored fork: its replay row (kind `fork`, status `pending`), its session (a copy of the
    original's conversation up to the fork step) and how its workflow starts."""

    replay: Replay
    session_id: uuid.UUID
    agent_id: uuid.UUID
    start: ForkStart

    def workflow_input(self) -> SessionInput:
        """The forked session's workflow input (workflow id `SessionLoop.workflow_id(session_id)`)."""
        return SessionInput(
            session_id=str(self.session_id),
            agent_id=str(self.agent_id),
            pending=[self.start.message_id],
            fork=self.start,
        )


async def create(
    db: AsyncSession,
    *,
    owner_id: uuid.UUID,
    trace: Trace,
    modifications: dict[str, Any],
    fork_from_step: int | None,
    mode: str,
    created_by: str | None,
    field: str = "",
) -> Fork:
    """Checks the modifications (a 400 InvalidInput names `{field}modifications.<key>`) and the fork
    step (`{field}fork_from_step`; None: the turn's first step, i.e. the whole turn again), copies
    the conversation and stores the replay row and the forked session; not committed (the caller
    commits). The trace must be an agent turn's (else InvalidInput naming `{field}trace_id`)."""
    raise NotImplementedError


async def load(db: AsyncSession, replay_id: uuid.UUID) -> Fork:
    """A stored fork, as `create` returned it (for an activity retried after it committed one)."""
    raise NotImplementedError
