"""Sessions, their messages and their events. A session's rows go when the session goes."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import Base, TimestampedModel, utcnow
from core.ids import uuid7
from core.schemas.sessions import MessageRole, SessionStatus


class Session(TimestampedModel):
    __tablename__ = "sessions"
    __table_args__ = (
        Index("ix_sessions_agent_id", "agent_id"),
        # Forked sessions (migration 0021): deleting a replay sets this NULL.
        Index("ix_sessions_replay_id", "replay_id", postgresql_where=text("replay_id IS NOT NULL")),
    )

    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    title: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    model_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("llm_models.id", ondelete="RESTRICT"))
    # 32: `waitingfortoolresults` is 21 characters.
    status: Mapped[SessionStatus] = mapped_column(String(32), default="started", server_default="started")
    # Counters handed out under the session row's lock, so sequences have no gaps and no duplicates.
    last_message_sequence: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_event_sequence: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    cost: Mapped[Decimal] = mapped_column(Numeric(18, 8), default=Decimal(0), server_default="0")
    # Session-level client-side tools and capabilities ([{ref, config}]), on top of the agent's.
    tools: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, default=list, server_default=text("'[]'::jsonb")
    )
    capabilities: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, default=list, server_default=text("'[]'::jsonb")
    )
    locale: Mapped[str | None] = mapped_column(Text)
    parallel_tool_calls: Mapped[bool | None] = mapped_column(Boolean)
    # When the first turn started, and when the last one ended (None while a turn runs).
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Ended (Opswald's `POST /v1/sessions/{id}/end`): its turn was stopped and it takes no new message.
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The Opswald replay this session was forked for (docs/replay.md, "Forks"): its reasoning steps
    # use the replay's modifications. `use_alter`: replays and sessions refer to each other.
    replay_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("replays.id", ondelete="SET NULL", use_alter=True)
    )


class Message(TimestampedModel):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("session_id", "sequence"),
        UniqueConstraint("session_id", "idempotency_key"),
        # The sweeper's scan for user messages whose dispatch was lost.
        Index("ix_messages_user_created_at", "created_at", postgresql_where=text("role = 'user'")),
    )

    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    sequence: Mapped[int] = mapped_column(Integer)
    role: Mapped[MessageRole] = mapped_column(String(20))
    content: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    controls: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB)
    tags: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("session_id", "sequence"),
        UniqueConstraint("session_id", "idempotency_key"),
        Index("ix_events_session_id_type", "session_id", "type"),
        # The sweeper's scan for turns that started and never ended (services/stranded.py).
        Index("ix_events_turn_started_ts", "ts", postgresql_where=text("type = 'turn.started'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    sequence: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(60))
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, server_default=func.now())
    context: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB)
    tags: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
