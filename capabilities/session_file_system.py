"""Files private to one session, kept in PostgreSQL (`core/file_store.py`): the model reads,
writes, lists, searches, stats and deletes them; people reach the same tree over HTTP at
`/v1/agents/{a}/sessions/{s}/fs/{path}`.

Retries: a tool call whose worker died after the change but before its result was stored runs
again. `write_file` replaces the whole file, so a second run leaves the same content; `delete_file`
of a path that is already gone answers `deleted: false` instead of failing. No tool appends.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from capabilities.base import CapabilitySpec, Tool, ToolContext, ToolError
from core import file_store as files
from core.errors import EverloopError

READ_MAX_CHARS = 200_000  # what one read_file hands the model, at most

Path = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=4096,
        description="A path in the session's file tree, e.g. /notes/plan.md (/ is the root)",
    ),
]


class ReadFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    path: Path
    start_line: Annotated[int, msgspec.Meta(ge=1, description="The first line to return (1-based)")] = 1
    max_lines: Annotated[int, msgspec.Meta(ge=1, le=10_000, description="How many lines at most")] = 2000


class WriteFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    path: Path
    content: Annotated[
        str, msgspec.Meta(description="The whole new content (UTF-8 text, at most 1 MB); replaces the file")
    ]


class ListDirectory(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    path: Path = "/"


class GrepFiles(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pattern: Annotated[
        str, msgspec.Meta(min_length=1, max_length=1000, description="A regular expression, matched per line")
    ]
    path: Annotated[Path, msgspec.Meta(description="A directory to search under, or one file")] = "/"
    glob: (
        Annotated[
            str,
            msgspec.Meta(
                max_length=256,
                description="Only files whose name matches (*.py), or with a /, whose path under `path` "
                "matches (src/**/*.py)",
            ),
        ]
        | None
    ) = None
    ignore_case: bool = False
    max_matches: Annotated[int, msgspec.Meta(ge=1, le=files.GREP_MAX_MATCHES)] = 100


class DeleteFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    path: Path
    recursive: Annotated[
        bool, msgspec.Meta(description="Needed to delete a directory that is not empty, with its content")
    ] = False


class StatFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    path: Path


T = TypeVar("T")


async def _with_db(ctx: ToolContext, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Runs a file operation in its own transaction; the service's refusals become tool errors."""
    if ctx.db is None:
        raise ToolError("the session's file system is not available here")
    async with ctx.db.session() as db:
        try:
            return await work(db)
        except EverloopError as exc:
            raise ToolError(exc.message) from None


def _builtins(value: Any) -> Any:
    return msgspec.to_builtins(value)


async def read_file(args: ReadFile, ctx: ToolContext) -> dict[str, Any]:
    entry, content = await _with_db(ctx, lambda db: files.read(db, ctx.session_id, args.path))
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return {
            "path": entry.path,
            "size": entry.size,
            "binary": True,
            "content": None,
            "note": f"binary content ({entry.size} bytes) is not shown",
        }
    lines = text.splitlines(keepends=True)
    first = args.start_line - 1
    chosen = lines[first : first + args.max_lines]
    body = "".join(chosen)
    cut = len(body) > READ_MAX_CHARS
    end_line = first + len(chosen)
    result: dict[str, Any] = {
        "path": entry.path,
        "size": entry.size,
        "content": body[:READ_MAX_CHARS],
        "start_line": args.start_line,
        "end_line": end_line,
        "total_lines": len(lines),
        "truncated": cut or end_line < len(lines),
    }
    if cut:
        result["note"] = f"cut at {READ_MAX_CHARS} characters: read fewer lines at a time"
    elif end_line < len(lines):
        result["note"] = f"more lines follow: read again with start_line={end_line + 1}"
    return result


async def write_file(args: WriteFile, ctx: ToolContext) -> dict[str, Any]:
    entry, created = await _with_db(
        ctx, lambda db: files.write(db, ctx.session_id, args.path, args.content.encode("utf-8"))
    )
    return {"path": entry.path, "size": entry.size, "created": created}


async def list_directory(args: ListDirectory, ctx: ToolContext) -> dict[str, Any]:
    listing = await _with_db(ctx, lambda db: files.list_directory(db, ctx.session_id, args.path))
    entries = [
        {"name": e.name, "type": e.type, "size": e.size}
        if e.type == "file"
        else {"name": e.name, "type": e.type}
        for e in listing.entries
    ]
    return {"path": listing.path, "entries": entries}


async def grep_files(args: GrepFiles, ctx: ToolContext) -> dict[str, Any]:
    result = await _with_db(
        ctx,
        lambda db: files.grep(
            db,
            ctx.session_id,
            args.pattern,
            path=args.path,
            glob=args.glob,
            ignore_case=args.ignore_case,
            max_matches=args.max_matches,
        ),
    )
    found: dict[str, Any] = _builtins(result)
    return found


async def delete_file(args: DeleteFile, ctx: ToolContext) -> dict[str, Any]:
    removed = await _with_db(
        ctx,
        lambda db: files.delete_path(
            db, ctx.session_id, args.path, recursive=args.recursive, missing_ok=True
        ),
    )
    path = files.normalize(args.path)
    if removed == 0:
        return {"path": path, "deleted": False, "removed": 0, "note": "nothing is at this path"}
    return {"path": path, "deleted": True, "removed": removed}


async def stat_file(args: StatFile, ctx: ToolContext) -> dict[str, Any]:
    entry = await _with_db(ctx, lambda db: files.stat(db, ctx.session_id, args.path))
    found: dict[str, Any] = _builtins(entry)
    found.pop("id", None)  # the HTTP API's handle for it, nothing the model can use
    return found


CAPABILITY = CapabilitySpec(
    id="session_file_system",
    name="Session File System",
    description="Files and directories private to each session, kept between turns, also served over HTTP",
    icon="folder",
    category="Storage",
    system_prompt=(
        "You have a file system private to this session, kept between turns: read_file, write_file, "
        "list_directory, grep_files, delete_file and stat_file. Paths are like /notes/plan.md (/ is "
        "the root); writing a file creates the directories above it. Save notes, drafts and results "
        "there instead of repeating them in messages."
    ),
    timeout_s=30.0,
    tools=(
        Tool(
            name="read_file",
            description="Read a text file (up to max_lines lines from start_line).",
            params=ReadFile,
            handler=read_file,
        ),
        Tool(
            name="write_file",
            description="Create or replace a file with the given text; missing directories are created.",
            params=WriteFile,
            handler=write_file,
        ),
        Tool(
            name="list_directory",
            description="List the files and directories directly inside a directory.",
            params=ListDirectory,
            handler=list_directory,
        ),
        Tool(
            name="grep_files",
            description="Find the lines matching a regular expression in the files under a path.",
            params=GrepFiles,
            handler=grep_files,
        ),
        Tool(
            name="delete_file",
            description="Delete a file, or a directory (with recursive=true if it is not empty).",
            params=DeleteFile,
            handler=delete_file,
        ),
        Tool(
            name="stat_file",
            description="Whether a path is a file or a directory, its size and times.",
            params=StatFile,
            handler=stat_file,
        ),
    ),
)
