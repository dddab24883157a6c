"""Opper's `/v2` knowledge bases (seed 000, "Knowledge Bases"; paths, bodies and status codes as
Opper's SDK opperai 1.7 sends and reads them, the seed's spellings too: docs/v2.md)."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.datastructures import FormMultiDict, UploadFile
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.files import FILE_HEADERS
from api.openapi import AUTHENTICATED, v2_error_responses
from api.pagination import PageParams
from api.state import Services
from core.errors import InvalidInput, TooLarge
from core.identity import Identity
from core.schemas import v2_knowledge as schema
from core.schemas.v2_traces import V2Page
from services import knowledge
from services.model_calls import ModelAccess

BaseId = FromPath[str]
# A direct upload's form around its file: the part headers, the boundaries, `metadata` and the
# chunk sizes. Its body may be this much larger than KNOWLEDGE_MAX_FILE_BYTES.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


def attachment(filename: str) -> str:
    """`Content-Disposition` for a file name the client chose (a multipart part's, `register_file`'s):
    a header is Latin-1 and ends at CR/LF, so the name goes as an ASCII `filename` for old clients
    (anything but printable ASCII made `_`, as are the quote, the backslash, and `;` and `%`, which
    some clients misread) and as RFC 6266's `filename*` (UTF-8, percent-encoded) for the others."""
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\;%' else "_" for c in filename)
    return f"attachment; filename=\"{fallback or 'download'}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _access(services: Services) -> ModelAccess:
    return ModelAccess(services.settings, services.secrets)


def _server_url(services: Services, request: Request[Any, Any, Any]) -> str:
    return (services.settings.public_url or f"{request.url.scheme}://{request.url.netloc}").rstrip("/")


