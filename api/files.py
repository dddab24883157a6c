"""A session's files: `/v1/agents/{agent_id}/sessions/{session_id}/fs/{path}`.

GET reads a file (its bytes) or lists a directory (JSON); `?op=stat` and `?op=grep` ask about a
path instead. PUT writes a file from the raw body, DELETE removes (a directory with entries needs
`?recursive=true`), POST `?op=move|copy` (body `{"to", "overwrite"}`) or `?op=mkdir` changes the
tree. The same tree the `session_file_system` tools use; rules in `core/file_store.py`.
"""

from __future__ import annotations

import mimetypes
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from litestar import Controller, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.enums import HttpMethod
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)
from litestar.params import Body, FromPath, QueryParameter, RawBody
from litestar.types.internal_types import PathParameterDefinition
from sqlalchemy.ext.asyncio import AsyncSession

from api.openapi import AUTHENTICATED, error_responses
from core import file_store
from core.errors import InvalidInput
from core.identity import Identity
from core.schemas.files import DirectoryListing, FileEntry, FileTransfer, GrepResult
from services import files

# A file's bytes are whatever the model or a user stored: never let a browser run them as a page of
# this origin (an HTML file would otherwise see the API's cookies).
FILE_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; sandbox"}
_BINARY = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)


def content_type(name: str, content: bytes) -> str:
    """By the file name's extension; else text/plain for UTF-8 text, else application/octet-stream."""
    guessed, _ = mimetypes.guess_type(name, strict=False)
    if guessed is not None:
        return guessed
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    return "text/plain"


@dataclass
class _ReadOperation(Operation):
    """GET answers JSON (a listing, a stat, a grep) or a file's own bytes."""

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
                "A file's content (Content-Type from its name), or JSON: a directory's listing, "
                "`op=stat`'s entry, `op=grep`'s matches"
            )


@dataclass
class _CreatedOperation(Operation):
    """PUT and POST answer 201 when they made something new, else 200, with the same body."""

    def __post_init__(self) -> None:
        ok = self.responses.get("200") if self.responses else None
        if self.responses is not None and isinstance(ok, OpenAPIResponse):
            self.responses["201"] = OpenAPIResponse(
                description="Created", content=ok.content, headers=ok.headers
            )


@dataclass
class _WriteOperation(_CreatedOperation):
    def __post_init__(self) -> None:
        super().__post_init__()
        self.request_body = RequestBody(
            content={"application/octet-stream": OpenAPIMediaType(schema=_BINARY)},
            description="The file's whole new content, as it is (any Content-Type), at most 1 MB",
            required=True,
        )


def _root_or_path(name: str) -> Any:
    """Distinct operation ids for the tree's root (`.../fs`) and a path in it (`.../fs/{path}`)."""

    def operation_id(
        handler: HTTPRouteHandler, method: HttpMethod, parts: list[str | PathParameterDefinition]
    ) -> str:
        at_path = any(isinstance(p, PathParameterDefinition) and p.name == "path" for p in parts)
        return name if at_path else f"{name}Root"

    return operation_id


