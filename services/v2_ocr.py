"""`POST /v2/ocr` and `GET /v2/ocr/models` (docs/v2.md, "Rerank and OCR").

No OCR engine runs here: a vision-capable chat model of the caller's is asked to transcribe the
image as Markdown (one litellm completion, reached as every model call is: services/model_calls.py).
An image is one page (index 0). A PDF is not read: fetching a document for a model to read would
make this server download arbitrary URLs, so a `document_url` or `base64` document must be an image
(`data:image/...` or a file name with an image extension); anything else is a 400 saying so.

Each call is a span (`type` `llm`), a trace of its own in the caller's default project
(services/traces.write_call): the prompt and the image's URL in (a `data:` URL as its media type and
size: a trace store is not an image store), the Markdown out, with the model, tokens and cost; a
provider's failure is a span with its error. The answer's `id` is the span's id (the SDK's
response has no `span_id`), so `GET /v2/spans/{id}` finds it."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime

import litellm
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidInput
from core.identity import Identity
from core.net import NetPolicy, url_refusal
from core.schemas import v2_rerank as schema
from core.schemas.traces import SpanWrite
from core.schemas.v2_traces import ListMeta, V2Page
from services import model_calls, model_names, traces, v2_models

SPAN_NAME = "ocr"

PROMPT = (
    "Transcribe all text in this image as Markdown: keep headings, lists and tables as Markdown. "
    "Answer with the Markdown only."
)
OCR_TIMEOUT_S = 120.0
# How long the address check of an image URL waits for DNS (services/conversation.py waits as long).
IMAGE_DNS_TIMEOUT_S = 5.0
IMAGE_TYPES = {"png": "png", "jpg": "jpeg", "jpeg": "jpeg", "gif": "gif", "webp": "webp"}


def _data_size(url: str) -> int | None:
    """The decoded size of a base64 `data:` URL, or None for another URL."""
    header, _, payload = url.partition(",")
    if not header.startswith("data:") or not header.endswith(";base64"):
        return None
    try:
        return len(base64.b64decode(payload, validate=True))
    except (binascii.Error, ValueError):
        raise InvalidInput("document: the data: URL is not valid base64", field="document") from None


def _image_url(document: schema.OcrDocument) -> str:
    """The URL of the image to read, or a 400 saying what this server reads."""
    if document.type == "base64":
        extension = (document.document_name or "").rsplit(".", 1)[-1].lower()
        if not document.content or extension not in IMAGE_TYPES:
            raise InvalidInput(
                "document: a base64 document must be an image (content, and a document_name ending "
                f"in {', '.join('.' + e for e in IMAGE_TYPES)}); PDFs are not read here",
                field="document",
            )
        return f"data:image/{IMAGE_TYPES[extension]};base64,{document.content}"
    if document.type == "image_url" and document.image_url:
        return document.image_url
    if document.type == "document_url" and (document.document_url or "").startswith("data:image/"):
        return document.document_url or ""
    if document.type == "document_url":
        raise InvalidInput(
            "document: document_url is not read here (this server fetches no documents, so no PDF): "
            'send the page as an image, {"type": "image_url", "image_url": ...}',
            field="document",
        )
    raise InvalidInput(
        'document: give {"type": "image_url", "image_url": ...} (an http(s) or data:image URL)',
        field="document",
    )


async def _checked(url: str, policy: NetPolicy) -> None:
    """A provider may have this server fetch the image (litellm downloads URLs for some providers),
    so its address must be public, as a turn's images are (services/conversation.py)."""
    if url.startswith("data:"):
        if not url.startswith("data:image/"):
            raise InvalidInput("document: a data: URL must hold an image (data:image/...)", field="document")
        return
    reason = await url_refusal(url, policy, dns_wait_s=IMAGE_DNS_TIMEOUT_S)
    if reason is not None:
        raise InvalidInput(
            f"document: the image URL was refused: {reason} (an image must be on a public internet "
            "address or a data: URL)",
            field="document",
        )


async def ocr(
    db: AsyncSession, access: model_calls.ModelAccess, who: Identity, data: schema.Ocr
) -> schema.OcrResult:
    url = _image_url(data.document)
    if data.pages is not None and data.pages != [0]:
        raise InvalidInput("pages: an image has one page, index 0", field="pages")
    size = _data_size(url)
    model = await model_names.resolve(db, who.user_id, data.model, kind="chat")
    await _checked(url, NetPolicy(allow_loopback=access.settings.outbound_allow_loopback))
    messages = [
        {
            "role": "user",
            "content": [{"type": "text", "text": PROMPT}, {"type": "image_url", "image_url": {"url": url}}],
        }
    ]
    route = model_names.route_name(model.provider.provider_type, model.model_id)
    shown = url if size is None else f"{url.partition(',')[0]},<{size} bytes>"
    span = SpanWrite(
        span_id=str(uuid.uuid4()),
        name=SPAN_NAME,
        kind="llm",
        input={"prompt": PROMPT, "image_url": shown, "document_name": data.document.document_name},
        metadata={"route": "/v2/ocr", "model_pk": str(model.id)},
        start_time=datetime.now(UTC),
        model=route,
        provider=model.provider.provider_type,
    )
    try:
        async with access.reaching(model.provider, model) as (params, api_key):
            try:
                response = await litellm.acompletion(
                    **params, messages=messages, timeout=OCR_TIMEOUT_S, num_retries=0
                )
            except Exception as exc:
                if model_calls.is_provider_error(exc):
                    raise model_calls.failure(exc, api_key) from None
                raise
    except model_calls.ModelCallFailed as failed:
        await traces.finish_call(db, who.user_id, span, status="error", error=failed.message)
        raise
    markdown = str(response.choices[0].message.content or "")
    usage = getattr(response, "usage", None)
    given = int(getattr(usage, "prompt_tokens", 0) or 0)
    made = int(getattr(usage, "completion_tokens", 0) or 0)
    spent = model_calls.cost_of(params["model"], given, made)
    await traces.finish_call(
        db,
        who.user_id,
        span,
        status="ok",
        output=markdown,
        input_tokens=given,
        output_tokens=made,
        cost=spent,
    )
    return schema.OcrResult(
        id=span.span_id,
        pages=[schema.OcrPage(index=0, markdown=markdown)],
        model=data.model,
        usage_info=schema.OcrUsage(pages_processed=1, doc_size_bytes=size),
        cost=schema.Cost(generation=float(spent), platform=0.0, total=float(spent)),
    )


async def list_models(db: AsyncSession, who: Identity, offset: int, limit: int) -> schema.OcrModels:
    """The chat models the caller may use: whether one sees images is the provider's to say (a model
    that does not answers the OCR call with an error, a 502)."""
    page = await v2_models.list_models(db, who, offset, limit, "chat")
    return V2Page(
        data=[
            schema.OcrModel(hosting_provider=m.hosting_provider, name=m.name, location=m.location)
            for m in page.data
        ],
        meta=ListMeta(total_count=page.meta.total_count),
    )