class V2KnowledgeController(Controller):
    path = "/v2/knowledge"
    tags = ["v2-knowledge"]
    security = AUTHENTICATED

    @post(operation_id="v2CreateKnowledgeBase", status_code=200, responses=v2_error_responses(401, 409, 502))
    async def create_base(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        data: Annotated[schema.CreateKnowledgeBase, Body()],
    ) -> schema.KnowledgeBase:
        """Create a knowledge base (200, as Opper's SDK reads it). `embedding_model` names one of
        your embedding models (`GET /v2/models`); without it, the default embedding model. Its
        vectors' length is learnt now (one short text is embedded). `chunk_size`/`chunk_overlap`
        (characters) are the defaults for its documents."""
        return await knowledge.create_base(db_session, _access(services), who, data)

    @get(operation_id="v2ListKnowledgeBases", responses=v2_error_responses(401))
    async def list_bases(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        page_params: NamedDependency[PageParams],
    ) -> V2Page[schema.KnowledgeBase]:
        """Your knowledge bases, oldest first."""
        return await knowledge.list_bases(db_session, who, page_params.offset, page_params.limit)

    @get(
        "/by-name/{knowledge_base_name:str}",
        operation_id="v2GetKnowledgeBaseByName",
        responses=v2_error_responses(401, 404),
    )
    async def get_by_name(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        knowledge_base_name: FromPath[str],
    ) -> schema.KnowledgeBase:
        """A knowledge base by its name; `count` is its number of documents."""
        return await knowledge.get_base_by_name(db_session, who, knowledge_base_name)

    @get(
        "/{knowledge_base_id:str}", operation_id="v2GetKnowledgeBase", responses=v2_error_responses(401, 404)
    )
    async def get_base(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        knowledge_base_id: BaseId,
    ) -> schema.KnowledgeBase:
        """A knowledge base; `count` is its number of documents."""
        return await knowledge.get_base(db_session, who, knowledge_base_id)

    @delete(
        "/{knowledge_base_id:str}",
        operation_id="v2DeleteKnowledgeBase",
        responses=v2_error_responses(401, 404),
    )
    async def delete_base(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        knowledge_base_id: BaseId,
    ) -> None:
        """Delete a knowledge base (soft: it is gone for every route, its name is free again)."""
        await knowledge.delete_base(db_session, who, knowledge_base_id)

    @post(
        "/{knowledge_base_id:str}/add",
        operation_id="v2AddKnowledge",
        responses=v2_error_responses(401, 404, 409, 502),
    )
    async def add(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        knowledge_base_id: BaseId,
        data: Annotated[schema.AddDocument, Body()],
    ) -> schema.DocumentAdded:
        """Add a document: its `content` is split into chunks (`configuration` may change the
        base's sizes) and embedded. `key` is unique in the base: adding it again replaces the
        document, its chunks and metadata (`replaced: true`); without a key, a new one is made."""
        return await knowledge.add_document(db_session, _access(services), who, knowledge_base_id, data)

    @post(
        "/{knowledge_base_id:str}/query",
        operation_id="v2QueryKnowledge",
        status_code=200,
        responses=v2_error_responses(401, 404, 502),
    )
    async def query(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        knowledge_base_id: BaseId,
        data: Annotated[schema.Query, Body()],
    ) -> list[schema.QueryResult]:
        """The `top_k` chunks most similar to `query` (cosine similarity of their embeddings, the
        best first; `score` 1 is the same direction), among those whose metadata passes every one
        of `filters` (`{field, operation: = != > < in, value}`)."""
        return await knowledge.query(db_session, _access(services), who, knowledge_base_id, data)

    @delete(
        "/{knowledge_base_id:str}/query",
        operation_id="v2DeleteKnowledgeDocuments",
        status_code=200,
        responses=v2_error_responses(401, 404),
    )
    async def delete_documents(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        knowledge_base_id: BaseId,
        data: Annotated[schema.DeleteDocuments | None, Body()] = None,
    ) -> schema.Deleted:
        """Delete the documents whose metadata passes every filter; without filters, every
        document (the base stays)."""
        filters = data.filters if data is not None else None
        return await knowledge.delete_documents(db_session, who, knowledge_base_id, filters)

    @get(
        "/{knowledge_base_id:str}/documents/{document_key:path}",
        operation_id="v2GetKnowledgeDocument",
        responses=v2_error_responses(401, 404),
    )
    async def get_document(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        knowledge_base_id: BaseId,
        document_key: FromPath[str],
    ) -> schema.Document:
        """A document by its key, with its chunks (`segments`) in order."""
        return await knowledge.get_document(db_session, who, knowledge_base_id, document_key.lstrip("/"))

    @delete(
        "/{knowledge_base_id:str}/documents/{document_key:path}",
        operation_id="v2DeleteKnowledgeDocument",
        responses=v2_error_responses(401, 404),
    )
    async def delete_document(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        knowledge_base_id: BaseId,
        document_key: FromPath[str],
    ) -> None:
        """Delete a document by its key, with its chunks."""
        await knowledge.delete_document(db_session, who, knowledge_base_id, document_key.lstrip("/"))

    @get(
        "/{knowledge_base_id:str}/upload_url",
        operation_id="v2KnowledgeUploadUrl",
        responses=v2_error_responses(401, 404),
    )
    async def upload_url(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        request: Request[Any, Any, Any],
        knowledge_base_id: BaseId,
        filename: Annotated[
            str | None, QueryParameter(max_length=1000, description="The file's name (required).")
        ] = None,
    ) -> schema.UploadUrl:
        """Step 1 of 3 of a file upload (`upload_url`, Opper's SDK; `upload-url`, the seed's): a URL
        of this server that takes the file's bytes once, for KNOWLEDGE_UPLOAD_URL_TTL_S seconds,
        without other credentials: `PUT` the raw bytes, or `POST` a multipart form with the file
        in its `file` part. Step 3: `POST .../register_file` with `file_id` = `id`."""
        return await knowledge.upload_url(
            db_session,
            who,
            knowledge_base_id,
            filename or "",
            _server_url(services, request),
            services.settings.knowledge_upload_url_ttl_s,
        )

    @get(
        "/{knowledge_base_id:str}/upload-url",
        operation_id="v2KnowledgeUploadUrlSeed",
        responses=v2_error_responses(401, 404),
    )
    async def upload_url_seed(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        request: Request[Any, Any, Any],
        knowledge_base_id: BaseId,
        filename: Annotated[
            str | None, QueryParameter(max_length=1000, description="The file's name (required).")
        ] = None,
    ) -> schema.UploadUrl:
        """The seed's spelling of `GET .../upload_url` (the same answer; `upload_id` is `id`)."""
        return await knowledge.upload_url(
            db_session,
            who,
            knowledge_base_id,
            filename or "",
            _server_url(services, request),
            services.settings.knowledge_upload_url_ttl_s,
        )

    @post(
        "/{knowledge_base_id:str}/register_file",
        operation_id="v2RegisterKnowledgeFile",
        responses=v2_error_responses(401, 404, 409, 413, 415, 502),
    )
    async def register_file(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        knowledge_base_id: BaseId,
        data: Annotated[schema.RegisterFile, Body()],
    ) -> schema.FileRegistered:
        """Step 3 of a file upload: the uploaded file (text, Markdown or PDF) becomes a document
        keyed by its file name (a later file of the same name replaces it), split and embedded
        now. A file that cannot be read is kept as `failed` with its `error`."""
        return await knowledge.register_file(db_session, _access(services), who, knowledge_base_id, data)

    @post(
        "/{knowledge_base_id:str}/upload",
        operation_id="v2UploadKnowledgeFile",
        responses=v2_error_responses(401, 404, 409, 413, 415, 502),
    )
    async def upload(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        request: Request[Any, Any, Any],
        knowledge_base_id: BaseId,
    ) -> schema.FileRegistered:
        """Upload a file in one step: a multipart form with the file in its `file` part, and
        optionally `text_processing.chunk_size`, `text_processing.chunk_overlap` and `metadata`
        (a JSON object, as text). A JSON body is the seed's form of this route: it registers a
        file sent to an upload URL (as `register_file`). At most KNOWLEDGE_MAX_FILE_BYTES."""
        access = _access(services)
        await knowledge.get_base(db_session, who, knowledge_base_id)  # another's base: 404 before all
        max_bytes = services.settings.knowledge_max_file_bytes
        kind = request.headers.get("content-type", "")
        if kind.startswith("application/json"):
            try:
                registered = msgspec.json.decode(
                    await _bounded_body(request, MULTIPART_OVERHEAD_BYTES, "the body"),
                    type=schema.RegisterFile,
                )
            except msgspec.ValidationError as exc:
                raise InvalidInput(str(exc), field="body") from None
            return await knowledge.register_file(db_session, access, who, knowledge_base_id, registered)
        if not kind.startswith("multipart/form-data"):
            raise InvalidInput("send the file as multipart/form-data, in its `file` part", field="file")
        form = await _bounded_form(request, max_bytes)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("the form has no `file` part holding a file", field="file")
        data = await upload.read()
        sizes = schema.TextProcessing(
            chunk_size=_form_int(form.get("text_processing.chunk_size"), "text_processing.chunk_size"),
            chunk_overlap=_form_int(
                form.get("text_processing.chunk_overlap"), "text_processing.chunk_overlap"
            ),
        )
        return await knowledge.upload_file(
            db_session,
            access,
            who,
            knowledge_base_id,
            upload.filename,
            upload.content_type,
            data,
            sizes,
            _form_metadata(form.get("metadata")),
            max_bytes,
        )

    @get(
        "/{knowledge_base_id:str}/files",
        operation_id="v2ListKnowledgeFiles",
        responses=v2_error_responses(401, 404),
    )
    async def list_files(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        page_params: NamedDependency[PageParams],
        knowledge_base_id: BaseId,
    ) -> V2Page[schema.KnowledgeFile]:
        """The base's files, oldest first, with their status (`pending_upload`, `uploaded`,
        `processed`, `failed` with an `error`) and the document each made."""
        return await knowledge.list_files(
            db_session, who, knowledge_base_id, page_params.offset, page_params.limit
        )

    @delete(
        "/{knowledge_base_id:str}/files/{file_id:str}",
        operation_id="v2DeleteKnowledgeFile",
        responses=v2_error_responses(401, 404),
    )
    async def delete_file(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        knowledge_base_id: BaseId,
        file_id: FromPath[str],
    ) -> None:
        """Delete a file and the document made from it."""
        await knowledge.delete_file(db_session, who, knowledge_base_id, file_id)

    @get(
        "/{knowledge_base_id:str}/files/{file_id:str}/download_url",
        operation_id="v2KnowledgeFileDownloadUrl",
        responses=v2_error_responses(401, 404),
    )
    async def download_url(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        request: Request[Any, Any, Any],
        knowledge_base_id: BaseId,
        file_id: FromPath[str],
    ) -> schema.FileDownloadUrl:
        """A URL of this server that answers the file's stored bytes (`GET`, no other credentials)
        for `expires_in` seconds (5 minutes). A file's bytes are kept once it is uploaded and
        stay when it is processed; a failed file's are dropped: its URL is a 404 saying so."""
        return await knowledge.download_url(
            db_session, who, knowledge_base_id, file_id, _server_url(services, request)
        )


