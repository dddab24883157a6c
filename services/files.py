"""A session's files as the `/fs` routes serve them: who may reach them (the ownership check), and
Everruns' JSON contract (`FileInfo`, `SessionFile`, ... in `core/schemas/files.py`) over the tree
itself, which is `core/file_store.py` (the `session_file_system` capability uses it too)."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from typing import Literal, TypeVar

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from core import file_store
from core.db.models import Session
from core.errors import InvalidInput, field_in
from core.identity import Identity
from core.json_limits import JsonLimits, check_json
from core.schemas.files import (
    CopyFile,
    CreateFile,
    DeletedFile,
    Encoding,
    FileEntry,
    FileGrepList,
    FileGrepMatch,
    FileGrepResult,
    FileInfo,
    FileList,
    FileStat,
    FileTransfer,
    GrepFiles,
    GrepResult,
    MoveFile,
    SessionFile,
    StatFile,
    UpdateFile,
)
from services import agents, sessions

T = TypeVar("T")


@dataclass(frozen=True)
class Tree:
    """Which session's files a request means: `/v1/agents/{agent_id}/sessions/{session_id}/fs` names
    the agent too, `/v1/sessions/{session_id}/fs` (agent_id None) any of the caller's agents."""

    agent_id: uuid.UUID | None
    session_id: uuid.UUID


async def owned(db: AsyncSession, who: Identity, tree: Tree, *, changing: bool = False) -> Session:
    """The session whose files the caller means: NotFound for anyone else's. Changing the files of
    an archived agent's session is a Conflict (its sessions are read-only)."""
    session = await sessions.get(db, who, tree.agent_id, tree.session_id)
    if changing:
        sessions.require_active(await agents.get(db, who, session.agent_id))
    return session


# The contract's shapes


def encode(content: bytes) -> tuple[str, Encoding]:
    """`text` when the bytes are UTF-8 (as Everruns decides), else `base64`."""
    try:
        return content.decode("utf-8"), "text"
    except UnicodeDecodeError:
        return base64.b64encode(content).decode("ascii"), "base64"


def decode(content: str | None, encoding: Encoding | None) -> bytes:
    """A request's `content` as bytes; InvalidInput when it is not what `encoding` says."""
    if content is None:
        return b""
    if encoding == "base64":
        # Whitespace is allowed (base64 is often wrapped at 76 characters); nothing else is.
        compact = "".join(content.split())
        try:
            return base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(
                "content: not valid base64 (encoding is base64: A-Z, a-z, 0-9, + and /, padded with =)",
                field="content",
            ) from None
    try:
        return content.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escape (\ud800) decodes to no UTF-8 text
        raise InvalidInput("content: not valid Unicode text; send base64 instead", field="content") from None


def parse(body: bytes, kind: type[T], limits: JsonLimits) -> T:
    """A JSON request body as `kind`, or InvalidInput saying what is wrong with it."""
    if not body.strip():
        raise InvalidInput("the request body is empty; this route expects a JSON object")
    check_json(body, limits)
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise InvalidInput(str(exc), field=field_in(str(exc))) from None
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from None


def _info(session_id: uuid.UUID, entry: FileEntry) -> FileInfo:
    assert entry.id is not None and entry.created_at is not None and entry.updated_at is not None
    return FileInfo(
        id=entry.id,
        session_id=session_id,
        path=entry.path,
        name=entry.name,
        is_directory=entry.type == "directory",
        is_readonly=entry.readonly,
        size_bytes=entry.size,
        created_at=entry.created_at,
        updated_at=entry.updated_at,
    )


def _file(session_id: uuid.UUID, entry: FileEntry, content: bytes | None) -> SessionFile:
    info = _info(session_id, entry)
    if content is None:  # a directory
        return SessionFile(**msgspec.structs.asdict(info), content=None, encoding="text")
    text, encoding = encode(content)
    return SessionFile(**msgspec.structs.asdict(info), content=text, encoding=encoding)


async def _with_content(db: AsyncSession, session_id: uuid.UUID, entry: FileEntry) -> SessionFile:
    if entry.type == "directory":
        return _file(session_id, entry, None)
    entry, content = await file_store.read(db, session_id, entry.path)
    return _file(session_id, entry, content)


