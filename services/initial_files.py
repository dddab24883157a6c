"""Starter files (`initial_files` of an agent and of a new session): checked when given, written
into each new session's file tree when the session is created.

The files go in with the session row, in its transaction: a session never exists without them,
and a refused file refuses the session. So they are inserted here rather than through
`core/file_store.write`, which commits each write on its own; the rows are the store's own (one per
file, one per directory above it, paths normalised by the store's rules), and a new session's tree
has nothing in it to clash with.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core import file_store
from core.db.files import DIRECTORY, FILE, SessionFile
from core.errors import InvalidInput
from core.schemas.agents import InitialFile

MAX_FILES = 100  # per agent, and per session request
MAX_TOTAL_BYTES = 10 * 1024 * 1024  # their decoded contents together (the store allows 50 MB a session)
# One file: the store's own limit (1 MB). Directories above them: at most 100 x 32 levels, far
# within the store's 10,000 entries a session, as 2 x 10 MB is within its 50 MB.


def _decoded(file: InitialFile, where: str) -> bytes:
    if file.encoding == "base64":
        try:
            return base64.b64decode(file.content, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(f"{where}.content: not valid base64", field=f"{where}.content") from None
    try:
        return file.content.encode()
    except UnicodeEncodeError:
        raise InvalidInput(f"{where}.content: not valid Unicode text", field=f"{where}.content") from None


def check(files: list[InitialFile], field: str = "initial_files") -> list[dict[str, Any]]:
    """The files as they are kept: `{path, content, encoding, is_readonly}`, the path normalised. InvalidInput
    naming the file for a path the store refuses, a path given twice, a file below another file,
    or content over the limits. `is_readonly` files get the store's read-only mark (neither the agent's
    tools nor the files API can change them)."""
    if len(files) > MAX_FILES:
        raise InvalidInput(f"{field}: at most {MAX_FILES} files", field=field)
    kept: dict[str, dict[str, Any]] = {}
    total = 0
    for index, file in enumerate(files):
        where = f"{field}[{index}]"
        path = file_store.normalize(file.path, field=f"{where}.path")
        if path == file_store.ROOT:
            raise InvalidInput(f"{where}.path: a file needs a name, not /", field=f"{where}.path")
        # These rows skip file_store.write, which keeps `/_` free for the files API's actions.
        file_store.check_not_reserved(path, field=f"{where}.path")
        if path in kept:
            raise InvalidInput(f"{where}.path: {path} is given twice", field=f"{where}.path")
        size = len(_decoded(file, where))
        if size > file_store.MAX_FILE_BYTES:
            raise InvalidInput(f"{where}.content: a file may have at most 1 MB", field=f"{where}.content")
        total += size
        kept[path] = {
            "path": path,
            "content": file.content,
            "encoding": file.encoding or "text",
            "is_readonly": bool(file.is_readonly),
        }
    if total > MAX_TOTAL_BYTES:
        raise InvalidInput(f"{field}: the files may have at most 10 MB together", field=field)
    _check_tree(list(kept), field)
    return list(kept.values())


def _check_tree(paths: list[str], field: str) -> None:
    files = set(paths)
    for path in paths:
        for above in _directories_above(path):
            if above in files:
                raise InvalidInput(f"{field}: {above} is a file, so {path} cannot be below it", field=field)


def _directories_above(path: str) -> list[str]:
    parts = path.split("/")[1:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def merge(agent_files: list[dict[str, Any]], session_files: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The agent's files, then the session's: a path in both gets the session's file."""
    merged = {f["path"]: f for f in agent_files}
    merged.update({f["path"]: f for f in session_files})
    _check_tree(list(merged), "initial_files")
    return list(merged.values())


def _content(file: dict[str, Any]) -> bytes:
    text: str = file["content"]
    if file.get("encoding") == "base64":
        return base64.b64decode(text)
    return text.encode()


async def write(db: AsyncSession, session_id: uuid.UUID, files: list[dict[str, Any]]) -> None:
    """Inserts the (checked) files and the directories above them into a new session's tree, in
    the caller's transaction (the session row must be flushed first)."""
    if not files:
        return
    directories = sorted({d for f in files for d in _directories_above(f["path"])})
    rows: list[dict[str, Any]] = [
        {
            "session_id": session_id,
            "path": d,
            "parent": file_store.parent_of(d),
            "kind": DIRECTORY,
            "content": None,
            "size": 0,
            "is_readonly": False,
        }
        for d in directories
    ]
    for file in files:
        content = _content(file)
        rows.append(
            {
                "session_id": session_id,
                "path": file["path"],
                "parent": file_store.parent_of(file["path"]),
                "kind": FILE,
                "content": content,
                "size": len(content),
                "is_readonly": bool(file.get("is_readonly")),
            }
        )
    await db.execute(insert(SessionFile), rows)
