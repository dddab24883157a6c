"""Opper's `POST /v2/ocr` and `GET /v2/ocr/models`, as the `opperai` SDK's `ocr` calls them: a
vision-capable chat model transcribes an image as Markdown (services/v2_ocr.py)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import Body
from sqlalchemy.ext.asyncio import AsyncSession

from api.openapi import AUTHENTICATED, v2_error_responses
from api.pagination import PageParams
from api.state import Services
from core.identity import Identity
from core.schemas import v2_rerank as schema
from core.schemas.v2_traces import V2Page
from services import v2_ocr
from services.model_calls import ModelAccess


class V2OcrController(Controller):
    path = "/v2/ocr"
    tags = ["v2-ocr"]
    security = AUTHENTICATED

    @post(operation_id="v2Ocr", status_code=200, responses=v2_error_responses(400, 401, 502))
    async def ocr(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        data: Annotated[schema.Ocr, Body()],
    ) -> schema.OcrResult:
        """The image's text as Markdown, one page (index 0). `document` is `{"type": "image_url",
        "image_url": ...}` (an http(s) URL on a public address, or a `data:image/...` URL; a
        `document_url` or `base64` document only when it is an image: PDFs are not read). `model`
        names one of your chat models that sees images."""
        return await v2_ocr.ocr(db_session, ModelAccess(services.settings, services.secrets), who, data)

    @get("/models", operation_id="v2ListOcrModels", responses=v2_error_responses(401, 422))
    async def list_models(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        page_params: NamedDependency[PageParams],
    ) -> V2Page[schema.OcrModel]:
        """The models `POST /v2/ocr` takes: your chat models (whether one sees images is its
        provider's to say)."""
        return await v2_ocr.list_models(db_session, who, page_params.offset, page_params.limit)