async def _bounded_body(request: Request[Any, Any, Any], limit: int, what: str) -> bytes:
    """The request's body, at most `limit` bytes: a declared `Content-Length` past it is a 413
    before anything is read, and a body without one (chunked) is counted as it arrives and cut off
    at the limit (MAX_REQUEST_BODY_BYTES, the app's bound, is far larger than a file's)."""
    too_large = TooLarge(f"{what} is larger than {limit} bytes (KNOWLEDGE_MAX_FILE_BYTES)")
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise too_large
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > limit:
            raise too_large
    return bytes(received)


async def _bounded_form(request: Request[Any, Any, Any], max_file_bytes: int) -> FormMultiDict:
    """The multipart form, parsed only once its body is known to be within KNOWLEDGE_MAX_FILE_BYTES
    (and the form's own overhead)."""
    body = await _bounded_body(request, max_file_bytes + MULTIPART_OVERHEAD_BYTES, "the upload")
    # Litestar parses the form from the body it has read (`Request.stream` answers a read body):
    # handing it the bounded one keeps it from reading the connection again.
    request._body = body
    return await request.form()


def _form_int(value: Any, field: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{field} must be an integer", field=field) from None


def _form_metadata(value: Any) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError):
        raise InvalidInput("metadata must be a JSON object", field="metadata") from None
    if not isinstance(parsed, dict):
        raise InvalidInput("metadata must be a JSON object", field="metadata")
    return parsed


