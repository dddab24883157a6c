"""Opper's `/v2` knowledge bases and embeddings, driven through Opper's own SDK (opperai 1.7) against a
real server, with the simulator's lexical embeddings (similar words, similar vectors) as the model:
adds, a replace by key, deletes, a PDF upload through the three-step upload URL and the direct
upload, metadata filters, a large base's own HNSW index (built, used, rebuilt, dropped), isolation
between accounts, and `POST /v2/embeddings`."""

from __future__ import annotations

import asyncio
import io
import uuid
from typing import Any

import httpx
import pytest
from opperai import errors, models
from sqlalchemy import text, update
from sqlalchemy.dialects import postgresql

from core.db import Database
from core.db.knowledge import KnowledgeBase
from core.db.models import LlmModel
from everloop.stack import Endpoints
from tests.api import v2_stack
from tests.api.test_auth_full import ADMIN_EMAIL, full_settings, register
from tests.api.v2_stack import MAX_BASES, MAX_FILE_BYTES, Stack, sdk

stack = v2_stack.stack  # the shared fixture (tests/api/v2_stack.py), for this module's tests


def small_pdf(text_line: str, pages: int = 1) -> bytes:
    """A PDF of `pages` pages whose text is each `text_line` (Helvetica, pypdf reads it back): every
    page draws the same content stream."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text_line}) Tj ET".encode()
    kids = " ".join(f"{5 + i} 0 R" for i in range(pages)).encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + kids + b"] /Count " + str(pages).encode() + b" >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ] + [
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R "
        b"/Resources << /Font << /F1 4 0 R >> >> >>"
    ] * pages
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def documents_and_queries(stack: Stack) -> None:
    opper = sdk(stack)
    base = opper.knowledge.create(name=f"docs-{uuid.uuid4().hex[:6]}", embedding_model=stack.embedder)
    assert base.embedding_model == stack.embedder
    # Without a model: the default embedding model (the SDK sends its own default name, which no
    # model here has).
    default = opper.knowledge.create(name=f"default-{uuid.uuid4().hex[:6]}")
    assert default.embedding_model == "openai/sim-embed"
    with pytest.raises(errors.OpperError) as taken:  # a live name is unique per owner (409)
        opper.knowledge.create(name=base.name, embedding_model=stack.embedder)
    assert taken.value.status_code == 409

    facts = {
        "cats": ("Cats are small furry pets that purr and chase mice.", {"topic": "animals", "year": 2020}),
        "rust": (
            "Rust is a systems programming language with a borrow checker.",
            {"topic": "code", "year": 2023},
        ),
        "bread": (
            "Bake bread with flour, water, salt and yeast in a hot oven.",
            {"topic": "food", "year": 2021},
        ),
    }
    for key, (content, metadata) in facts.items():
        opper.knowledge.add(knowledge_base_id=base.id, key=key, content=content, metadata=metadata)
    assert opper.knowledge.get(knowledge_base_id=base.id).count == 3
    assert opper.knowledge.get_by_name(knowledge_base_name=base.name).id == base.id

    # A semantic query with the simulator's lexical vectors finds the obvious match first.
    (best, *rest) = opper.knowledge.query(knowledge_base_id=base.id, query="which pets purr?", top_k=3)
    assert best.key == "cats" and best.metadata == {"topic": "animals", "year": 2020}
    assert best.score > 0 and all(r.score <= best.score for r in rest)
    assert best.content == facts["cats"][0]

    # Filters on metadata: AND of `=`, `!=`, `>`, `<`, `in`.
    def keys(**filters: Any) -> set[str]:
        found = opper.knowledge.query(
            knowledge_base_id=base.id, query="pets programming bread", top_k=10, **filters
        )
        return {r.key for r in found}

    assert keys(filters=[{"field": "topic", "operation": "=", "value": "code"}]) == {"rust"}
    assert keys(filters=[{"field": "topic", "operation": "!=", "value": "code"}]) == {"cats", "bread"}
    assert keys(filters=[{"field": "year", "operation": ">", "value": 2020}]) == {"rust", "bread"}
    assert keys(filters=[{"field": "year", "operation": "<", "value": 2021}]) == {"cats"}
    assert keys(filters=[{"field": "topic", "operation": "in", "value": ["food", "animals"]}]) == {
        "cats",
        "bread",
    }
    assert keys(
        filters=[
            {"field": "topic", "operation": "in", "value": ["food", "animals"]},
            {"field": "year", "operation": ">", "value": 2020},
        ]
    ) == {"bread"}

    # The same key again replaces the document: its old text is gone from every query.
    opper.knowledge.add(
        knowledge_base_id=base.id,
        key="cats",
        content="Dogs bark loudly at the mailman.",
        metadata={"topic": "dogs"},
    )
    assert opper.knowledge.get(knowledge_base_id=base.id).count == 3
    found = opper.knowledge.query(knowledge_base_id=base.id, query="dogs bark mailman", top_k=10)
    assert found[0].key == "cats" and found[0].content.startswith("Dogs bark")
    assert all("purr" not in r.content for r in found)
    document = opper.knowledge.get_document_by_key_knowledge_knowledge_base_id_documents_document_key_get(
        knowledge_base_id=base.id, document_key="cats"
    )
    assert [s.content for s in document.segments] == ["Dogs bark loudly at the mailman."]

    # Deletes: by filter (Opper's DELETE .../query), by key, then the base (soft; its name is free).
    assert (
        opper.knowledge.delete_documents(
            knowledge_base_id=base.id,
            filters=[models.Filter(field="topic", operation=models.Op.EQUAL_, value="food")],
        ).deleted_count
        == 1
    )
    with httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {stack.admin_key}"}) as http:
        assert http.delete(f"/v2/knowledge/{base.id}/documents/rust").status_code == 204
        assert http.delete(f"/v2/knowledge/{base.id}/documents/rust").status_code == 404
    assert {
        r.key for r in opper.knowledge.query(knowledge_base_id=base.id, query="bread rust", top_k=10)
    } == {"cats"}

    # A long document is split into overlapping chunks, each found on its own.
    long_text = " ".join(f"Paragraph {i} talks about topic{i} only." for i in range(60))
    opper.knowledge.add(
        knowledge_base_id=base.id,
        key="long",
        content=long_text,
        configuration=models.TextProcessingConfiguration.model_validate(
            {"text_processing.chunk_size": 300, "text_processing.chunk_overlap": 60}
        ),
    )
    (hit,) = opper.knowledge.query(knowledge_base_id=base.id, query="topic42", top_k=1)
    assert hit.key == "long" and "topic42" in hit.content and len(hit.content) <= 300

    opper.knowledge.delete(knowledge_base_id=base.id)
    with pytest.raises(errors.NotFoundError):
        opper.knowledge.get(knowledge_base_id=base.id)
    assert base.id not in [b.id for b in opper.knowledge.list().data]
    again = opper.knowledge.create(name=base.name, embedding_model=stack.embedder)
    assert again.id != base.id and opper.knowledge.get(knowledge_base_id=again.id).count == 0


def files(stack: Stack) -> None:
    opper = sdk(stack)
    base = opper.knowledge.create(name=f"files-{uuid.uuid4().hex[:6]}", embedding_model=stack.embedder)
    pdf = small_pdf("The lighthouse keeper logs every passing ship.")

    # Three steps, as the SDK documents them: an upload URL of this server, the bytes, register.
    slot = opper.knowledge.get_upload_url(knowledge_base_id=base.id, filename="ships.pdf")
    assert slot.url.startswith(f"{stack.url}/v2/knowledge/uploads/{slot.id}?token=")
    with httpx.Client() as anonymous:  # the URL is the credential
        wrong = anonymous.put(slot.url.split("?")[0] + "?token=nope", content=pdf)
        assert wrong.status_code == 404
        sent = anonymous.put(slot.url, content=pdf, headers={"Content-Type": "application/pdf"})
        assert sent.status_code == 200, sent.text
        assert anonymous.put(slot.url, content=pdf).status_code == 404  # once
    registered = opper.knowledge.register_file_upload(
        knowledge_base_id=base.id,
        filename="ships.pdf",
        file_id=slot.id,
        content_type="application/pdf",
        metadata={"source": "upload"},
    )
    assert registered.key == "ships.pdf" and registered.document_id > 0
    (hit,) = opper.knowledge.query(knowledge_base_id=base.id, query="lighthouse ship", top_k=1)
    assert hit.key == "ships.pdf" and "lighthouse keeper" in hit.content
    assert hit.metadata["source"] == "upload" and hit.metadata["file_id"] == slot.id

    # The seed's spelling of step 1 works too.
    with httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {stack.admin_key}"}) as http:
        seed_form = http.get(f"/v2/knowledge/{base.id}/upload-url", params={"filename": "x.md"})
        assert seed_form.status_code == 200 and seed_form.json()["upload_id"] == seed_form.json()["id"]
        # Step 2 as a form POST (a storage service's pre-signed form), step 3 as the seed's
        # `POST .../upload` with a JSON body.
        posted = httpx.post(
            seed_form.json()["url"], files={"file": ("x.md", b"Kayaks float on the fjord.", "text/markdown")}
        )
        assert posted.status_code == 200, posted.text
        seed_upload = http.post(
            f"/v2/knowledge/{base.id}/upload",
            json={"file_id": seed_form.json()["id"], "filename": "x.md", "content_type": "text/markdown"},
        )
        assert seed_upload.status_code == 201 and seed_upload.json()["key"] == "x.md", seed_upload.text
        # A second registration of the same file is a 409.
        again = http.post(
            f"/v2/knowledge/{base.id}/register_file",
            json={"file_id": seed_form.json()["id"], "filename": "x.md"},
        )
        assert again.status_code == 409, again.text
        pending = http.get(f"/v2/knowledge/{base.id}/upload_url", params={"filename": "never.txt"})
        assert pending.status_code == 200

    # One step: a multipart upload (Markdown here).
    direct = opper.knowledge.upload_file(
        knowledge_base_id=base.id,
        file={
            "file_name": "notes.md",
            "content": b"# Recipes\n\nSourdough needs a starter.",
            "content_type": "text/markdown",
        },
        metadata='{"kind": "notes"}',
    )
    assert direct.key == "notes.md"
    (hit,) = opper.knowledge.query(knowledge_base_id=base.id, query="sourdough starter", top_k=1)
    assert hit.key == "notes.md" and hit.metadata["kind"] == "notes"

    # An unreadable "PDF" is a 400, kept as a failed file; an image is a 415.
    with pytest.raises(errors.OpperError) as broken:
        opper.knowledge.upload_file(
            knowledge_base_id=base.id,
            file={
                "file_name": "broken.pdf",
                "content": b"%PDF-1.4 nothing",
                "content_type": "application/pdf",
            },
        )
    assert broken.value.status_code == 400
    with pytest.raises(errors.OpperError) as image:
        opper.knowledge.upload_file(
            knowledge_base_id=base.id,
            file={"file_name": "a.png", "content": b"\x89PNG", "content_type": "image/png"},
        )
    assert image.value.status_code == 415

    # A processed file's bytes are kept: its download URL (this server's, short-lived, the URL
    # its only credential) answers them; a failed file's are not (a 404 saying so).
    link = opper.knowledge.get_file_download_url(knowledge_base_id=base.id, file_id=slot.id)
    assert link.expires_in == 300 and link.url.startswith(
        f"{stack.url}/v2/knowledge/uploads/{slot.id}?token="
    )
    with httpx.Client() as anonymous:
        got = anonymous.get(link.url)
        assert got.status_code == 200 and got.content == pdf, got.text
        assert got.headers["content-type"].startswith("application/pdf")
        assert 'filename="ships.pdf"' in got.headers["content-disposition"]
        token = link.url.split("token=")[1]
        expires, _, signature = token.partition(".")
        for forged in (f"{expires}.{'0' * 64}", f"{int(expires) + 1}.{signature}", "nonsense"):
            assert anonymous.get(link.url.split("?")[0], params={"token": forged}).status_code == 404
    failed_id = next(
        f.id
        for f in opper.knowledge.list_files(knowledge_base_id=base.id).data
        if f.original_filename == "broken.pdf"
    )
    with pytest.raises(errors.OpperError) as not_kept:
        opper.knowledge.get_file_download_url(knowledge_base_id=base.id, file_id=failed_id)
    assert not_kept.value.status_code == 404 and "not kept" in str(not_kept.value.body)

    listed = opper.knowledge.list_files(knowledge_base_id=base.id)
    by_name = {f.original_filename: f for f in listed.data}
    assert by_name["ships.pdf"].status == "processed" and by_name["ships.pdf"].size == len(pdf)
    assert by_name["broken.pdf"].status == "failed"
    assert by_name["x.md"].status == "processed" and by_name["never.txt"].status == "pending_upload"

    # Deleting a file deletes its document.
    opper.knowledge.delete_file(knowledge_base_id=base.id, file_id=slot.id)
    left = opper.knowledge.query(knowledge_base_id=base.id, query="lighthouse ship", top_k=5)
    assert sorted(r.key for r in left) == ["notes.md", "x.md"]  # no word in common: score 0
    assert all(r.score == 0 for r in left)
    assert slot.id not in [f.id for f in opper.knowledge.list_files(knowledge_base_id=base.id).data]


def misspelt_fields_that_select_are_refused(stack: Stack) -> None:
    """/v2 bodies ignore fields they do not know (docs/v2.md, "Unknown fields"), except where one
    dropped would change what is read, replaced or deleted: a misspelt `filters` on a delete (no
    filters: every document) or a query (unfiltered: another tenant's chunks) and a misspelt `key`
    on an add (a duplicate instead of a replacement) are a 422 naming the field, changing nothing."""
    opper = sdk(stack)
    base = opper.knowledge.create(name=f"typos-{uuid.uuid4().hex[:6]}", embedding_model=stack.embedder)
    for key, tenant in (("a", "acme"), ("b", "globex")):
        opper.knowledge.add(
            knowledge_base_id=base.id,
            key=key,
            content=f"the quarterly plan of {tenant}",
            metadata={"tenant": tenant},
        )
    acme = [{"field": "tenant", "operation": "=", "value": "acme"}]
    with httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {stack.admin_key}"}) as http:
        for method, path, body, field in (
            ("DELETE", "query", {"filter": acme}, "filter"),
            ("DELETE", "query", {"Filters": acme}, "Filters"),
            ("POST", "query", {"query": "quarterly plan", "filter": acme}, "filter"),
            ("POST", "add", {"content": "the new plan of acme", "Key": "a"}, "Key"),
        ):
            refused = http.request(method, f"/v2/knowledge/{base.id}/{path}", json=body)
            assert refused.status_code == 422, (body, refused.text)
            assert f"`{field}`" in refused.json()["detail"], refused.text
        assert opper.knowledge.get(knowledge_base_id=base.id).count == 2
        found = http.post(f"/v2/knowledge/{base.id}/query", json={"query": "quarterly plan", "filters": acme})
        assert [r["key"] for r in found.json()] == ["a"], found.text
        deleted = http.request("DELETE", f"/v2/knowledge/{base.id}/query", json={"filters": acme})
        assert deleted.json() == {"deleted_count": 1}, deleted.text
    assert [r.key for r in opper.knowledge.query(knowledge_base_id=base.id, query="plan")] == ["b"]
    opper.knowledge.delete(knowledge_base_id=base.id)


def downloads_of_any_file_name(stack: Stack) -> None:
    """A file's name is the client's (`register_file`, a multipart part): its download answers it
    in `Content-Disposition` as an ASCII `filename` and RFC 6266's `filename*` (UTF-8), whatever it
    holds (non-ASCII text, CR/LF that would otherwise end the header), with `nosniff`. A forged
    token is refused before the file's bytes are read from the database."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    opper = sdk(stack)
    base = opper.knowledge.create(name=f"names-{uuid.uuid4().hex[:6]}", embedding_model=stack.embedder)
    expected = {
        "文件 résumé.txt": (
            'attachment; filename="__ r_sum_.txt"; '
            "filename*=UTF-8''%E6%96%87%E4%BB%B6%20r%C3%A9sum%C3%A9.txt"
        ),
        'a\r\nSet-Cookie: x=1;"b\\%.txt': (
            'attachment; filename="a__Set-Cookie: x=1__b__.txt"; '
            "filename*=UTF-8''a%0D%0ASet-Cookie%3A%20x%3D1%3B%22b%5C%25.txt"
        ),
    }
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    with httpx.Client() as anonymous:
        for name, disposition in expected.items():
            slot = opper.knowledge.get_upload_url(knowledge_base_id=base.id, filename=name)
            content = f"Notes kept under an odd name, {len(name)}.".encode()
            sent = anonymous.put(slot.url, content=content, headers={"Content-Type": "text/plain"})
            assert sent.status_code == 200, sent.text
            opper.knowledge.register_file_upload(
                knowledge_base_id=base.id, filename=name, file_id=slot.id, content_type="text/plain"
            )
            link = opper.knowledge.get_file_download_url(knowledge_base_id=base.id, file_id=slot.id)
            expires, _, _ = link.url.split("token=")[1].partition(".")
            event.listen(Engine, "before_cursor_execute", record)
            try:
                forged = anonymous.get(link.url.split("?")[0], params={"token": f"{expires}.{'0' * 64}"})
                refused_reads = list(statements)
                statements.clear()
                got = anonymous.get(link.url)
            finally:
                event.remove(Engine, "before_cursor_execute", record)
            assert forged.status_code == 404, forged.text
            assert any("knowledge_files.download_key" in s for s in refused_reads), refused_reads
            assert not any("knowledge_files.data" in s for s in refused_reads), refused_reads
            assert any("knowledge_files.data" in s for s in statements), statements
            statements.clear()
            assert got.status_code == 200 and got.content == content, got.text
            assert got.headers["content-disposition"] == disposition
            assert got.headers["x-content-type-options"] == "nosniff"
            assert "set-cookie" not in got.headers
    opper.knowledge.delete(knowledge_base_id=base.id)


def _dot(x: list[float], y: list[float]) -> float:
    return sum(p * q for p, q in zip(x, y, strict=True))


def embeddings(stack: Stack) -> None:
    opper = sdk(stack)
    one = opper.embeddings.create(input="hello world", model=stack.embedder)
    assert len(one.data) == 1 and len(one.data[0]["embedding"]) == 256
    many = opper.embeddings.create(input=["cats purr", "cats purr loudly", "tax law"])  # the default model
    a, b, c = (d["embedding"] for d in many.data)
    assert _dot(a, b) > _dot(a, c) and many.model == "openai/sim-embed"
    with pytest.raises(errors.OpperError) as unknown:
        opper.embeddings.create(input="x", model="sim-chat")  # a chat model is not an embedding model
    assert unknown.value.status_code == 400 and "GET /v2/models" in str(unknown.value.body)
    # The SDK's other `TModel` forms: `{name, options}`, and a list tried in order.
    as_object = opper.embeddings.create(input="cats purr", model={"name": stack.embedder, "options": {}})
    assert as_object.data[0]["embedding"] == a and as_object.model == stack.embedder
    in_order: list[models.TModel1] = [models.Model(name=stack.embedder), "openai/sim-embed"]
    listed = opper.embeddings.create(input="cats purr", model=in_order)
    assert listed.data[0]["embedding"] == a and listed.model == stack.embedder
    with pytest.raises(errors.OpperError) as in_list:  # every name is checked before any call
        second_unknown: list[models.TModel1] = [stack.embedder, "sim-chat"]
        opper.embeddings.create(input="x", model=second_unknown)
    assert in_list.value.status_code == 400 and "model[1]" in str(in_list.value.body)

    # A field this server does not know (a later SDK's) is ignored, not a 422, on /v2's bodies
    # (but for the three that select documents: misspelt_fields_that_select_are_refused).
    with httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {stack.admin_key}"}) as http:
        later = http.post("/v2/embeddings", json={"input": "cats purr", "dimensions_hint": 3})
        assert later.status_code == 200, later.text
        base = http.post("/v2/knowledge", json={"name": f"later-{uuid.uuid4().hex[:6]}", "sharding": "auto"})
        assert base.status_code == 200, base.text


def limits(stack: Stack) -> None:
    """The bounds on what one request may cost: chunk sizes, chunks per document, a PDF's pages,
    characters and time (lowered by the test), live bases per owner."""
    from services import chunking

    timeout = chunking.PDF_TIMEOUT_S
    opper = sdk(stack)
    base = opper.knowledge.create(name=f"limits-{uuid.uuid4().hex[:6]}", embedding_model=stack.embedder)
    with httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {stack.admin_key}"}) as http:

        def add(key: str, content: str, size: int, overlap: int) -> httpx.Response:
            sizes = {"text_processing.chunk_size": size, "text_processing.chunk_overlap": overlap}
            return http.post(
                f"/v2/knowledge/{base.id}/add", json={"key": key, "content": content, "configuration": sizes}
            )

        # An overlap near the chunk's size would move each chunk a character on (a document times
        # the chunk size): at most half a chunk. Chunks of at least 100 characters.
        near = add("near", "word " * 500, 2000, 1999)
        assert near.status_code == 400 and "half of chunk_size" in near.text, near.text
        assert add("tiny", "word " * 50, 1, 0).status_code == 422  # the schema's bound
        made = http.post("/v2/knowledge", json={"name": "wide", "chunk_size": 1000, "chunk_overlap": 600})
        assert made.status_code == 400, made.text
        # More chunks than KNOWLEDGE_MAX_CHUNKS_PER_DOCUMENT (50 here): a 413, nothing stored.
        many = add("many", "word " * 6000, 100, 0)
        assert many.status_code == 413 and "KNOWLEDGE_MAX_CHUNKS_PER_DOCUMENT" in many.text, many.text
        assert http.get(f"/v2/knowledge/{base.id}/documents/many").status_code == 404
        assert add("fits", "word " * 400, 100, 20).status_code == 201

        # A PDF past its page cap (2, lowered by the test) or character cap (60): a 413, the file
        # kept as failed with the reason.
        for name, pdf in (
            ("pages.pdf", small_pdf("Three pages.", pages=3)),
            ("chars.pdf", small_pdf("A line of more than sixty characters, drawn on one single page.")),
        ):
            sent = http.post(
                f"/v2/knowledge/{base.id}/upload", files={"file": (name, pdf, "application/pdf")}
            )
            assert sent.status_code == 413, sent.text
        listed = http.get(f"/v2/knowledge/{base.id}/files").json()["data"]  # the SDK's model has no `error`
        failed = {f["original_filename"]: f for f in listed}
        assert {"pages.pdf", "chars.pdf"} <= failed.keys()
        assert failed["pages.pdf"]["status"] == "failed" and "pages" in failed["pages.pdf"]["error"]
        assert "characters" in failed["chars.pdf"]["error"]
        # Read in a child process killed at PDF_TIMEOUT_S (here far less than it takes to start).
        chunking.PDF_TIMEOUT_S = 0.001
        try:
            slow = http.post(
                f"/v2/knowledge/{base.id}/upload",
                files={"file": ("slow.pdf", small_pdf("Slow."), "application/pdf")},
            )
        finally:
            chunking.PDF_TIMEOUT_S = timeout
        assert slow.status_code == 413 and "took longer" in slow.text, slow.text
        # ... whose address space is capped (RLIMIT_AS, here 1 MB: not even pypdf loads): a 413,
        # the file failed with the reason.
        memory = chunking.PDF_MAX_MEMORY_BYTES
        chunking.PDF_MAX_MEMORY_BYTES = 1024 * 1024
        try:
            hungry = http.post(
                f"/v2/knowledge/{base.id}/upload",
                files={"file": ("hungry.pdf", small_pdf("Hungry."), "application/pdf")},
            )
        finally:
            chunking.PDF_MAX_MEMORY_BYTES = memory
        assert hungry.status_code == 413 and "PDF_MAX_MEMORY_BYTES" in hungry.text, hungry.text
        listed = http.get(f"/v2/knowledge/{base.id}/files").json()["data"]
        (record,) = [f for f in listed if f["original_filename"] == "hungry.pdf"]
        assert record["status"] == "failed" and "1 MB of memory" in record["error"], record

        # The upload URL checks its token before it reads the body: a wrong one is a 404, whatever
        # was sent (here not even a form).
        slot = http.get(f"/v2/knowledge/{base.id}/upload_url", params={"filename": "late.txt"}).json()
        forged = httpx.post(slot["url"].split("?")[0] + "?token=nope", content=b"not a form")
        assert forged.status_code == 404, forged.text
        # ... and only from the URL: a form's `token` field would need the form parsed first.
        bare = httpx.post(slot["url"].split("?")[0], data={"token": slot["url"].split("token=")[1]})
        assert bare.status_code == 422, bare.text  # the query parameter is missing

        # KNOWLEDGE_MAX_FILE_BYTES (100,000 here) bounds a body before it is parsed or kept: a
        # declared Content-Length past it (with a form's 64 KB of overhead for a form) is a 413,
        # and a body without one (chunked) is cut off as it passes the bound.
        oversized = b"x" * (MAX_FILE_BYTES + 70 * 1024)
        boundary = "b0undary"
        form = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n'
                f"Content-Type: text/plain\r\n\r\n"
            ).encode()
            + oversized
            + f"\r\n--{boundary}--\r\n".encode()
        )
        multipart = {"Content-Type": f"multipart/form-data; boundary={boundary}"}

        def chunked(body: bytes) -> Any:
            for start in range(0, len(body), 16 * 1024):
                yield body[start : start + 16 * 1024]

        direct = f"/v2/knowledge/{base.id}/upload"
        for content in (form, chunked(form)):
            big = http.post(direct, content=content, headers=multipart)
            assert big.status_code == 413 and "KNOWLEDGE_MAX_FILE_BYTES" in big.text, big.text
        url = slot["url"]
        for method, content, headers in (
            ("PUT", oversized[: MAX_FILE_BYTES + 1], {}),
            ("PUT", chunked(oversized[: MAX_FILE_BYTES + 1]), {}),
            ("POST", form, multipart),
            ("POST", chunked(form), multipart),
        ):
            big = httpx.request(method, url, content=content, headers=headers)
            assert big.status_code == 413 and "KNOWLEDGE_MAX_FILE_BYTES" in big.text, (method, big.text)
        assert "big.txt" not in {
            f["original_filename"] for f in http.get(f"/v2/knowledge/{base.id}/files").json()["data"]
        }
        # Within the bound the same URL still takes the file (a refused body does not use it up).
        fits = httpx.put(
            url, content=b"Late words, within the bound.", headers={"Content-Type": "text/plain"}
        )
        assert fits.status_code == 200, fits.text

        # Live bases per owner (KNOWLEDGE_MAX_BASES_PER_OWNER, 8 here): one more is a 409; a
        # deleted base frees its place.
        live = opper.knowledge.list().meta.total_count
        made_ids = [
            opper.knowledge.create(name=f"cap-{i}", embedding_model=stack.embedder).id
            for i in range(MAX_BASES - live)
        ]
        over = http.post("/v2/knowledge", json={"name": "one-too-many", "embedding_model": stack.embedder})
        assert over.status_code == 409 and "KNOWLEDGE_MAX_BASES_PER_OWNER" in over.text, over.text
        opper.knowledge.delete(knowledge_base_id=made_ids[0])
        opper.knowledge.create(name="one-too-many", embedding_model=stack.embedder)


