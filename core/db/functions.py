"""Opper's managed functions (`/v2/functions`), their revisions, and each function's dataset of
examples (`/v2/datasets`). A function is a stored call definition (instructions, schemas, model,
configuration) its owner calls by id or name; every change to the definition is kept as a numbered,
immutable revision, so a caller can pin one. Its dataset holds input/output examples, embedded for
the semantic query and the few-shot examples of its calls."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import TimestampedModel

EMPTY_OBJECT = text("'{}'::jsonb")


class Function(TimestampedModel):
    __tablename__ = "functions"
    __table_args__ = (
        # A name is its owner's among live functions: a deleted one frees it for a new function.
        Index(
            "uq_functions_owner_name_live",
            "owner_id",
            "name",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    instructions: Mapped[str] = mapped_column(Text)
    input_schema: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    output_schema: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    # As the caller gave it: a name, a list of names (fallbacks) or `{name, options}`.
    model: Mapped[Any] = mapped_column(JSONB, nullable=True)
    configuration: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=EMPTY_OBJECT)
    # The revision a plain call runs: the latest. Not a foreign key: revisions point here.
    revision_id: Mapped[uuid.UUID | None] = mapped_column()
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class FunctionRevision(TimestampedModel):
    """A function's definition as it was after one change: never updated."""

    __tablename__ = "function_revisions"
    __table_args__ = (UniqueConstraint("function_id", "number"),)

    function_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("functions.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    instructions: Mapped[str] = mapped_column(Text)
    input_schema: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    output_schema: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    model: Mapped[Any] = mapped_column(JSONB, nullable=True)
    configuration: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=EMPTY_OBJECT)


class Dataset(TimestampedModel):
    """A function's examples (one per function, made with it)."""

    __tablename__ = "datasets"
    __table_args__ = (Index("ix_datasets_owner_id", "owner_id"),)

    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    function_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("functions.id", ondelete="CASCADE"), unique=True
    )


class DatasetEntry(TimestampedModel):
    __tablename__ = "dataset_entries"
    __table_args__ = (Index("ix_dataset_entries_dataset_id", "dataset_id"),)

    dataset_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    input: Mapped[Any] = mapped_column(JSONB, nullable=True)
    output: Mapped[Any] = mapped_column(JSONB, nullable=True)
    expected: Mapped[Any] = mapped_column(JSONB, nullable=True)
    comment: Mapped[str | None] = mapped_column(Text)
    # The input's embedding (of its JSON text), None until embedded. No dimension: the embedding
    # model is the deployment's choice; `embedding_model` says which one made it, and only vectors
    # of the same model are compared. A dataset is small (one function's examples): the query scans
    # its entries exactly, no index.
    embedding: Mapped[list[float] | None] = mapped_column(Vector())
    embedding_model: Mapped[str | None] = mapped_column(String(400))
