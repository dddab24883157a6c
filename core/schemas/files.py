"""A session's files (`/v1/agents/{a}/sessions/{s}/fs/{path}` and capability `session_file_system`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

EntryType = Literal["file", "directory"]


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