async def deleting_a_base_deletes_its_content(stack: Stack, db: Database) -> None:
    """A deleted base keeps only its own (soft-deleted) row: its documents, chunks and files go."""

    def fill() -> str:
        opper = sdk(stack)
        base = opper.knowledge.create(name=f"gone-{uuid.uuid4().hex[:6]}", embedding_model=stack.embedder)
        opper.knowledge.add(knowledge_base_id=base.id, key="k", content="private words to forget")
        opper.knowledge.upload_file(
            knowledge_base_id=base.id,
            file={"file_name": "f.md", "content": b"more private words", "content_type": "text/markdown"},
        )
        opper.knowledge.delete(knowledge_base_id=base.id)
        return base.id

    base_id = await asyncio.to_thread(fill)
    async with db.session() as session:
        left = {
            table: await session.scalar(
                text(f"SELECT count(*) FROM {table} WHERE knowledge_base_id = :b"), {"b": uuid.UUID(base_id)}
            )
            for table in ("knowledge_documents", "knowledge_chunks", "knowledge_files")
        }
        deleted_at = await session.scalar(
            text("SELECT deleted_at FROM knowledge_bases WHERE id = :b"), {"b": uuid.UUID(base_id)}
        )
    assert left == {"knowledge_documents": 0, "knowledge_chunks": 0, "knowledge_files": 0}
    assert deleted_at is not None