# Everruns' operations


async def read(
    db: AsyncSession, who: Identity, tree: Tree, path: str, *, recursive: bool = False
) -> SessionFile | FileList:
    """A file with its content, or a directory's listing (`recursive`: everything under it)."""
    session = await owned(db, who, tree)
    entry = await file_store.stat(db, session.id, path)
    if entry.type == "directory":
        entries = await file_store.list_entries(db, session.id, entry.path, recursive=recursive)
        return FileList(data=[_info(session.id, e) for e in entries])
    return await _with_content(db, session.id, entry)


async def read_raw(db: AsyncSession, who: Identity, tree: Tree, path: str) -> tuple[FileEntry, bytes]:
    """A file's entry and bytes (a directory is a Conflict)."""
    session = await owned(db, who, tree)
    return await file_store.read(db, session.id, path)


async def create(
    db: AsyncSession, who: Identity, tree: Tree, path: str, body: bytes, limits: JsonLimits
) -> tuple[SessionFile, bool]:
    """`POST` with `CreateFile` JSON: a new file (Conflict if anything is at `path`), or a directory
    (an existing one is fine: `mkdir -p`). Returns it and whether it is new. The body is read
    only once the caller may change the files (so it tells no one else anything)."""
    session = await owned(db, who, tree, changing=True)
    data = parse(body, CreateFile, limits)
    if data.is_directory:
        if data.content is not None or data.encoding is not None:
            raise InvalidInput(
                "is_directory: a directory has no content; send either is_directory or content",
                field="is_directory",
            )
        entry, created = await file_store.make_directory(db, session.id, path, readonly=data.is_readonly)
        return _file(session.id, entry, None), created
    content = decode(data.content, data.encoding)
    entry, created = await file_store.write(
        db, session.id, path, content, readonly=bool(data.is_readonly), exclusive=True
    )
    return _file(session.id, entry, content), created


async def update(
    db: AsyncSession, who: Identity, tree: Tree, path: str, body: bytes, limits: JsonLimits
) -> tuple[SessionFile, bool]:
    """`PUT` with `UpdateFile` JSON: replaces a file's content (or creates the file: PUT is
    create-or-replace here, as in v0.2), sets its read-only mark, or both. Returns it and whether
    it is new."""
    session = await owned(db, who, tree, changing=True)
    data = parse(body, UpdateFile, limits)
    if data.content is None:
        if data.encoding is not None:
            raise InvalidInput(
                "encoding: it says how `content` is written, and there is no content", field="content"
            )
        if data.is_readonly is None:
            raise InvalidInput("nothing to change: send content, is_readonly or both", field="content")
        entry = await file_store.set_readonly(db, session.id, path, data.is_readonly)
        return await _with_content(db, session.id, entry), False
    content = decode(data.content, data.encoding)
    entry, created = await file_store.write(db, session.id, path, content, readonly=data.is_readonly)
    return _file(session.id, entry, content), created


async def delete(
    db: AsyncSession, who: Identity, tree: Tree, path: str, *, recursive: bool = False
) -> DeletedFile:
    session = await owned(db, who, tree, changing=True)
    await file_store.delete_path(db, session.id, path, recursive=recursive)
    return DeletedFile(deleted=True)


async def stat(db: AsyncSession, who: Identity, tree: Tree, data: StatFile) -> FileStat:
    session = await owned(db, who, tree)
    entry = await file_store.stat(db, session.id, data.path)
    if entry.path == file_store.ROOT:
        # The root is never stored: it is as old as the session.
        return FileStat(
            path=entry.path,
            name="/",
            is_directory=True,
            is_readonly=False,
            size_bytes=0,
            created_at=session.created_at,
            updated_at=session.created_at,
        )
    info = _info(session.id, entry)
    return FileStat(
        path=info.path,
        name=info.name,
        is_directory=info.is_directory,
        is_readonly=info.is_readonly,
        size_bytes=info.size_bytes,
        created_at=info.created_at,
        updated_at=info.updated_at,
    )


