"""A session's files (`/v1/agents/{a}/sessions/{s}/fs/{path}` and capability `session_file_system`).

Two vocabularies: `FileEntry` and its kin are the tree as the tools and the v0.2 request forms
(`?op=stat`, a raw PUT, `?op=move`) see it; `FileInfo`, `SessionFile` and the rest below are
Everruns' JSON contract, which its web UI and SDK read.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

EntryType = Literal["file", "directory"]
Encoding = Literal["text", "base64"]


class FileEntry(msgspec.Struct, kw_only=True):
    path: str  # normalised and absolute within the session's tree, e.g. "/notes/todo.md"
    name: str  # the last part of the path ("" for the root)
    type: EntryType
    size: int  # bytes of a file's content; 0 for a directory
    # A directory's direct children (files and directories); None for a file.
    entries: int | None = None
    # None only for the root, which always exists and is never stored.
    created_at: datetime | None = None
    updated_at: datetime | None = None
    # Read-only: its content cannot change and it cannot be deleted or moved (a directory: nothing
    # can be added to it either), until the mark is taken off.
    readonly: bool = False
    # Its own id, kept when it is moved or replaced; None only for the root.
    id: uuid.UUID | None = None


class DirectoryListing(msgspec.Struct, kw_only=True):
    path: str
    type: Literal["directory"] = "directory"
    entries: list[FileEntry]


class GrepMatch(msgspec.Struct, kw_only=True):
    path: str
    line: int  # 1-based
    text: str  # the matching line, cut at 500 characters


class GrepResult(msgspec.Struct, kw_only=True):
    pattern: str
    path: str
    glob: str | None
    matches: list[GrepMatch]
    files_searched: int
    # Files left out because their content is not UTF-8 text.
    binary_files_skipped: int
    # More matches than `max_matches` were found; only the first are listed.
    truncated: bool


class FileTransfer(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`POST .../fs/{path}?op=move` or `?op=copy`: where to, and whether an existing file there may be
    replaced (a directory is never replaced)."""

    to: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    overwrite: bool = False


# Everruns' contract (`.../fs/{path}` GET/POST/PUT/DELETE and `.../fs/_/stat|move|copy|grep`).


class FileInfo(msgspec.Struct, kw_only=True):
    """A file or directory without its content (a listing's item)."""

    id: uuid.UUID
    session_id: uuid.UUID
    path: str
    name: str
    is_directory: bool
    is_readonly: bool
    size_bytes: int
    created_at: datetime
    updated_at: datetime


class SessionFile(FileInfo, kw_only=True):
    """A file with its content: `text` when its bytes are UTF-8, else `base64`. A directory has
    `content: null`."""

    content: str | None
    encoding: Encoding


class FileList(msgspec.Struct, kw_only=True):
    """A directory's entries (directories first, then by path), or with `recursive=true` everything
    under it (by path)."""

    data: list[FileInfo]


class FileStat(msgspec.Struct, kw_only=True):
    path: str
    name: str
    is_directory: bool
    is_readonly: bool
    size_bytes: int
    created_at: datetime
    updated_at: datetime


class DeletedFile(msgspec.Struct, kw_only=True):
    deleted: bool


class FileGrepMatch(msgspec.Struct, kw_only=True):
    path: str
    line_number: int  # 1-based
    line: str  # cut at 500 characters


class FileGrepResult(msgspec.Struct, kw_only=True):
    """One file's matching lines."""

    path: str
    matches: list[FileGrepMatch]


class FileGrepList(msgspec.Struct, kw_only=True):
    data: list[FileGrepResult]
    # More lines matched than the 1000 listed.
    truncated: bool


_Content = Annotated[str, msgspec.Meta(description="The content: the text itself, or base64 of the bytes")]
_Path = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


class CreateFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`POST .../fs/{path}`: a new file (`content`, `encoding` text by default; no content is an
    empty file), or with `is_directory: true` a directory (and no content)."""

    content: _Content | None = None
    encoding: Encoding | None = None
    is_directory: bool | None = None
    is_readonly: bool | None = None


class UpdateFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`PUT .../fs/{path}` with a JSON body: the file's whole new content, its read-only mark, or
    both."""

    content: _Content | None = None
    encoding: Encoding | None = None
    is_readonly: bool | None = None


class StatFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    path: _Path


class MoveFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A file or a directory (with everything in it) to a new path; nothing may be there."""

    src_path: _Path
    dst_path: _Path


class CopyFile(MoveFile, kw_only=True, forbid_unknown_fields=True):
    pass


class GrepFiles(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pattern: Annotated[
        str, msgspec.Meta(min_length=1, max_length=1000, description="A regular expression, matched per line")
    ]
    path_pattern: (
        Annotated[
            str,
            msgspec.Meta(
                max_length=256,
                description="Only these files: a glob (`*.md` by name at any depth, `docs/**/*.md` by "
                "path), or without wildcards a part of the path (`docs/`)",
            ),
        ]
        | None
    ) = None