class FileController(Controller):
    path = "/v1/agents/{agent_id:uuid}/sessions/{session_id:uuid}/fs"
    tags = ["files"]
    security = AUTHENTICATED

    @get(
        ["/", "/{path:path}"],
        operation_id=_root_or_path("readSessionFile"),
        operation_class=_ReadOperation,
        responses=error_responses(400, 404, 409),
    )
    async def read(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        agent_id: FromPath[uuid.UUID],
        session_id: FromPath[uuid.UUID],
        path: FromPath[str] = "/",
        op: Annotated[
            Literal["stat", "grep"] | None,
            QueryParameter(description="`stat`: the entry; `grep`: matching lines; none: read or list"),
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
    ) -> FileEntry | DirectoryListing | GrepResult | Response[bytes]:
        """A file's content, or a directory's listing (`/fs` is the root). `?op=stat` describes the
        path; `?op=grep&pattern=...[&glob=*.md][&ignore_case=true]` searches the files under it."""
        sid = await files.owned(db_session, who, agent_id, session_id)
        if op == "stat":
            return await file_store.stat(db_session, sid, path)
        if op == "grep":
            if pattern is None:
                raise InvalidInput("pattern: op=grep needs a pattern", field="pattern")
            return await file_store.grep(
                db_session,
                sid,
                pattern,
                path=path,
                glob=glob,
                ignore_case=ignore_case,
                max_matches=max_matches,
            )
        if (await file_store.stat(db_session, sid, path)).type == "directory":
            return await file_store.list_directory(db_session, sid, path)
        entry, content = await file_store.read(db_session, sid, path)
        return Response(content, media_type=content_type(entry.name, content), headers=FILE_HEADERS)

    @put(
        "/{path:path}",
        operation_id="writeSessionFile",
        operation_class=_WriteOperation,
        request_max_body_size=file_store.MAX_FILE_BYTES,
        status_code=200,
        responses=error_responses(400, 404, 409, 413),
    )
    async def write(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        agent_id: FromPath[uuid.UUID],
        session_id: FromPath[uuid.UUID],
        path: FromPath[str],
        body: RawBody,
    ) -> Response[FileEntry]:
        """Create (201) or replace (200) a file with the raw request body; the directories above it
        are made as needed. Over 1 MB, or over the session's 50 MB, is a 413."""
        sid = await files.owned(db_session, who, agent_id, session_id, changing=True)
        entry, created = await file_store.write(db_session, sid, path, body)
        return Response(entry, status_code=201 if created else 200)

    @post(
        "/{path:path}",
        operation_id="changeSessionFile",
        operation_class=_CreatedOperation,
        status_code=200,
        responses=error_responses(400, 404, 409, 413),
    )
    async def change(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        agent_id: FromPath[uuid.UUID],
        session_id: FromPath[uuid.UUID],
        path: FromPath[str],
        op: Annotated[
            Literal["move", "copy", "mkdir"] | None,
            QueryParameter(description="Required: `move` or `copy` (body `{to, overwrite}`), or `mkdir`"),
        ] = None,
        data: Annotated[FileTransfer | None, Body()] = None,
    ) -> Response[FileEntry]:
        """`?op=move` renames a file or directory (200), `?op=copy` copies it (201), both to `to`
        (409 if something is there, unless `overwrite` and both are files); `?op=mkdir` makes a
        directory and those above it (201, or 200 if it was there)."""
        sid = await files.owned(db_session, who, agent_id, session_id, changing=True)
        if op == "mkdir":
            entry, created = await file_store.make_directory(db_session, sid, path)
            return Response(entry, status_code=201 if created else 200)
        if op is None:
            raise InvalidInput("op: say what to do: move, copy or mkdir", field="op")
        if data is None:
            raise InvalidInput(f"op={op} needs a body with `to`", field="to")
        if op == "move":
            return Response(await file_store.move(db_session, sid, path, data.to, overwrite=data.overwrite))
        entry = await file_store.copy(db_session, sid, path, data.to, overwrite=data.overwrite)
        return Response(entry, status_code=201)

    @delete("/{path:path}", operation_id="deleteSessionFile", responses=error_responses(400, 404, 409))
    async def remove(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        agent_id: FromPath[uuid.UUID],
        session_id: FromPath[uuid.UUID],
        path: FromPath[str],
        recursive: Annotated[
            bool,
            QueryParameter(
                description="Needed for a directory that is not empty: it goes with everything in it"
            ),
        ] = False,
    ) -> None:
        """Delete a file or a directory (a directory with entries only with `?recursive=true`, else 409)."""
        sid = await files.owned(db_session, who, agent_id, session_id, changing=True)
        await file_store.delete_path(db_session, sid, path, recursive=recursive)