def no_open_transaction_while_embedding(monkeypatch: pytest.MonkeyPatch, endpoints: Endpoints) -> list[int]:
    """Every embedding call (create, add, register, query) looks, as it starts, for a session of
    this database idle inside a transaction (one that waits on the provider while holding its
    snapshot and locks): the counts it saw."""
    import asyncpg

    from services import embeddings as embedding_service

    seen: list[int] = []
    real = embedding_service.embed
    dsn = endpoints.database_url.replace("postgresql+asyncpg://", "postgresql://")

    async def watched(access: Any, model: Any, texts: list[str]) -> Any:
        connection = await asyncpg.connect(dsn)
        try:
            seen.append(
                await connection.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
                )
            )
        finally:
            await connection.close()
        return await real(access, model, texts)

    monkeypatch.setattr(embedding_service, "embed", watched)
    return seen


async def test_knowledge_bases_through_opper_sdk(
    stack: Stack, db: Database, endpoints: Endpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One stack for all of these (its start is most of a test's time).
    from services import chunking

    seen = no_open_transaction_while_embedding(monkeypatch, endpoints)
    await asyncio.to_thread(documents_and_queries, stack)
    await asyncio.to_thread(files, stack)
    assert len(seen) > 10 and not any(seen), seen
    await asyncio.to_thread(misspelt_fields_that_select_are_refused, stack)
    await asyncio.to_thread(downloads_of_any_file_name, stack)
    await asyncio.to_thread(embeddings, stack)
    await a_large_base_gets_its_own_index(stack, db)
    await a_base_deleted_during_its_index_build_keeps_none(stack, db)
    await a_disabled_model_refuses_its_bases(stack, db)
    await the_knowledge_search_tool_searches_the_configured_base(stack, db, endpoints)
    await deleting_a_base_deletes_its_content(stack, db)
    monkeypatch.setattr(chunking, "MAX_PDF_PAGES", 2)
    monkeypatch.setattr(chunking, "MAX_TEXT_CHARS", 60)
    await asyncio.to_thread(limits, stack)
    async with db.session() as session:
        version = await session.scalar(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'"))
    assert version is not None


async def _index_of(db: Database, base_id: str) -> tuple[bool | None, str | None]:
    """Whether the base's own index is valid (None: there is none), and its definition."""
    from services import knowledge

    async with db.session() as session:
        found = (
            await session.execute(
                text(
                    "SELECT i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index i "
                    "WHERE i.indexrelid = to_regclass(:name)"
                ),
                {"name": knowledge.base_index_name(uuid.UUID(base_id))},
            )
        ).first()
    return (found[0], found[1]) if found else (None, None)


async def _job_ends(base_id: str) -> bool:
    """The end of the server's latest build or drop of the base's index (a task of the app's loop,
    in this process: its future, awaited from this loop)."""
    from services import knowledge

    job = knowledge.index_job(uuid.UUID(base_id))
    assert job is not None, "no index job was started"
    return await asyncio.wait_for(asyncio.wrap_future(job), 60)


async def a_large_base_gets_its_own_index(stack: Stack, db: Database) -> None:
    """Small bases are searched exactly and have no HNSW index; a base that grows past the
    threshold (lowered here to 3 chunks) gets its own partial index, built in the background once
    it crosses, and its queries then walk it (the plan) and answer right; an invalid index (a
    build that died midway, made here by a CONCURRENTLY build that fails) is never used and is
    replaced; deleting a base drops its index."""
    from services import knowledge

    opper = sdk(stack)
    texts = {
        "cats": "cats purr and nap in the sun",
        "dogs": "dogs bark at the mailman",
        "bread": "sourdough bread needs a starter",
        "ships": "ships sail past the lighthouse",
    }

    def fill(name: str, keys: list[str]) -> str:
        base = opper.knowledge.create(name=name, embedding_model=stack.embedder)
        for key in keys:
            opper.knowledge.add(knowledge_base_id=base.id, key=key, content=texts[key])
        return base.id

    # Made while the threshold is 10,000: 4 chunks, no index (its invalid one comes below).
    broken = await asyncio.to_thread(fill, f"broken-{uuid.uuid4().hex[:6]}", list(texts))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(knowledge, "EXACT_SEARCH_MAX_CHUNKS", 3)
        big = await asyncio.to_thread(fill, f"big-{uuid.uuid4().hex[:6]}", ["cats", "dogs", "bread"])
        small = await asyncio.to_thread(fill, f"small-{uuid.uuid4().hex[:6]}", ["cats"])
        assert knowledge.index_job(uuid.UUID(big)) is None  # 3 chunks: not past the threshold
        assert await _index_of(db, big) == (None, None)
        await asyncio.to_thread(
            lambda: opper.knowledge.add(knowledge_base_id=big, key="ships", content=texts["ships"])
        )
        assert await _job_ends(big) is True
        valid, definition = await _index_of(db, big)
        assert valid is True and definition is not None, definition
        assert "USING hnsw" in definition and f"knowledge_base_id = '{big}'::uuid" in definition, definition
        assert await _index_of(db, small) == (None, None) and knowledge.index_job(uuid.UUID(small)) is None
        (hit, *_) = await asyncio.to_thread(
            lambda: opper.knowledge.query(knowledge_base_id=big, query="lighthouse ships", top_k=2)
        )
        assert hit.key == "ships", hit
        await the_plan_walks_the_index(db, big)

        # An invalid index of the base's name: a unique one, built CONCURRENTLY over 4 rows of one
        # base id, fails and stays behind invalid (as a build that dies midway leaves it).
        import asyncpg

        dsn = stack_dsn(db)
        conn = await asyncpg.connect(dsn)
        try:
            with pytest.raises(asyncpg.UniqueViolationError):
                await conn.execute(
                    f"CREATE UNIQUE INDEX CONCURRENTLY {knowledge.base_index_name(uuid.UUID(broken))} "
                    f"ON knowledge_chunks (knowledge_base_id) WHERE knowledge_base_id = '{broken}'::uuid"
                )
        finally:
            await conn.close()
        assert (await _index_of(db, broken))[0] is False
        # The server remembers it had no index for a minute (its adds looked): that minute passes.
        knowledge._INDEXED.pop(uuid.UUID(broken), None)
        # Its next query is answered exactly (the invalid index is not used), and has it rebuilt.
        (hit, *_) = await asyncio.to_thread(
            lambda: opper.knowledge.query(knowledge_base_id=broken, query="sourdough starter", top_k=2)
        )
        assert hit.key == "bread", hit
        assert await _job_ends(broken) is True
        valid, definition = await _index_of(db, broken)
        assert valid is True and definition is not None and "USING hnsw" in definition, definition
        (hit, *_) = await asyncio.to_thread(
            lambda: opper.knowledge.query(knowledge_base_id=broken, query="sourdough starter", top_k=2)
        )
        assert hit.key == "bread", hit

    for base_id in (big, broken):
        await asyncio.to_thread(opper.knowledge.delete, knowledge_base_id=base_id)
        assert await _job_ends(base_id) is True
        assert await _index_of(db, base_id) == (None, None)
    await asyncio.to_thread(lambda: opper.knowledge.delete(knowledge_base_id=small))
    assert knowledge.index_job(uuid.UUID(small)) is None  # no index: nothing to drop


def stack_dsn(db: Database) -> str:
    return db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


async def the_plan_walks_the_index(db: Database, base_id: str) -> None:
    """The plan of a large base's query walks its own partial HNSW index (the literal base id and
    the cast in the query match the index's)."""
    from services import knowledge

    async with db.session() as session:
        row = await session.get(KnowledgeBase, uuid.UUID(base_id))
        assert row is not None
        vector = [1.0] + [0.0] * (row.dimensions - 1)
        # A few rows cost less to sort than to walk an index: the planner is told not to sort, so
        # the plan shows which index can give the order (the benchmark's plan is the real one).
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
            await session.execute(text(f"SET LOCAL {setting} = off"))
        statement = knowledge.search_statement(row, 5, None).params(q=knowledge.vector_text(vector))
        sql = statement.compile(
            dialect=postgresql.dialect(),  # type: ignore[no-untyped-call]
            compile_kwargs={"literal_binds": True},
        )
        plan = "\n".join(r[0] for r in await session.execute(text(f"EXPLAIN {sql}")))
    assert knowledge.base_index_name(row.id) in plan, plan


async def a_base_deleted_during_its_index_build_keeps_none(stack: Stack, db: Database) -> None:
    """A base deleted while its index builds keeps none: here the delete's transaction (as
    `delete_base` runs it) is still open when the build checks the base is live, so the build's
    CREATE INDEX CONCURRENTLY waits for it, and the delete, seeing no index yet, schedules no drop.
    The build drops what it made once the delete is committed."""
    import asyncpg

    from services import knowledge

    opper = sdk(stack)
    base = await asyncio.to_thread(
        lambda: opper.knowledge.create(name=f"race-{uuid.uuid4().hex[:6]}", embedding_model=stack.embedder)
    )
    await asyncio.to_thread(
        lambda: opper.knowledge.add(knowledge_base_id=base.id, key="k", content="boats in the harbour")
    )
    base_id, dsn = uuid.UUID(base.id), stack_dsn(db)
    deleter, watcher = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        dimensions = await deleter.fetchval("SELECT dimensions FROM knowledge_bases WHERE id = $1", base_id)
        deleting = deleter.transaction()
        await deleting.start()
        await deleter.execute("UPDATE knowledge_bases SET deleted_at = now() WHERE id = $1", base_id)
        await deleter.execute("DELETE FROM knowledge_documents WHERE knowledge_base_id = $1", base_id)
        build = asyncio.create_task(knowledge.build_index(dsn, base_id, dimensions, wait=True))
        deadline = asyncio.get_running_loop().time() + 30
        # No event tells when the build blocks on the delete: pg_stat_activity is watched for it.
        while not await watcher.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX CONCURRENTLY%' "
            "AND $1 = ANY(pg_blocking_pids(pid))",
            deleter.get_server_pid(),
        ):
            assert not build.done(), build
            assert asyncio.get_running_loop().time() < deadline, "the build never waited for the delete"
            await asyncio.sleep(0.05)
        await deleting.commit()
        assert await asyncio.wait_for(build, 60) is False
    finally:
        await deleter.close()
        await watcher.close()
    assert await _index_of(db, base.id) == (None, None)


async def a_disabled_model_refuses_its_bases(stack: Stack, db: Database) -> None:
    """A base keeps its embedding model's id: once an admin disables that model (or its provider),
    the base's queries and adds are a 400 naming the model, not calls to it; enabled again, they
    work."""
    opper = sdk(stack)
    base = await asyncio.to_thread(
        lambda: opper.knowledge.create(name=f"off-{uuid.uuid4().hex[:6]}", embedding_model=stack.embedder)
    )
    await asyncio.to_thread(
        lambda: opper.knowledge.add(knowledge_base_id=base.id, key="k", content="quiet harbour boats")
    )

    async def set_status(status: str) -> None:
        async with db.session() as session:
            await session.execute(
                update(LlmModel).where(LlmModel.model_id == stack.embedder).values(status=status)
            )
            await session.commit()

    await set_status("disabled")
    try:
        async with httpx.AsyncClient(
            base_url=stack.url, headers={"Authorization": f"Bearer {stack.admin_key}"}
        ) as http:
            queried = await http.post(f"/v2/knowledge/{base.id}/query", json={"query": "harbour"})
            added = await http.post(
                f"/v2/knowledge/{base.id}/add", json={"key": "k2", "content": "more boats"}
            )
            uploaded = await http.post(
                f"/v2/knowledge/{base.id}/upload",
                files={"file": ("boats.md", b"boats in the harbour", "text/markdown")},
            )
        for answer in (queried, added, uploaded):
            assert answer.status_code == 400, answer.text
            assert stack.embedder in answer.json()["detail"] and "disabled" in answer.json()["detail"]
    finally:
        await set_status("active")
    hits = await asyncio.to_thread(lambda: opper.knowledge.query(knowledge_base_id=base.id, query="harbour"))
    assert [h.key for h in hits] == ["k"]
    await asyncio.to_thread(lambda: opper.knowledge.delete(knowledge_base_id=base.id))


async def _admin_id(db: Database) -> uuid.UUID:
    async with db.session() as session:
        found = await session.scalar(text("SELECT id FROM users WHERE email = :e"), {"e": ADMIN_EMAIL})
    assert isinstance(found, uuid.UUID)
    return found


async def test_another_users_base_is_404_and_never_queried(stack: Stack, endpoints: Endpoints) -> None:
    def alice_and_bob(bob_token: str) -> None:
        alice = sdk(stack)
        secret = alice.knowledge.create(name="alice-only", embedding_model=stack.embedder)
        alice.knowledge.add(knowledge_base_id=secret.id, key="s", content="the vault code is purple seven")
        bob = sdk(stack, bob_token)
        for call in (
            lambda: bob.knowledge.get(knowledge_base_id=secret.id),
            lambda: bob.knowledge.get_by_name(knowledge_base_name="alice-only"),
            lambda: bob.knowledge.query(knowledge_base_id=secret.id, query="vault code"),
            lambda: bob.knowledge.add(knowledge_base_id=secret.id, key="s", content="taken over"),
            lambda: bob.knowledge.list_files(knowledge_base_id=secret.id),
            lambda: bob.knowledge.get_upload_url(knowledge_base_id=secret.id, filename="x.txt"),
            lambda: bob.knowledge.delete(knowledge_base_id=secret.id),
        ):
            with pytest.raises(errors.OpperError) as refused:
                call()
            assert refused.value.status_code == 404 and "purple" not in str(refused.value.body)
        assert bob.knowledge.list().data == []
        # Bob's own base of the same name, with the same words: his query never returns Alice's.
        mine = bob.knowledge.create(name="alice-only", embedding_model=stack.embedder)
        bob.knowledge.add(knowledge_base_id=mine.id, key="b", content="my vault code is blue")
        found = bob.knowledge.query(
            knowledge_base_id=mine.id, query="the vault code is purple seven", top_k=10
        )
        assert [r.key for r in found] == ["b"]
        assert [r.key for r in alice.knowledge.query(knowledge_base_id=secret.id, query="vault")] == ["s"]

    async with httpx.AsyncClient(base_url=stack.url) as http:
        tokens = await register(http)
    await asyncio.to_thread(alice_and_bob, tokens["access_token"])


async def the_knowledge_search_tool_searches_the_configured_base(
    stack: Stack, db: Database, endpoints: Endpoints
) -> None:
    """The capability's tool, with the context the worker's tool step gives it (activities/tools.py:
    `knowledge.searcher` for the agent's owner): the configured base by name or id, top_k, and
    errors the model can read."""
    from capabilities.base import ToolContext, ToolError
    from capabilities.knowledge_search import CAPABILITY, KnowledgeSearchConfig, SearchKnowledge
    from core.settings import Settings
    from services import knowledge
    from services.model_calls import ModelAccess

    def fill() -> str:
        opper = sdk(stack)
        base = opper.knowledge.create(name="handbook", embedding_model=stack.embedder)
        opper.knowledge.add(
            knowledge_base_id=base.id, key="leave", content="Holidays: 25 days of paid leave a year."
        )
        opper.knowledge.add(
            knowledge_base_id=base.id, key="bikes", content="Bicycles are parked in the basement."
        )
        return base.id

    base_id = await asyncio.to_thread(fill)
    settings: Settings = full_settings(endpoints)
    search = knowledge.searcher(db, ModelAccess(settings, None), await _admin_id(db))
    (tool,) = CAPABILITY.tools
    assert CAPABILITY.public().status == "available"

    def ctx(config: KnowledgeSearchConfig) -> ToolContext:
        return ToolContext(
            session_id=uuid.uuid4(), agent_id=uuid.uuid4(), config=config, knowledge_search=search
        )

    by_name = await tool.handler(
        SearchKnowledge(query="how many days of paid leave"),
        ctx(KnowledgeSearchConfig(knowledge_base="handbook", top_k=1)),
    )
    assert [r["key"] for r in by_name["results"]] == ["leave"] and by_name["results"][0]["score"] > 0
    by_id = await tool.handler(
        SearchKnowledge(query="where are bicycles parked", top_k=2),
        ctx(KnowledgeSearchConfig(knowledge_base=base_id)),
    )
    assert by_id["results"][0]["key"] == "bikes" and len(by_id["results"]) == 2
    with pytest.raises(ToolError, match="no knowledge base is configured"):
        await tool.handler(SearchKnowledge(query="x"), ctx(KnowledgeSearchConfig()))
    with pytest.raises(ToolError, match="knowledge base not found"):
        await tool.handler(
            SearchKnowledge(query="x"), ctx(KnowledgeSearchConfig(knowledge_base="someone else's"))
        )
    assert CAPABILITY.parse_config({"knowledge_base": "handbook", "top_k": 3}) == KnowledgeSearchConfig(
        knowledge_base="handbook", top_k=3
    )


async def knowledge_of(db: Database, agent_id: str, mark: str) -> dict[str, str]:
    """A knowledge base of the agent's owner, with a document, its chunk and a file, stored directly
    (for tests where no embedding model answers: the isolation walk). The walk's path parameters."""
    from core.db.knowledge import KnowledgeBase, KnowledgeChunk, KnowledgeDocument, KnowledgeFile
    from core.db.models import Agent

    async with db.session() as session:
        owner = (await session.get(Agent, uuid.UUID(agent_id))).owner_id  # type: ignore[union-attr]
        base = KnowledgeBase(
            owner_id=owner,
            name=f"{mark} knowledge",
            embedding_model="openai/none",
            dimensions=4,
            chunk_size=2000,
            chunk_overlap=200,
        )
        session.add(base)
        await session.flush()
        file = KnowledgeFile(
            knowledge_base_id=base.id,
            original_filename=f"{mark}.txt",
            content_type="text/plain",
            size=len(mark),
            status="processed",
        )
        session.add(file)
        await session.flush()
        document = KnowledgeDocument(
            knowledge_base_id=base.id, key=f"{mark}-doc", metadata_={"mark": mark}, file_id=file.id
        )
        session.add(document)
        await session.flush()
        session.add(
            KnowledgeChunk(
                knowledge_base_id=base.id,
                document_id=document.id,
                position=0,
                content=mark,
                metadata_={"mark": mark},
                embedding=[1.0, 0.0, 0.0, 0.0],
            )
        )
        await session.commit()
        return {
            "knowledge_base_id": str(base.id),
            "knowledge_base_name": base.name,
            "document_key": document.key,
            "file_id": str(file.id),
        }


async def test_migration_0028_indexes_the_large_bases(db: Database, endpoints: Endpoints) -> None:
    """Down to 0027 the bases of a dimension share 0025's index; up again, 0028 drops it and gives
    each live base past the threshold (2,000 chunks, as the migration knew it) its own valid HNSW
    index, and a small base none."""
    from alembic import command

    from core.migrate import alembic_config, upgrade
    from services import knowledge

    owner, big, small = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with db.session() as session:
        await session.execute(
            text(
                "INSERT INTO users (id, email, role, email_verified, created_at, updated_at) "
                "VALUES (:id, :email, 'user', false, now(), now())"
            ),
            {"id": owner, "email": f"m28-{owner.hex[:8]}@example.com"},
        )
        for base_id, chunks in ((big, 2_001), (small, 3)):
            document = uuid.uuid4()
            await session.execute(
                text(
                    "INSERT INTO knowledge_bases (id, owner_id, name, embedding_model, dimensions, "
                    "chunk_size, chunk_overlap, created_at, updated_at) "
                    "VALUES (:id, :owner, :name, 'sim', 256, 2000, 200, now(), now())"
                ),
                {"id": base_id, "owner": owner, "name": f"m28-{base_id.hex[:6]}"},
            )
            await session.execute(
                text(
                    "INSERT INTO knowledge_documents (id, knowledge_base_id, key, created_at, updated_at) "
                    "VALUES (:d, :b, 'doc', now(), now())"
                ),
                {"d": document, "b": base_id},
            )
            # Vectors of 256 dimensions pointing apart (one hot, by position).
            await session.execute(
                text(
                    "INSERT INTO knowledge_chunks (id, knowledge_base_id, document_id, position, content, "
                    "embedding, created_at, updated_at) SELECT gen_random_uuid(), :b, :d, i, 'c' || i, "
                    "(SELECT array_agg(CASE WHEN j = i % 256 THEN 1.0 ELSE 0.01 END)::real[] "
                    "FROM generate_series(0, 255) j)::vector, now(), now() FROM generate_series(1, :n) i"
                ),
                {"b": base_id, "d": document, "n": chunks},
            )
        await session.commit()

    async def hnsw_indexes() -> dict[str, bool]:
        async with db.session() as session:
            rows = await session.execute(
                text(
                    "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "WHERE c.relname LIKE 'ix\\_knowledge\\_chunks\\_hnsw\\_%' AND (c.relname = :big "
                    "OR c.relname = :small OR c.relname ~ '_d[0-9]+$')"
                ),
                {"big": knowledge.base_index_name(big), "small": knowledge.base_index_name(small)},
            )
            return {name: valid for name, valid in rows.all()}

    try:
        await asyncio.to_thread(command.downgrade, alembic_config(endpoints.database_url), "0027")
        assert await hnsw_indexes() == {"ix_knowledge_chunks_hnsw_d256": True}
        await asyncio.to_thread(upgrade, endpoints.database_url)
        assert await hnsw_indexes() == {knowledge.base_index_name(big): True}
    finally:
        async with db.session() as session:
            await session.execute(text("DELETE FROM knowledge_bases WHERE owner_id = :o"), {"o": owner})
            await session.execute(text(f"DROP INDEX IF EXISTS {knowledge.base_index_name(big)}"))
            await session.execute(text("DELETE FROM users WHERE id = :o"), {"o": owner})
            await session.commit()