_TRANSFER_FIELDS = ("src_path", "dst_path")


async def move(db: AsyncSession, who: Identity, tree: Tree, data: MoveFile) -> SessionFile:
    session = await owned(db, who, tree, changing=True)
    entry = await file_store.move(db, session.id, data.src_path, data.dst_path, fields=_TRANSFER_FIELDS)
    return await _with_content(db, session.id, entry)


async def copy(db: AsyncSession, who: Identity, tree: Tree, data: CopyFile) -> SessionFile:
    session = await owned(db, who, tree, changing=True)
    entry = await file_store.copy(db, session.id, data.src_path, data.dst_path, fields=_TRANSFER_FIELDS)
    return await _with_content(db, session.id, entry)


_GLOB_CHARACTERS = frozenset("*?[")


async def grep(db: AsyncSession, who: Identity, tree: Tree, data: GrepFiles) -> FileGrepList:
    """The matching lines of every text file (or those `path_pattern` picks), by file. As in
    Everruns, a `path_pattern` with wildcards is a glob (by name at any depth when it has no `/`,
    else by path from the root) and one without is a part of the path."""
    session = await owned(db, who, tree)
    pattern = (data.path_pattern or "").lstrip("/")
    glob = pattern if _GLOB_CHARACTERS & set(pattern) else None
    found = await file_store.grep(
        db,
        session.id,
        data.pattern,
        glob=glob,
        path_contains=pattern if pattern and glob is None else None,
        max_matches=file_store.GREP_MAX_MATCHES,
    )
    by_file: dict[str, list[FileGrepMatch]] = {}
    for match in found.matches:
        by_file.setdefault(match.path, []).append(
            FileGrepMatch(path=match.path, line_number=match.line, line=match.text)
        )
    results = [FileGrepResult(path=path, matches=lines) for path, lines in by_file.items()]
    return FileGrepList(data=results, truncated=found.truncated)


# The v0.2 forms (answers in the tree's own vocabulary, `FileEntry`)


async def write_raw(
    db: AsyncSession, who: Identity, tree: Tree, path: str, content: bytes
) -> tuple[FileEntry, bool]:
    """`PUT` with the file's bytes as the body; returns its entry and whether it is new."""
    session = await owned(db, who, tree, changing=True)
    return await file_store.write(db, session.id, path, content)


async def entry(db: AsyncSession, who: Identity, tree: Tree, path: str) -> FileEntry:
    """`GET ?op=stat`."""
    session = await owned(db, who, tree)
    return await file_store.stat(db, session.id, path)


async def grep_lines(
    db: AsyncSession,
    who: Identity,
    tree: Tree,
    path: str,
    pattern: str | None,
    *,
    glob: str | None,
    ignore_case: bool,
    max_matches: int,
) -> GrepResult:
    """`GET ?op=grep`."""
    session = await owned(db, who, tree)
    if pattern is None:
        raise InvalidInput("pattern: op=grep needs a pattern", field="pattern")
    return await file_store.grep(
        db, session.id, pattern, path=path, glob=glob, ignore_case=ignore_case, max_matches=max_matches
    )


async def make_directory(db: AsyncSession, who: Identity, tree: Tree, path: str) -> tuple[FileEntry, bool]:
    """`POST ?op=mkdir`."""
    session = await owned(db, who, tree, changing=True)
    return await file_store.make_directory(db, session.id, path)


async def transfer(
    db: AsyncSession,
    who: Identity,
    tree: Tree,
    path: str,
    op: Literal["move", "copy"],
    body: bytes,
    limits: JsonLimits,
) -> FileEntry:
    """`POST ?op=move|copy` with `{to, overwrite}`."""
    session = await owned(db, who, tree, changing=True)
    if not body.strip():
        raise InvalidInput(f"op={op} needs a body with `to`", field="to")
    data = parse(body, FileTransfer, limits)
    if op == "move":
        return await file_store.move(db, session.id, path, data.to, overwrite=data.overwrite)
    return await file_store.copy(db, session.id, path, data.to, overwrite=data.overwrite)
