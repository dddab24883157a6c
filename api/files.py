"""A session's files: `/v1/agents/{agent_id}/sessions/{session_id}/fs/...`, and the same routes at
`/v1/sessions/{session_id}/fs/...` (the session of any of the caller's agents), as Everruns serves
them to its web UI and SDK:

- `GET .../fs[/{path}]`: a file as `SessionFile` JSON (content as text, or base64 when it is not
  UTF-8), a directory as `{data: [FileInfo]}` (`?recursive=true`: everything under it);
- `POST .../fs/{path}` makes a file (`{content, encoding}`) or a directory (`{is_directory: true}`),
  `PUT` replaces a file's content or read-only mark, `DELETE` answers `{deleted: true}`;
- `POST .../fs/_/stat`, `_/move`, `_/copy`, `_/grep`: actions, with JSON bodies.

The bytes themselves, for curl: `GET .../fs/_/download/{path}`, or a GET with `?raw=true` or
`Accept: application/octet-stream`; `PUT` with any Content-Type but JSON stores its body as it is
(`?raw=true` too, whatever the Content-Type). The v0.2 forms stay: `GET ?op=stat|grep`, `POST
?op=move|copy|mkdir`. The top-level name `_` is reserved for the actions (`core/file_store.py`
refuses to make anything there), so `.../fs/_/...` is never a file. docs/api.md has the details.
"""

from __future__ import annotations

import mimetypes
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import quote

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.enums import HttpMethod
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)
from litestar.params import Body, FromPath, QueryParameter
from litestar.types.internal_types import PathParameterDefinition
from sqlalchemy.ext.asyncio import AsyncSession

from api.openapi import AUTHENTICATED, error_responses
from api.state import Services
from core import file_store
from core.identity import Identity
from core.json_limits import JsonLimits
from core.schemas.files import (
    CopyFile,
    CreateFile,
    DeletedFile,
    FileEntry,
    FileGrepList,
    FileList,
    FileStat,
    GrepFiles,
    GrepResult,
    MoveFile,
    SessionFile,
    StatFile,
    UpdateFile,
)
from services import files

# A file's bytes are whatever the model or a user stored: never let a browser run them as a page of
# this origin (an HTML file would otherwise see the API's cookies).
FILE_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; sandbox"}
OCTET_STREAM = "application/octet-stream"
_BINARY = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
# A JSON body may hold a 1 MB file as base64 (4/3 of it) or as text with escapes (`\n`, `\"`):
# room for that, while the file itself stays within file_store.MAX_FILE_BYTES (else a 413).
MAX_BODY_BYTES = 4 * file_store.MAX_FILE_BYTES
# Statuses no answer has: the request bodies' schemas are generated there (so their components are
# registered) and moved to the request body by the operation classes below, as api/events.py does.
_CREATE_BODY_STATUS = 297
_UPDATE_BODY_STATUS = 298

_RAW = Annotated[
    bool,
    QueryParameter(
        description="The file's bytes themselves (GET: the answer; PUT: the body, whatever its Content-Type)"
    ),
]


def content_type(name: str, content: bytes) -> str:
    """By the file name's extension; else text/plain for UTF-8 text, else application/octet-stream."""
    guessed, _ = mimetypes.guess_type(name, strict=False)
    if guessed is not None:
        return guessed
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return OCTET_STREAM
    return "text/plain"


def _bytes(entry: FileEntry, content: bytes, *, attachment: bool = False) -> Response[bytes]:
    headers = dict(FILE_HEADERS)
    if attachment:
        fallback = "".join(
            c if c.isascii() and c.isprintable() and c not in '"\\;' else "_" for c in entry.name
        )
        # An ASCII name for old clients, and the real one (RFC 6266's filename*) for the others.
        ascii_name, encoded = fallback or "download", quote(entry.name, safe="")
        headers["Content-Disposition"] = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{encoded}"
    return Response(content, media_type=content_type(entry.name, content), headers=headers)


def _is_json(request: Request[Any, Any, Any]) -> bool:
    media_type, _ = request.content_type
    return media_type == "application/json" or media_type.endswith("+json")


def _wants_bytes(request: Request[Any, Any, Any], raw: bool) -> bool:
    """`?raw=true`, or an Accept that prefers application/octet-stream to JSON (Everruns' rule; a
    browser's or axios' `*/*` does not)."""
    return raw or request.accept.best_match(["application/json", OCTET_STREAM], default="") == OCTET_STREAM


