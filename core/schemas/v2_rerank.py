"""Wire types of Opper's `POST /v2/rerank` and `POST /v2/ocr` and their model lists, as the `opperai`
SDK (1.7.2: models/rerank*.py, models/ocr*.py) sends and reads them."""

from __future__ import annotations

from typing import Any

import msgspec

from core.schemas.v2_traces import V2Page

# Request bodies ignore fields they do not know, as Opper's server does: a later 1.7.x SDK that
# sends one more field must not turn its calls into 422s (docs/v2.md, "Real clients beat our
# reading of a spec"). /v1's bodies still refuse them.


class RerankDocument(msgspec.Struct, kw_only=True):
    text: str
    metadata: dict[str, Any] | None = None


class Rerank(msgspec.Struct, kw_only=True):
    query: str
    documents: list[RerankDocument]
    # The SDK always sends one; an empty name means the caller's default embedding model.
    model: str = ""
    top_k: int | None = None
    return_documents: bool = True
    # Sent by the SDK; a document is embedded whole here (one chunk each), so it changes nothing.
    max_chunks_per_doc: int | None = None


class RerankResult(msgspec.Struct, kw_only=True):
    index: int
    relevance_score: float
    document: RerankDocument | None = None


class Cost(msgspec.Struct, kw_only=True):
    """USD: `generation` from litellm's price table (0 where it has no price), no platform fee."""

    generation: float
    platform: float
    total: float


class Reranked(msgspec.Struct, kw_only=True):
    id: str
    results: list[RerankResult]
    model: str
    usage: dict[str, Any]
    cost: Cost | None = None


class RerankModel(msgspec.Struct, kw_only=True):
    hosting_provider: str
    name: str
    location: str
    cost_per_request: float | None = None


class OcrDocument(msgspec.Struct, kw_only=True):
    type: str  # "image_url", "document_url" or "base64"
    document_url: str | None = None
    image_url: str | None = None
    document_name: str | None = None
    content: str | None = None


class Ocr(msgspec.Struct, kw_only=True):
    model: str
    document: OcrDocument
    pages: list[int] | None = None
    # Accepted for the SDK's sake; a vision model's transcription extracts no images.
    include_image_base64: bool = False
    image_limit: int | None = None
    image_min_size: int | None = None
    mistral_extra: dict[str, Any] | None = None


class OcrPage(msgspec.Struct, kw_only=True):
    index: int
    markdown: str


class OcrUsage(msgspec.Struct, kw_only=True):
    pages_processed: int
    doc_size_bytes: int | None = None


class OcrResult(msgspec.Struct, kw_only=True):
    id: str
    pages: list[OcrPage]
    model: str
    usage_info: OcrUsage
    cost: Cost | None = None


class OcrModel(msgspec.Struct, kw_only=True):
    hosting_provider: str
    name: str
    location: str
    cost_per_page: float | None = None


RerankModels = V2Page[RerankModel]
OcrModels = V2Page[OcrModel]
