"""`/v2` knowledge bases (issue 15): a base of documents, each split into chunks with an embedding,
and the files uploaded into it. The schema: migration 0023; the HNSW indexes: each large base's own
(services/knowledge.py, migration 0028; 0025's one per dimension are gone)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import TimestampedModel

# A large base's own HNSW index (`ix_knowledge_chunks_hnsw_<base id hex>`, services/knowledge.py) is
# built at run time when the base grows past the exact-search threshold: its predicate names the
# base, so no model can declare it. Migrations' comparisons skip these (as 0023's per-base and
# 0025's per-dimension indexes, of the same prefix).
HNSW_INDEX_PREFIX = "ix_knowledge_chunks_hnsw_"


def in_migrations(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic's `include_object`: everything but the bases' HNSW indexes made at run time."""
    return not (type_ == "index" and reflected and (name or "").startswith(HNSW_INDEX_PREFIX))


class KnowledgeBase(TimestampedModel):
    __tablename__ = "knowledge_bases"
    __table_args__ = (
        # A name is free again once its base is deleted (soft: the row stays).
        Index(
            "uq_knowledge_bases_owner_name",
            "owner_id",
            "name",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    # The model that embeds its chunks and queries; its name as the caller gave it is kept too,
    # for the answers (and for a base whose model was deleted: its queries then fail with a 400).
    embedding_model_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("llm_models.id", ondelete="SET NULL")
    )
    embedding_model: Mapped[str] = mapped_column(String(400))
    # The length of the model's vectors, learnt when the base was made: its HNSW index's cast.
    dimensions: Mapped[int] = mapped_column(Integer)
    chunk_size: Mapped[int] = mapped_column(Integer)
    chunk_overlap: Mapped[int] = mapped_column(Integer)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class KnowledgeFile(TimestampedModel):
    __tablename__ = "knowledge_files"
    __table_args__ = (
        Index("ix_knowledge_files_knowledge_base_id", "knowledge_base_id"),
        CheckConstraint("status IN ('pending_upload', 'uploaded', 'processed', 'failed')", name="status"),
    )

    knowledge_base_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("knowledge_bases.id", ondelete="CASCADE"))
    original_filename: Mapped[str] = mapped_column(String(1000))
    content_type: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(BigInteger)
    # pending_upload (an upload URL was handed out) -> uploaded (bytes in `data`) -> processed (its
    # document is made; `data` kept, for its download URL) or failed (`error` says why, `data`
    # emptied).
    status: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, default=dict, server_default=text("'{}'::jsonb")
    )
    # Up to KNOWLEDGE_MAX_FILE_BYTES: never loaded with the row (a list of files would read them
    # all), only where the bytes are used.
    data: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    # The key of the file's download URLs' signatures (services/knowledge.py `download_url`): made
    # at the first one, never returned; deleting the file ends every URL.
    download_key: Mapped[str | None] = mapped_column(String(64))
    # The upload URL's token, hashed (the URL is the only credential its holder has), and its end.
    upload_token_hash: Mapped[str | None] = mapped_column(String(64))
    upload_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class KnowledgeDocument(TimestampedModel):
    __tablename__ = "knowledge_documents"
    __table_args__ = (
        UniqueConstraint("knowledge_base_id", "key"),
        Index("ix_knowledge_documents_file_id", "file_id"),
    )

    knowledge_base_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("knowledge_bases.id", ondelete="CASCADE"))
    # Opper's clients read a document's id as an integer (a file's `document_id`).
    number: Mapped[int] = mapped_column(BigInteger, Identity(always=False))
    key: Mapped[str] = mapped_column(String(1000))
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, default=dict, server_default=text("'{}'::jsonb")
    )
    # The file it was made from; deleting the file deletes it.
    file_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("knowledge_files.id", ondelete="CASCADE"))


class KnowledgeChunk(TimestampedModel):
    __tablename__ = "knowledge_chunks"
    __table_args__ = (
        Index("ix_knowledge_chunks_document_id", "document_id"),
        Index("ix_knowledge_chunks_knowledge_base_id", "knowledge_base_id"),
    )

    # The base again (it is the document's): a query filters on it without a join.
    knowledge_base_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("knowledge_bases.id", ondelete="CASCADE"))
    document_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("knowledge_documents.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    content: Mapped[str] = mapped_column(Text)
    # The document's metadata, copied (a document is replaced whole, never patched): the query's
    # filters read it without a join.
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, default=dict, server_default=text("'{}'::jsonb")
    )
    embedding: Mapped[list[float]] = mapped_column(Vector())