def _nested_tree(agent_id: FromPath[uuid.UUID], session_id: FromPath[uuid.UUID]) -> files.Tree:
    return files.Tree(agent_id=agent_id, session_id=session_id)


def _flat_tree(session_id: FromPath[uuid.UUID]) -> files.Tree:
    return files.Tree(agent_id=None, session_id=session_id)


def _operation_id(name: str) -> Any:
    """Distinct operation ids for the two route families (`Flat` for `/v1/sessions/{id}/fs`), and
    for the tree's root (`.../fs`, `Root`) and a path in it (`.../fs/{path}`)."""

    def operation_id(
        handler: HTTPRouteHandler, method: HttpMethod, parts: list[str | PathParameterDefinition]
    ) -> str:
        names = {p.name for p in parts if isinstance(p, PathParameterDefinition)}
        at_root = "path" not in names and not any(p == "_" for p in parts)
        return name + ("Root" if at_root else "") + ("" if "agent_id" in names else "Flat")

    return operation_id


# OpenAPI


@dataclass
class _ReadOperation(Operation):
    """GET answers JSON (a file, a listing; v0.2: a stat, a grep) or a file's own bytes."""

    def __post_init__(self) -> None:
        ok = self.responses.get("200") if self.responses else None
        if isinstance(ok, OpenAPIResponse) and ok.content:
            json = ok.content.get("application/json")
            if json is not None and isinstance(json.schema, Schema) and json.schema.one_of:
                # The Response[bytes] of the union documents nothing: the bytes are the "*/*" below.
                json.schema.one_of = [
                    s for s in json.schema.one_of if not (isinstance(s, Schema) and s.to_schema() == {})
                ]
            ok.content["*/*"] = OpenAPIMediaType(schema=_BINARY)
            ok.description = (
                "JSON: a file (`SessionFile`) or a directory's listing (`{data: [FileInfo]}`); v0.2: "
                "`op=stat`'s entry, `op=grep`'s matches. The file's bytes with `raw=true` or `Accept: "
                "application/octet-stream` (Content-Type from its name)"
            )


@dataclass
class _DownloadOperation(Operation):
    def __post_init__(self) -> None:
        ok = self.responses.get("200") if self.responses else None
        if isinstance(ok, OpenAPIResponse):
            ok.content = {"*/*": OpenAPIMediaType(schema=_BINARY)}
            ok.description = "The file's bytes, as an attachment (Content-Type from its name)"


def _body_from(operation: Operation, status: int) -> OpenAPIMediaType | None:
    """The JSON schema generated at a status no answer has, taken out of the responses."""
    found = (operation.responses or {}).pop(str(status), None)
    if isinstance(found, OpenAPIResponse) and found.content:
        return found.content.get("application/json")
    return None


def _also_created(operation: Operation) -> None:
    """PUT and POST answer 201 when they made something new, else 200, with the same body."""
    responses = operation.responses or {}
    for have, add, description in (("200", "201", "Created"), ("201", "200", "It was there already")):
        found = responses.get(have)
        if isinstance(found, OpenAPIResponse) and add not in responses:
            responses[add] = OpenAPIResponse(
                description=description, content=found.content, headers=found.headers
            )


@dataclass
class _CreateOperation(Operation):
    def __post_init__(self) -> None:
        _also_created(self)
        json = _body_from(self, _CREATE_BODY_STATUS)
        self.request_body = RequestBody(
            content={"application/json": json} if json else {},
            description="A file (`content`, `encoding`) or a directory (`is_directory: true`). The v0.2 "
            "forms: `?op=move` or `?op=copy` with `{to, overwrite}`, `?op=mkdir` without a body",
            required=False,
        )


@dataclass
class _UpdateOperation(Operation):
    def __post_init__(self) -> None:
        _also_created(self)
        json = _body_from(self, _UPDATE_BODY_STATUS)
        content = {"application/json": json} if json else {}
        content[OCTET_STREAM] = OpenAPIMediaType(schema=_BINARY)
        self.request_body = RequestBody(
            content=content,
            description="With a JSON Content-Type (`application/json`, `*+json`): `{content, encoding, "
            "is_readonly}`. Any other Content-Type, or `?raw=true`: the file's whole new content as it "
            f"is. The file may have at most {file_store.MAX_FILE_BYTES} bytes, the body {MAX_BODY_BYTES}",
            required=True,
        )


