"""A session's file tree (capability `session_file_system`, and `/v1/agents/{a}/sessions/{s}/fs/...`).

One row per file or directory, keyed by session and normalised absolute path (`/notes/a.md`); the
root `/` has no row. Directories are explicit rows, made as needed when a file is written below
them, so an emptied directory stays until it is deleted. Rows go with the session (ON DELETE
CASCADE). Paths use the "C" collation, so a subtree is a byte-wise prefix range of the primary key.
Each entry also has an `id` of its own (Everruns' clients show one; it stays with the entry when it
is moved or replaced, a copy gets a new one) and an `is_readonly` mark (`core/file_store.py` says
what it forbids).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import Base, utcnow
from core.schemas.files import EntryType

FILE = "file"
DIRECTORY = "directory"


class SessionFile(Base):
    __tablename__ = "session_files"
    __table_args__ = (
        CheckConstraint("kind IN ('file', 'directory')", name="kind"),
        CheckConstraint("(kind = 'file') = (content IS NOT NULL)", name="content_only_in_files"),
        Index("ix_session_files_session_id_parent", "session_id", "parent"),
    )

    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    )
    path: Mapped[str] = mapped_column(Text(collation="C"), primary_key=True)
    # The containing directory's path ("/" for the top level): a listing is one index range.
    parent: Mapped[str] = mapped_column(Text(collation="C"))
    kind: Mapped[EntryType] = mapped_column(String(10))
    content: Mapped[bytes | None] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Made by PostgreSQL, not Python: rows are inserted in bulk (INSERT ... SELECT for a copied
    # directory), where one Python-side default would be shared by every row.
    id: Mapped[uuid.UUID] = mapped_column(Uuid, server_default=text("gen_random_uuid()"), unique=True)
    is_readonly: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow, server_default=func.now()
    )
