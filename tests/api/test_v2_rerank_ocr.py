"""Opper's `/v2/rerank` and `/v2/ocr`, driven through Opper's own SDK (opperai 1.7, its async
methods) against a real server with the simulator as the model: lexical embeddings rank the
obvious document first, `top_k` and `return_documents` shape the answer; an image in a `data:` URL
is transcribed by the simulator (echo mode answers the transcription prompt), a private image
address is refused before any model call, unknown models and missing keys are refused. Each call is
a span the answer's `id` names (a failed one too), which another account cannot read."""

from __future__ import annotations

import base64

import httpx
import pytest
from opperai import Opper, errors, models
from sqlalchemy import select

from core.db import Database
from core.db.traces import Span, Trace
from services.v2_ocr import PROMPT
from tests.api import v2_stack
from tests.api.test_auth_full import register
from tests.api.v2_stack import Stack

# A 1x1 PNG: the simulator does not look at it; a real vision model would.
PIXEL = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
        "0000000d49444154789c6360000002000154a24f5f0000000049454e44ae426082"
    )
).decode()


stack = v2_stack.stack  # the shared fixture (tests/api/v2_stack.py), for this module's tests


async def test_rerank_and_ocr_through_the_sdk(stack: Stack) -> None:
    opper = Opper(http_bearer=stack.admin_key, server_url=f"{stack.url}/v2")
    documents: list[models.RerankDocumentTypedDict] = [
        {"text": "Rust is a systems programming language with a borrow checker.", "metadata": {"n": 0}},
        {"text": "Cats are small furry pets that purr and chase mice.", "metadata": {"n": 1}},
        {"text": "Paris is the capital of France."},
    ]
    ranked = await opper.rerank.documents_async(
        query="which pets purr and chase mice", documents=documents, model="sim-embed"
    )
    assert ranked.results[0].index == 1
    assert len(ranked.results) == 3 and ranked.model == "sim-embed"
    scores = [r.relevance_score for r in ranked.results]
    assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1
    assert isinstance(ranked.results[0].document, models.RerankDocument)
    assert ranked.results[0].document.metadata == {"n": 1}
    assert ranked.usage["documents"] == 3

    top = await opper.rerank.documents_async(
        query="systems programming language",
        documents=documents,
        model="sim-embed",
        top_k=1,
        return_documents=False,
    )
    assert [(r.index, r.document) for r in top.results] == [(0, None)]

    listed = await opper.rerank.list_models_async()
    assert [m.name for m in listed.data] == ["openai/sim-embed"] and listed.meta.total_count == 1
    ocr_models = await opper.ocr.list_ocr_models_ocr_models_get_async()
    assert "openai/sim-chat" in [m.name for m in ocr_models.data]

    read = await opper.ocr.process_ocr_ocr_post_async(
        model="sim-chat", document={"type": "image_url", "image_url": f"data:image/png;base64,{PIXEL}"}
    )
    assert [(p.index, p.markdown) for p in read.pages] == [(0, f"Echo: {PROMPT}")]
    assert read.usage_info.pages_processed == 1
    assert read.usage_info.doc_size_bytes == len(base64.b64decode(PIXEL))

    refusals = [
        opper.ocr.process_ocr_ocr_post_async(
            model="sim-chat", document={"type": "image_url", "image_url": "http://10.0.0.1/scan.png"}
        ),
        opper.ocr.process_ocr_ocr_post_async(
            model="sim-chat", document={"type": "document_url", "document_url": "https://example.com/a.pdf"}
        ),
        opper.ocr.process_ocr_ocr_post_async(
            model="no-such-model",
            document={"type": "image_url", "image_url": f"data:image/png;base64,{PIXEL}"},
        ),
        opper.rerank.documents_async(query="q", documents=documents, model="no-such-model"),
    ]
    said = []
    for call in refusals:
        with pytest.raises(errors.OpperError) as refused:
            await call
        assert refused.value.status_code == 400, refused.value.body
        said.append(refused.value.body)
    assert "private address" in said[0] and "document_url" in said[1]
    assert "GET /v2/models" in said[2] and "GET /v2/models" in said[3]

    async with httpx.AsyncClient(base_url=stack.url) as anon:
        for path in ("/v2/rerank", "/v2/ocr"):
            response = await anon.post(path, json={"model": "sim-embed", "query": "q", "documents": []})
            assert response.status_code == 401, response.text
        assert (await anon.get("/v2/rerank/models")).status_code == 401
        assert (await anon.get("/v2/ocr/models")).status_code == 401


async def test_each_rerank_and_ocr_call_is_a_span(stack: Stack, db: Database) -> None:
    opper = Opper(http_bearer=stack.admin_key, server_url=f"{stack.url}/v2")
    documents: list[models.RerankDocumentTypedDict] = [{"text": "dogs bark"}, {"text": "cats purr"}]
    ranked = await opper.rerank.documents_async(
        query="cats purr",
        documents=documents,
        model="sim-embed",
        top_k=1,
    )
    read = await opper.ocr.process_ocr_ocr_post_async(
        model="sim-chat", document={"type": "image_url", "image_url": f"data:image/png;base64,{PIXEL}"}
    )
    auth = {"Authorization": f"Bearer {stack.admin_key}"}
    async with httpx.AsyncClient(base_url=stack.url, headers=auth) as http:
        rerank_span = (await http.get(f"/v2/spans/{ranked.id}")).json()
        ocr_span = (await http.get(f"/v2/spans/{read.id}")).json()
        bob = await register(http)
        for span_id in (ranked.id, read.id):
            theirs = await http.get(
                f"/v2/spans/{span_id}", headers={"Authorization": f"Bearer {bob['access_token']}"}
            )
            assert theirs.status_code == 404, theirs.text
    assert rerank_span["name"] == "rerank" and rerank_span["status"] == "ok"
    assert rerank_span["input"] == {"query": "cats purr", "documents": ["dogs bark", "cats purr"], "top_k": 1}
    assert rerank_span["output"] == [{"index": 1, "relevance_score": ranked.results[0].relevance_score}]
    assert (
        rerank_span["model"] == "openai/sim-embed"
        and rerank_span["input_tokens"] == ranked.usage["input_tokens"]
    )
    assert rerank_span["input_tokens"] > 0 and rerank_span["cost"] is not None
    assert ocr_span["name"] == "ocr" and ocr_span["status"] == "ok" and ocr_span["type"] == "llm"
    assert ocr_span["output"] == read.pages[0].markdown and ocr_span["model"] == "openai/sim-chat"
    # The image is not copied into the trace store: its media type and size are.
    assert ocr_span["input"]["image_url"] == f"data:image/png;base64,<{read.usage_info.doc_size_bytes} bytes>"
    assert ocr_span["input_tokens"] > 0 and ocr_span["output_tokens"] > 0
    assert rerank_span["trace_id"] != ocr_span["trace_id"]  # each a trace of its own

    # A provider's failure is a 502, and still a span (with the error) in a trace marked so.
    with pytest.raises(errors.OpperError) as failed:
        await opper.ocr.process_ocr_ocr_post_async(
            model="sim-down", document={"type": "image_url", "image_url": f"data:image/png;base64,{PIXEL}"}
        )
    assert failed.value.status_code == 502, failed.value.body
    async with db.session() as session:
        rows = (
            await session.execute(
                select(Span.status, Span.error, Span.model, Trace.status)
                .join(Trace, Trace.id == Span.trace_pk)
                .where(Span.name == "ocr", Span.model == "openai/sim-down")
            )
        ).all()
    assert len(rows) == 1 and rows[0][0] == "error" and rows[0][1] and rows[0][3] == "error"