def _create_responses() -> dict[int, ResponseSpec]:
    return {
        _CREATE_BODY_STATUS: ResponseSpec(data_container=CreateFile, generate_examples=False),
        **error_responses(400, 404, 409, 413),
    }


def _update_responses() -> dict[int, ResponseSpec]:
    return {
        _UPDATE_BODY_STATUS: ResponseSpec(data_container=UpdateFile, generate_examples=False),
        **error_responses(400, 404, 409, 413),
    }


class FileController(Controller):
    path = "/v1/agents/{agent_id:uuid}/sessions/{session_id:uuid}/fs"
    tags = ["files"]
    security = AUTHENTICATED
    dependencies = {"tree": Provide(_nested_tree, sync_to_thread=False)}

    @get(
        ["/", "/{path:path}"],
        operation_id=_operation_id("readSessionFile"),
        operation_class=_ReadOperation,
        responses=error_responses(400, 404, 409),
    )
    async def read(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        tree: NamedDependency[files.Tree],
        path: FromPath[str] = "/",
        recursive: Annotated[
            bool, QueryParameter(description="A directory: everything under it, not only its entries")
        ] = False,
        raw: _RAW = False,
        op: Annotated[
            Literal["stat", "grep"] | None,
            QueryParameter(description="v0.2: `stat` describes the path; `grep` finds lines under it"),
        ] = None,
        pattern: Annotated[
            str | None, QueryParameter(description="op=grep: a regular expression, matched per line")
        ] = None,
        glob: Annotated[
            str | None,
            QueryParameter(description="op=grep: only files whose name (or relative path) matches"),
        ] = None,
        ignore_case: Annotated[bool, QueryParameter(description="op=grep: case-insensitive")] = False,
        max_matches: Annotated[int, QueryParameter(ge=1, le=file_store.GREP_MAX_MATCHES)] = 100,
    ) -> SessionFile | FileList | FileEntry | GrepResult | Response[bytes]:
        """A file with its content (`SessionFile`), or a directory's entries (`{data: [FileInfo]}`;
        `/fs` is the root). `?raw=true` or `Accept: application/octet-stream`: the file's bytes.
        v0.2: `?op=stat` describes the path; `?op=grep&pattern=...[&glob=*.md][&ignore_case=true]`
        searches the files under it."""
        if op == "stat":
            return await files.entry(db_session, who, tree, path)
        if op == "grep":
            return await files.grep_lines(
                db_session,
                who,
                tree,
                path,
                pattern,
                glob=glob,
                ignore_case=ignore_case,
                max_matches=max_matches,
            )
        if _wants_bytes(request, raw):
            entry, content = await files.read_raw(db_session, who, tree, path)
            return _bytes(entry, content)
        return await files.read(db_session, who, tree, path, recursive=recursive)

    @get(
        "/_/download/{path:path}",
        operation_id=_operation_id("downloadSessionFile"),
        operation_class=_DownloadOperation,
        responses=error_responses(400, 404, 409),
    )
    async def download(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        tree: NamedDependency[files.Tree],
        path: FromPath[str],
    ) -> Response[bytes]:
        """A file's bytes as an attachment (a directory is a 409)."""
        entry, content = await files.read_raw(db_session, who, tree, path)
        return _bytes(entry, content, attachment=True)

    @put(
        "/{path:path}",
        operation_id=_operation_id("writeSessionFile"),
        operation_class=_UpdateOperation,
        request_max_body_size=MAX_BODY_BYTES,
        status_code=200,
        responses=_update_responses(),
    )
    async def write(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        tree: NamedDependency[files.Tree],
        path: FromPath[str],
        raw: _RAW = False,
    ) -> Response[SessionFile | FileEntry]:
        """Create (201) or replace (200) a file. A JSON body is `{content, encoding, is_readonly}`
        and answers the `SessionFile` (`{is_readonly}` alone only sets the mark); any other body
        (or `?raw=true`) is the content itself and answers its v0.2 entry. The directories above it
        are made as needed. Over 1 MB, or over the session's 50 MB, is a 413."""
        body = await request.body()
        # The Content-Type decides, never the body's look: a JSON body is always the contract (a
        # client's JSON is never stored as the file), and curl's uploads (`-T`, `--data-binary`)
        # are not JSON-typed.
        if raw or not _is_json(request):
            entry, created = await files.write_raw(db_session, who, tree, path, body)
            return Response(entry, status_code=201 if created else 200)
        limits = JsonLimits.of(services.settings)
        written, created = await files.update(db_session, who, tree, path, body, limits)
        return Response(written, status_code=201 if created else 200)

    @post(
        "/{path:path}",
        operation_id=_operation_id("createSessionFile"),
        operation_class=_CreateOperation,
        request_max_body_size=MAX_BODY_BYTES,
        status_code=201,
        responses=_create_responses(),
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        tree: NamedDependency[files.Tree],
        path: FromPath[str],
        op: Annotated[
            Literal["move", "copy", "mkdir"] | None,
            QueryParameter(description="v0.2: `move` or `copy` (body `{to, overwrite}`), or `mkdir`"),
        ] = None,
    ) -> Response[SessionFile | FileEntry]:
        """Create a file (`{content, encoding, is_readonly}`; 409 if something is there) or a
        directory (`{is_directory: true}`, with those above it; 200 if it was there), 201 with the
        `SessionFile`. v0.2: `?op=move` renames a file or directory (200), `?op=copy` copies it
        (201), both to `to` (409 if something is there, unless `overwrite` and both are files);
        `?op=mkdir` makes a directory (201, or 200 if it was there); they answer the entry."""
        limits = JsonLimits.of(services.settings)
        if op == "mkdir":
            entry, created = await files.make_directory(db_session, who, tree, path)
            return Response(entry, status_code=201 if created else 200)
        if op is not None:
            moved = await files.transfer(db_session, who, tree, path, op, await request.body(), limits)
            return Response(moved, status_code=201 if op == "copy" else 200)
        made, created = await files.create(db_session, who, tree, path, await request.body(), limits)
        return Response(made, status_code=201 if created else 200)

    @delete(
        "/{path:path}",
        operation_id=_operation_id("deleteSessionFile"),
        status_code=200,
        responses=error_responses(400, 404, 409),
    )
    async def remove(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        tree: NamedDependency[files.Tree],
        path: FromPath[str],
        recursive: Annotated[
            bool,
            QueryParameter(
                description="Needed for a directory that is not empty: it goes with everything in it"
            ),
        ] = False,
    ) -> DeletedFile:
        """Delete a file or a directory (a directory with entries only with `?recursive=true`, else
        409); answers `{"deleted": true}`. Nothing there is a 404; a read-only entry (or one inside
        the directory) a 409."""
        return await files.delete(db_session, who, tree, path, recursive=recursive)

    @post(
        "/_/stat",
        operation_id=_operation_id("statSessionFile"),
        status_code=200,
        responses=error_responses(404),
    )
    async def stat(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        tree: NamedDependency[files.Tree],
        data: Annotated[StatFile, Body()],
    ) -> FileStat:
        """A file's or directory's metadata (`/` is the root)."""
        return await files.stat(db_session, who, tree, data)

    @post(
        "/_/move",
        operation_id=_operation_id("moveSessionFile"),
        status_code=200,
        responses=error_responses(404, 409, 413),
    )
    async def move(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        tree: NamedDependency[files.Tree],
        data: Annotated[MoveFile, Body()],
    ) -> SessionFile:
        """Rename a file or a directory (with everything in it) to `dst_path`, where nothing may be
        (409); the directories above it are made. Answers it at its new path."""
        return await files.move(db_session, who, tree, data)

    @post(
        "/_/copy",
        operation_id=_operation_id("copySessionFile"),
        status_code=201,
        responses=error_responses(404, 409, 413),
    )
    async def copy(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        tree: NamedDependency[files.Tree],
        data: Annotated[CopyFile, Body()],
    ) -> SessionFile:
        """Copy a file, or a directory with everything in it, to `dst_path` (409 if something is
        there). The copy is writable, with new ids."""
        return await files.copy(db_session, who, tree, data)

    @post(
        "/_/grep",
        operation_id=_operation_id("grepSessionFiles"),
        status_code=200,
        responses=error_responses(404),
    )
    async def grep(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        tree: NamedDependency[files.Tree],
        data: Annotated[GrepFiles, Body()],
    ) -> FileGrepList:
        """The lines matching `pattern` (a regular expression) in every text file, or in those
        `path_pattern` picks, grouped by file; at most 1000 lines (`truncated` says there were
        more)."""
        return await files.grep(db_session, who, tree, data)


class FlatFileController(FileController):
    """The same routes for `/v1/sessions/{session_id}`, the session of any of the caller's agents
    (as Everruns' SDK addresses it)."""

    path = "/v1/sessions/{session_id:uuid}/fs"
    dependencies = {"tree": Provide(_flat_tree, sync_to_thread=False)}