class V2KnowledgeUploadController(Controller):
    """Where an upload URL points: no credentials but the URL's own token (api/security.py lets it
    through), like a storage service's pre-signed URL. Not in the OpenAPI spec: a client reaches it
    only by the URL `GET .../upload_url` hands out (docs/v2.md describes it)."""

    path = knowledge.UPLOADS_PATH
    tags = ["v2-knowledge"]
    include_in_schema = False

    @put(
        "/{file_id:str}",
        operation_id="v2PutKnowledgeUpload",
        status_code=200,
        responses=v2_error_responses(404, 413),
    )
    async def put_upload(
        self,
        db_session: NamedDependency[AsyncSession],
        services: NamedDependency[Services],
        request: Request[Any, Any, Any],
        file_id: FromPath[str],
        token: Annotated[str, QueryParameter(min_length=1, max_length=200)],
    ) -> schema.UploadAccepted:
        """Step 2 of a file upload: the file's raw bytes as the body (its `Content-Type` is kept)."""
        return await _receive(db_session, services, request, file_id, token, form=False)

    @post(
        "/{file_id:str}",
        operation_id="v2PostKnowledgeUpload",
        status_code=200,
        responses=v2_error_responses(404, 413),
    )
    async def post_upload(
        self,
        db_session: NamedDependency[AsyncSession],
        services: NamedDependency[Services],
        request: Request[Any, Any, Any],
        file_id: FromPath[str],
        token: Annotated[str, QueryParameter(min_length=1, max_length=200)],
    ) -> schema.UploadAccepted:
        """Step 2 of a file upload, as a storage service's form upload: multipart, the file in its
        `file` part; the token is the URL's (never a form field: it is checked before the form is
        parsed)."""
        return await _receive(db_session, services, request, file_id, token, form=True)

    @get(
        "/{file_id:str}",
        operation_id="v2GetKnowledgeDownload",
        responses=v2_error_responses(404),
    )
    async def get_download(
        self,
        db_session: NamedDependency[AsyncSession],
        file_id: FromPath[str],
        token: Annotated[str, QueryParameter(min_length=1, max_length=200)],
    ) -> Response[bytes]:
        """Where a download URL (`GET .../files/{file_id}/download_url`) points: the file's bytes,
        with its content type and name."""
        found = await knowledge.download(db_session, file_id, token)
        # Its content type is the uploader's: a browser must neither sniff nor run it (as /v1's
        # files, FILE_HEADERS).
        return Response(
            found.data,
            media_type=found.content_type,
            headers={**FILE_HEADERS, "Content-Disposition": attachment(found.filename)},
        )


async def _receive(
    db: AsyncSession,
    services: Services,
    request: Request[Any, Any, Any],
    file_id: str,
    token: str,
    *,
    form: bool,
) -> schema.UploadAccepted:
    """An upload URL's bytes, raw (`PUT`) or in a form's `file` part (`POST`). The token first,
    then the declared size: this route has no other credential, so nobody's body is read, nor
    their form parsed, for nothing; the body is read up to its bound only."""
    max_bytes = services.settings.knowledge_max_file_bytes
    await knowledge.check_upload(db, file_id, token)
    content_type: str | None
    if form:
        parsed = await _bounded_form(request, max_bytes)
        upload = parsed.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("the form has no `file` part holding a file", field="file")
        content_type, data = upload.content_type, await upload.read()
    else:
        content_type = request.headers.get("content-type")
        data = await _bounded_body(request, max_bytes, "the file")
    return await knowledge.receive_upload(db, file_id, token, content_type, data, max_bytes)
