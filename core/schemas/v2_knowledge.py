"""Opper's `/v2` knowledge bases and embeddings (seed 000, "Knowledge Bases", "Embeddings"), in the
shapes of Opper's SDK (opperai 1.7): where the seed and the SDK differ, the SDK's names are served
and the seed's kept where they can be (docs/v2.md says which)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from core.schemas.v2_calls import ModelChoice

# Request bodies ignore fields they do not know, as Opper's server does: a later 1.7.x SDK that
# sends one more field must not turn its calls into 422s (docs/v2.md, "Real clients beat our
# reading of a spec"). /v1's bodies still refuse them. So do three of these (a 422): AddDocument,
# Query and DeleteDocuments, where a misspelt optional field would silently change which documents
# are replaced, read or deleted. A misspelt `key` adds a duplicate instead of replacing; a
# misspelt `filters` answers unfiltered chunks (with tenant filters in the metadata: other
# tenants') or deletes the whole base (no filters: every document). opperai 1.7.2 sends only the
# fields these name (its models leave out the ones not set).

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Key = Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]
ModelName = Annotated[str, msgspec.Meta(min_length=1, max_length=400)]
# At least 100 characters, an overlap of at most half a chunk (services/chunking.py check_sizes
# says why; the overlap's bound against the chunk size is checked there).
ChunkSize = Annotated[int, msgspec.Meta(ge=100, le=20_000)]
ChunkOverlap = Annotated[int, msgspec.Meta(ge=0, le=10_000)]
TopK = Annotated[int, msgspec.Meta(ge=1, le=100)]
Scalar = str | int | float


class TextProcessing(msgspec.Struct, kw_only=True):
    """How a document's text is split, in characters (defaults: the base's)."""

    chunk_size: ChunkSize | None = msgspec.field(default=None, name="text_processing.chunk_size")
    chunk_overlap: ChunkOverlap | None = msgspec.field(default=None, name="text_processing.chunk_overlap")


class CreateKnowledgeBase(msgspec.Struct, kw_only=True):
    name: Name
    description: Annotated[str, msgspec.Meta(max_length=10_000)] | None = None
    # An embedding model's name (services/model_names.py); none: the default embedding model.
    embedding_model: ModelName | None = None
    chunk_size: ChunkSize = 2000
    chunk_overlap: ChunkOverlap = 200


class KnowledgeBase(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    description: str | None
    created_at: datetime
    embedding_model: str
    dimensions: int
    chunk_size: int
    chunk_overlap: int
    count: int  # documents in the base


class AddDocument(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    content: Annotated[str, msgspec.Meta(max_length=10_000_000)]
    # Unique in its base: adding the same key again replaces the document. None: a new key.
    key: Key | None = None
    metadata: dict[str, Any] | None = None
    configuration: TextProcessing | None = None


class DocumentAdded(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    key: str
    document_id: int
    chunks: int
    replaced: bool


class Filter(msgspec.Struct, kw_only=True):
    """A condition on a document's metadata `field`; several are combined with AND."""

    field: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    operation: Literal["=", "!=", ">", "<", "in"]
    value: Scalar | list[Scalar]


class Query(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    query: Annotated[str, msgspec.Meta(max_length=100_000)]
    top_k: TopK = 5
    filters: list[Filter] | None = None
    # Opper's SDK sends these: candidates taken before filtering (a floor on how deep the index
    # search goes here), a rerank flag (ignored: results are ordered by cosine similarity) and a
    # parent span (ignored).
    prefilter_limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] | None = None
    rerank: bool | None = None
    parent_span_id: str | None = None


class QueryResult(msgspec.Struct, kw_only=True):
    id: uuid.UUID  # the chunk's
    key: str  # its document's
    content: str
    metadata: dict[str, Any]
    score: float  # cosine similarity, 1 is the same direction


class DeleteDocuments(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    filters: list[Filter] | None = None


class Deleted(msgspec.Struct, kw_only=True):
    deleted_count: int


class Segment(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    content: str


class Document(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    key: str
    document_id: int
    metadata: dict[str, Any]
    segments: list[Segment]


class UploadUrl(msgspec.Struct, kw_only=True):
    """Where to send the file's bytes: `url` (this server's, signed by its token, valid for
    `expires_in` seconds) with `PUT` (the raw bytes) or `POST` (multipart, the `file` part, plus
    `fields`). `id` (the seed's `upload_id`) is the file's id for `register_file`."""

    url: str
    fields: dict[str, Any]
    id: uuid.UUID
    upload_id: uuid.UUID
    expires_in: int


class RegisterFile(msgspec.Struct, kw_only=True):
    filename: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]
    file_id: uuid.UUID
    content_type: Annotated[str, msgspec.Meta(max_length=200)] = "application/octet-stream"
    configuration: TextProcessing | None = None
    metadata: dict[str, Any] | None = None


class FileRegistered(msgspec.Struct, kw_only=True):
    id: uuid.UUID  # the file's
    key: str  # its document's key
    original_filename: str
    document_id: int
    metadata: dict[str, Any]


class KnowledgeFile(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    original_filename: str
    content_type: str
    size: int
    status: str  # pending_upload, uploaded, processed, failed
    error: str | None
    document_id: int  # 0 until its document is made
    metadata: dict[str, Any]
    created_at: datetime


class FileDownloadUrl(msgspec.Struct, kw_only=True):
    """A URL of this server answering the file's bytes, without other credentials, for `expires_in`
    seconds (Opper's SDK: `FileDownloadURLResponse`)."""

    url: str
    expires_in: int


class UploadAccepted(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    size: int
    status: str


# ------------------------------------------------------------------------------------ embeddings


class CreateEmbedding(msgspec.Struct, kw_only=True):
    input: (
        Annotated[str, msgspec.Meta(max_length=1_000_000)]
        | Annotated[
            list[Annotated[str, msgspec.Meta(max_length=1_000_000)]],
            msgspec.Meta(min_length=1, max_length=2048),
        ]
    )
    # The SDK's `TModel`: an embedding model's name, `{name, options}`, or a list of them tried in
    # order (the next when one fails, as `/v2/call`'s); none: the default embedding model.
    # `options` are accepted and not used: an embedding model's settings are its own.
    model: ModelName | ModelChoice | list[ModelName | ModelChoice] | None = None


class EmbeddingItem(msgspec.Struct, kw_only=True):
    object: str
    index: int
    embedding: list[float]


class EmbeddingUsage(msgspec.Struct, kw_only=True):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(msgspec.Struct, kw_only=True):
    """OpenAI's list shape, which Opper's `{model, data, usage}` is."""

    object: str
    model: str
    data: list[EmbeddingItem]
    usage: EmbeddingUsage
