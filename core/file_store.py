"""A session's file tree in PostgreSQL (table `session_files`): the capability
`session_file_system` and the `/v1/agents/{a}/sessions/{s}/fs/{path}` routes both come here. It
knows sessions only by id: who may reach a session's files is the caller's check
(`services/files.py` for the routes; a tool runs inside its own session).

Paths are POSIX paths inside the session's own tree, whose root is `/`: `notes/a.md`, `/notes/a.md`
and `/notes/./x/../a.md` are the same file. An absolute path is taken inside the tree (there is
nothing outside it to reach); `..` above the root, NUL and other control characters, backslashes,
names over 255 bytes, paths over 1024 bytes or 32 levels are refused (InvalidInput).

The top-level name `_` is reserved: nothing can be made at `/_` or under it, because the HTTP API
keeps its actions there (`.../fs/_/stat`, `_/move`, `_/download/{path}`, ...), and a file of that
name would make those addresses ambiguous.

Directories are rows of their own, made like `mkdir -p` when a file is written below them, so they
list and stat like a file system and stay when emptied. Every change to a session's tree takes one
transaction-scoped advisory lock per session, so parallel tool calls queue up: no lost update, no
unique-key race, and the quota below is checked exactly. Reads take no lock.

An entry marked read-only (`is_readonly`) keeps its content: it cannot be written, deleted or moved,
nor can a directory tree holding one be deleted or moved, until the mark is taken off
(`set_readonly`). Nothing new can be made in a read-only directory. A copy is writable.
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
import time
import uuid
from collections.abc import Sequence
from typing import Any

import regex
from sqlalchemy import ColumnElement, and_, case, delete, func, literal, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.files import DIRECTORY, FILE, SessionFile
from core.db.models import Session
from core.errors import Conflict, InvalidInput, NotFound, TooLarge
from core.schemas.files import DirectoryListing, FileEntry, GrepMatch, GrepResult

MAX_FILE_BYTES = 1024 * 1024  # one file's content
MAX_SESSION_BYTES = 50 * 1024 * 1024  # all files of a session together
MAX_ENTRIES = 10_000  # files and directories of a session
MAX_PATH_BYTES = 1024
MAX_NAME_BYTES = 255
MAX_DEPTH = 32
# grep: the pattern runs with the `regex` module's timeout (it stops a catastrophically
# backtracking pattern), in a thread, over at most the session's 50 MB, one line at a time.
GREP_MAX_PATTERN_CHARS = 1000
GREP_MAX_GLOB_CHARS = 256
GREP_TIMEOUT_S = 5.0
# Matching file paths against a glob may take this long in all (a glob like `**a**a**a**b` makes
# a backtracking matcher slow on a long path): it runs on the event loop, so it must stay short.
GLOB_TIMEOUT_S = 0.5
GREP_MAX_MATCHES = 1000
GREP_LINE_CHARS = 500
_GREP_BATCH_BYTES = 4 * 1024 * 1024

ROOT = "/"
RESERVED = "/_"  # the HTTP API's actions (see the module's docstring)
# The advisory-lock key space of this module (pg_advisory_xact_lock(int4, int4) has its own keys).
_LOCK_NAMESPACE = 0x46530001
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# Paths


def normalize(raw: str, field: str = "path") -> str:
    """The canonical absolute form of a path in the session's tree; InvalidInput if it is unusable."""
    if "\x00" in raw:
        raise InvalidInput(f"{field}: a path may not contain the NUL character", field=field)
    if _CONTROL.search(raw):
        raise InvalidInput(f"{field}: a path may not contain control characters", field=field)
    if "\\" in raw:
        raise InvalidInput(f"{field}: use / to separate the parts of a path, not \\", field=field)
    try:
        size = len(raw.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInput(f"{field}: the path is not valid Unicode text", field=field) from None
    if size > MAX_PATH_BYTES:
        raise InvalidInput(f"{field}: a path may have at most {MAX_PATH_BYTES} bytes", field=field)
    parts: list[str] = []
    for part in raw.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise InvalidInput(f"{field}: {raw!r} leads outside the session's file tree", field=field)
            parts.pop()
            continue
        if len(part.encode("utf-8")) > MAX_NAME_BYTES:
            raise InvalidInput(f"{field}: a name may have at most {MAX_NAME_BYTES} bytes", field=field)
        parts.append(part)
    if len(parts) > MAX_DEPTH:
        raise InvalidInput(f"{field}: a path may be at most {MAX_DEPTH} levels deep", field=field)
    return ROOT + "/".join(parts)


def parent_of(path: str) -> str:
    return path.rsplit("/", 1)[0] or ROOT


def name_of(path: str) -> str:
    return path.rsplit("/", 1)[1]


def _ancestors(path: str) -> list[str]:
    """The directories above a path, outermost first, without the root: /a/b/c -> [/a, /a/b]."""
    parts = path.split("/")[1:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def _below(path: str) -> ColumnElement[bool]:
    """Rows strictly under a directory: with the "C" collation, the key range [path/, path0)."""
    if path == ROOT:
        return SessionFile.path != ROOT
    return and_(SessionFile.path >= path + "/", SessionFile.path < path + "0")


def _rebased(column: Any, old: str, new: str) -> Any:
    """`column` with the prefix `old` replaced by `new` (SQL); for rows at or under `old`."""
    return literal(new) + func.substr(column, len(old) + 1)


# Reading


_ENTRY_COLUMNS = (
    SessionFile.path,
    SessionFile.kind,
    SessionFile.size,
    SessionFile.created_at,
    SessionFile.updated_at,
    SessionFile.is_readonly,
    SessionFile.id,
)


def _entry(row: Any, entries: int | None = None) -> FileEntry:
    return FileEntry(
        path=row.path,
        name=name_of(row.path),
        type=row.kind,
        size=row.size,
        entries=entries if row.kind == DIRECTORY else None,
        created_at=row.created_at,
        updated_at=row.updated_at,
        readonly=row.is_readonly,
        id=row.id,
    )


async def _row(db: AsyncSession, session_id: uuid.UUID, path: str) -> Any:
    query = select(*_ENTRY_COLUMNS).where(SessionFile.session_id == session_id, SessionFile.path == path)
    return (await db.execute(query)).first()


async def _children(db: AsyncSession, session_id: uuid.UUID, path: str) -> int:
    query = select(func.count()).where(SessionFile.session_id == session_id, SessionFile.parent == path)
    return int((await db.execute(query)).scalar_one())


async def stat(db: AsyncSession, session_id: uuid.UUID, path: str) -> FileEntry:
    path = normalize(path)
    if path == ROOT:
        return FileEntry(
            path=ROOT, name="", type="directory", size=0, entries=await _children(db, session_id, ROOT)
        )
    row = await _row(db, session_id, path)
    if row is None:
        raise NotFound(f"no such file or directory: {path}")
    return _entry(row, await _children(db, session_id, path) if row.kind == DIRECTORY else None)


async def read(db: AsyncSession, session_id: uuid.UUID, path: str) -> tuple[FileEntry, bytes]:
    """A file's entry and content; a directory is a Conflict (list it instead)."""
    path = normalize(path)
    query = select(*_ENTRY_COLUMNS, SessionFile.content).where(
        SessionFile.session_id == session_id, SessionFile.path == path
    )
    row = (await db.execute(query)).first() if path != ROOT else None
    if row is None and path != ROOT:
        raise NotFound(f"no such file or directory: {path}")
    if row is None or row.kind == DIRECTORY:
        raise Conflict(f"{path} is a directory, not a file")
    return _entry(row), bytes(row.content)


async def list_directory(db: AsyncSession, session_id: uuid.UUID, path: str) -> DirectoryListing:
    """A directory's direct children, by name; a file is a Conflict."""
    path = normalize(path)
    if path != ROOT:
        row = await _row(db, session_id, path)
        if row is None:
            raise NotFound(f"no such file or directory: {path}")
        if row.kind == FILE:
            raise Conflict(f"{path} is a file, not a directory")
    rows = (
        await db.execute(
            select(*_ENTRY_COLUMNS)
            .where(SessionFile.session_id == session_id, SessionFile.parent == path)
            .order_by(SessionFile.path)
        )
    ).all()
    # Each child directory's own number of children, in one query.
    counts: dict[str, int] = {}
    if any(r.kind == DIRECTORY for r in rows):
        found = await db.execute(
            select(SessionFile.parent, func.count())
            .where(SessionFile.session_id == session_id, _below(path), SessionFile.parent != path)
            .group_by(SessionFile.parent)
        )
        counts = {parent: int(n) for parent, n in found.all()}
    return DirectoryListing(path=path, entries=[_entry(r, counts.get(r.path, 0)) for r in rows])


async def list_entries(
    db: AsyncSession, session_id: uuid.UUID, path: str, *, recursive: bool = False
) -> list[FileEntry]:
    """A directory's direct children, directories first, then by path (as Everruns lists them);
    with `recursive`, everything under it by path. Without children counts. A file is a Conflict."""
    path = normalize(path)
    if path != ROOT:
        row = await _row(db, session_id, path)
        if row is None:
            raise NotFound(f"no such file or directory: {path}")
        if row.kind == FILE:
            raise Conflict(f"{path} is a file, not a directory")
    where = _below(path) if recursive else SessionFile.parent == path
    # "directory" sorts before "file".
    order = (SessionFile.path,) if recursive else (SessionFile.kind, SessionFile.path)
    query = select(*_ENTRY_COLUMNS).where(SessionFile.session_id == session_id, where).order_by(*order)
    return [_entry(r) for r in (await db.execute(query)).all()]


# Changing


async def _lock(db: AsyncSession, session_id: uuid.UUID) -> None:
    """Serialises the changes to one session's tree until the transaction ends; NotFound if the
    session is gone (deleted while a tool call ran)."""
    key = int.from_bytes(session_id.bytes[-4:], "big", signed=True)
    await db.execute(text("SELECT pg_advisory_xact_lock(:ns, :key)"), {"ns": _LOCK_NAMESPACE, "key": key})
    found = await db.execute(
        select(Session.id).where(Session.id == session_id).with_for_update(read=True, key_share=True)
    )
    if found.first() is None:
        raise NotFound(f"session {session_id} not found")


async def _kinds(db: AsyncSession, session_id: uuid.UUID, paths: Sequence[str]) -> dict[str, Any]:
    query = select(SessionFile.path, SessionFile.kind, SessionFile.size, SessionFile.is_readonly).where(
        SessionFile.session_id == session_id, SessionFile.path.in_(list(paths))
    )
    return {row.path: row for row in (await db.execute(query)).all()}


async def _check_room(db: AsyncSession, session_id: uuid.UUID, *, add_bytes: int, add_entries: int) -> None:
    if add_bytes <= 0 and add_entries <= 0:
        return
    query = select(func.coalesce(func.sum(SessionFile.size), 0), func.count()).where(
        SessionFile.session_id == session_id
    )
    total, count = (await db.execute(query)).one()
    if add_bytes > 0 and int(total) + add_bytes > MAX_SESSION_BYTES:
        raise TooLarge(
            f"the session's files would take {int(total) + add_bytes} bytes, over the limit of "
            f"{MAX_SESSION_BYTES} bytes ({MAX_SESSION_BYTES // (1024 * 1024)} MB); delete some first"
        )
    if add_entries > 0 and int(count) + add_entries > MAX_ENTRIES:
        raise TooLarge(f"a session may hold at most {MAX_ENTRIES} files and directories")


async def _parents_for(
    db: AsyncSession, session_id: uuid.UUID, path: str, field: str = "path", *, adding: bool = True
) -> list[str]:
    """Checks that an entry may go at `path` (under the lock) and returns the directories above it
    that do not exist yet. Conflict if one of them is a file, or (for a new entry, `adding`) if
    the directory it goes into is read-only."""
    chain = _ancestors(path)
    found = await _kinds(db, session_id, chain)
    for ancestor in chain:
        if ancestor in found and found[ancestor].kind == FILE:
            raise Conflict(f"{field}: {ancestor} is a file, so {path} cannot be under it", field=field)
    parent = found.get(parent_of(path))
    if adding and parent is not None and parent.is_readonly:
        raise Conflict(f"{field}: {parent.path} is read-only: nothing can be added to it", field=field)
    return [a for a in chain if a not in found]


def check_not_reserved(path: str, field: str = "path") -> None:
    if path == RESERVED or path.startswith(RESERVED + "/"):
        raise InvalidInput(
            f"{field}: the top-level name `_` is reserved (the HTTP API's actions live at .../fs/_/)",
            field=field,
        )


def _refuse_readonly(entry: Any, doing: str, field: str = "path") -> None:
    if entry is not None and entry.is_readonly:
        raise Conflict(f"{field}: {entry.path} is read-only: it cannot be {doing}", field=field)


async def _readonly_inside(db: AsyncSession, session_id: uuid.UUID, path: str) -> str | None:
    """The first read-only entry at or under `path`, if any."""
    query = (
        select(SessionFile.path)
        .where(
            SessionFile.session_id == session_id,
            or_(SessionFile.path == path, _below(path)),
            SessionFile.is_readonly,
        )
        .order_by(SessionFile.path)
        .limit(1)
    )
    return (await db.execute(query)).scalar_one_or_none()


async def _make_directories(db: AsyncSession, session_id: uuid.UUID, paths: list[str]) -> None:
    if paths:
        rows = [
            {"session_id": session_id, "path": p, "parent": parent_of(p), "kind": DIRECTORY, "size": 0}
            for p in paths
        ]
        await db.execute(insert(SessionFile).values(rows).on_conflict_do_nothing())


async def write(
    db: AsyncSession,
    session_id: uuid.UUID,
    path: str,
    content: bytes,
    *,
    readonly: bool | None = None,
    exclusive: bool = False,
) -> tuple[FileEntry, bool]:
    """Creates or replaces a file (and the directories above it); returns it and whether it is new.
    Writing the same content again changes nothing but `updated_at`, so a retry is harmless.
    `readonly` marks it (None: a new file is writable, a replaced one keeps its mark; a read-only
    file is never replaced). `exclusive`: only a new file, Conflict if anything is there."""
    path = normalize(path)
    if path == ROOT:
        raise Conflict("/ is a directory, not a file")
    check_not_reserved(path)
    if len(content) > MAX_FILE_BYTES:
        raise TooLarge(f"{path}: {len(content)} bytes is over the limit of {MAX_FILE_BYTES} bytes a file")
    await _lock(db, session_id)
    existing = (await _kinds(db, session_id, [path])).get(path)
    if existing is not None and exclusive:
        raise Conflict(f"{path} already exists")
    missing = await _parents_for(db, session_id, path, adding=existing is None)
    if existing is not None and existing.kind == DIRECTORY:
        raise Conflict(f"{path} is a directory, not a file")
    _refuse_readonly(existing, "changed (take its read-only mark off first)")
    await _check_room(
        db,
        session_id,
        add_bytes=len(content) - (existing.size if existing else 0),
        add_entries=len(missing) + (0 if existing else 1),
    )
    await _make_directories(db, session_id, missing)
    values = {
        "session_id": session_id,
        "path": path,
        "parent": parent_of(path),
        "kind": FILE,
        "content": content,
        "size": len(content),
        "is_readonly": bool(readonly),
    }
    upsert = insert(SessionFile).values(values)
    replaced: dict[str, Any] = {
        "content": upsert.excluded.content,
        "size": upsert.excluded.size,
        "updated_at": func.now(),
    }
    if readonly is not None:
        replaced["is_readonly"] = upsert.excluded.is_readonly
    statement = upsert.on_conflict_do_update(
        index_elements=[SessionFile.session_id, SessionFile.path], set_=replaced
    ).returning(*_ENTRY_COLUMNS)
    row = (await db.execute(statement)).one()
    await db.commit()
    return _entry(row), existing is None


async def make_directory(
    db: AsyncSession, session_id: uuid.UUID, path: str, *, readonly: bool | None = None
) -> tuple[FileEntry, bool]:
    """`mkdir -p`: the directory and those above it; an existing directory is fine (not a file),
    and stays as it is. `readonly` marks a new one."""
    path = normalize(path)
    if path == ROOT:
        return await stat(db, session_id, ROOT), False
    check_not_reserved(path)
    await _lock(db, session_id)
    existing = (await _kinds(db, session_id, [path])).get(path)
    missing = await _parents_for(db, session_id, path, adding=existing is None)
    if existing is not None and existing.kind == FILE:
        raise Conflict(f"{path} is a file, not a directory")
    if existing is None:
        missing.append(path)
    await _check_room(db, session_id, add_bytes=0, add_entries=len(missing))
    await _make_directories(db, session_id, missing)
    if existing is None and readonly:
        await db.execute(
            update(SessionFile)
            .where(SessionFile.session_id == session_id, SessionFile.path == path)
            .values(is_readonly=True)
        )
    await db.commit()
    return await stat(db, session_id, path), existing is None


async def set_readonly(db: AsyncSession, session_id: uuid.UUID, path: str, readonly: bool) -> FileEntry:
    """Puts a read-only mark on a file or directory, or takes it off (the content stays)."""
    path = normalize(path)
    if path == ROOT:
        raise InvalidInput("the root directory cannot be marked read-only", field="path")
    await _lock(db, session_id)
    found = await db.execute(
        update(SessionFile)
        .where(SessionFile.session_id == session_id, SessionFile.path == path)
        .values(is_readonly=readonly, updated_at=func.now())
        .returning(SessionFile.path)
    )
    if found.first() is None:
        raise NotFound(f"no such file or directory: {path}")
    await db.commit()
    return await stat(db, session_id, path)


async def delete_path(
    db: AsyncSession, session_id: uuid.UUID, path: str, *, recursive: bool = False, missing_ok: bool = False
) -> int:
    """Removes a file or a directory; a directory with entries only if `recursive`. Returns how many
    entries went. Nothing at `path` is NotFound, or 0 with `missing_ok` (`rm -f`: a retry is harmless)."""
    path = normalize(path)
    if path == ROOT:
        raise InvalidInput("the root directory cannot be deleted", field="path")
    await _lock(db, session_id)
    existing = (await _kinds(db, session_id, [path])).get(path)
    if existing is None:
        if missing_ok:
            return 0
        raise NotFound(f"no such file or directory: {path}")
    _refuse_readonly(existing, "deleted (take its read-only mark off first)")
    if existing.kind == DIRECTORY and not recursive:
        inside = await _children(db, session_id, path)
        if inside:
            raise Conflict(f"{path} is a directory with {inside} entries: delete it recursively")
    if existing.kind == DIRECTORY and (locked := await _readonly_inside(db, session_id, path)):
        raise Conflict(f"{locked} is read-only, so {path} cannot be deleted", field="path")
    result = await db.execute(
        delete(SessionFile)
        .where(SessionFile.session_id == session_id, or_(SessionFile.path == path, _below(path)))
        .returning(SessionFile.path)
    )
    removed = len(result.all())
    await db.commit()
    return removed


async def _prepare_target(
    db: AsyncSession,
    session_id: uuid.UUID,
    source: Any,
    src: str,
    dst: str,
    overwrite: bool,
    field: str,
) -> tuple[list[str], Any]:
    """Checks a move's or copy's destination (under the lock): the directories to make above it and
    the file it replaces, if any."""
    if dst in (ROOT, src):
        raise Conflict(f"{field}: {dst} already exists", field=field)
    if dst.startswith(src + "/"):
        raise InvalidInput(f"{field}: {src} cannot go inside itself ({dst})", field=field)
    target = (await _kinds(db, session_id, [dst])).get(dst)
    missing = await _parents_for(db, session_id, dst, field=field, adding=target is None)
    if target is not None:
        if not overwrite:
            raise Conflict(f"{field}: {dst} already exists; send overwrite: true to replace it", field=field)
        if target.kind == DIRECTORY or source.kind == DIRECTORY:
            raise Conflict(f"{field}: {dst} exists, and only a file can replace a file", field=field)
        _refuse_readonly(target, "replaced", field)
    return missing, target


async def _source(
    db: AsyncSession, session_id: uuid.UUID, src: str, dst: str, field: str, dst_field: str
) -> Any:
    if src == ROOT:
        raise InvalidInput(f"{field}: the root directory cannot be moved or copied", field=field)
    check_not_reserved(dst, dst_field)
    found = await _kinds(db, session_id, [src, dst])
    if src not in found:
        hint = f" ({dst} exists: an earlier attempt may already have moved it)" if dst in found else ""
        raise NotFound(f"no such file or directory: {src}{hint}")
    return found[src]


async def move(
    db: AsyncSession,
    session_id: uuid.UUID,
    path: str,
    to: str,
    *,
    overwrite: bool = False,
    fields: tuple[str, str] = ("path", "to"),
) -> FileEntry:
    """Renames a file or a directory with everything in it (one UPDATE). Timestamps and ids are
    kept. `fields` name the source and destination in errors."""
    src, dst = normalize(path, fields[0]), normalize(to, field=fields[1])
    await _lock(db, session_id)
    source = await _source(db, session_id, src, dst, *fields)
    if locked := await _readonly_inside(db, session_id, src):
        raise Conflict(f"{fields[0]}: {locked} is read-only, so {src} cannot be moved", field=fields[0])
    missing, target = await _prepare_target(db, session_id, source, src, dst, overwrite, fields[1])
    await _check_room(db, session_id, add_bytes=0, add_entries=len(missing) - (1 if target else 0))
    if target is not None:
        await db.execute(
            delete(SessionFile).where(SessionFile.session_id == session_id, SessionFile.path == dst)
        )
    await _make_directories(db, session_id, missing)
    await db.execute(
        update(SessionFile)
        .where(SessionFile.session_id == session_id, or_(SessionFile.path == src, _below(src)))
        .values(
            path=_rebased(SessionFile.path, src, dst),
            # The moved entry gets its new parent; those under it keep theirs, rebased.
            parent=case(
                (SessionFile.path == src, literal(parent_of(dst))),
                else_=_rebased(SessionFile.parent, src, dst),
            ),
        )
        .execution_options(synchronize_session=False)
    )
    await db.commit()
    return await stat(db, session_id, dst)


async def copy(
    db: AsyncSession,
    session_id: uuid.UUID,
    path: str,
    to: str,
    *,
    overwrite: bool = False,
    fields: tuple[str, str] = ("path", "to"),
) -> FileEntry:
    """Copies a file, or a directory with everything in it (one INSERT ... SELECT); the copies get
    new ids and no read-only mark."""
    src, dst = normalize(path, fields[0]), normalize(to, field=fields[1])
    await _lock(db, session_id)
    source = await _source(db, session_id, src, dst, *fields)
    missing, target = await _prepare_target(db, session_id, source, src, dst, overwrite, fields[1])
    subtree = and_(SessionFile.session_id == session_id, or_(SessionFile.path == src, _below(src)))
    size, count = (
        await db.execute(select(func.coalesce(func.sum(SessionFile.size), 0), func.count()).where(subtree))
    ).one()
    await _check_room(
        db,
        session_id,
        add_bytes=int(size) - (target.size if target else 0),
        add_entries=int(count) + len(missing) - (1 if target else 0),
    )
    if target is not None:
        await db.execute(
            delete(SessionFile).where(SessionFile.session_id == session_id, SessionFile.path == dst)
        )
    await _make_directories(db, session_id, missing)
    copied = select(
        SessionFile.session_id,
        _rebased(SessionFile.path, src, dst),
        case(
            (SessionFile.path == src, literal(parent_of(dst))),
            else_=_rebased(SessionFile.parent, src, dst),
        ),
        SessionFile.kind,
        SessionFile.content,
        SessionFile.size,
    ).where(subtree)
    columns = ["session_id", "path", "parent", "kind", "content", "size"]
    await db.execute(insert(SessionFile).from_select(columns, copied))
    await db.commit()
    return await stat(db, session_id, dst)


# Searching


def glob_matcher(glob: str) -> Any:
    """A glob as a regular expression. Without a `/` it matches a file's name (`*.py`); with one, the
    path relative to the searched directory (`src/**/*.py`): `*` and `?` stay within one name, `**`
    crosses directories, `[...]` is a character class."""
    if len(glob) > GREP_MAX_GLOB_CHARS or _CONTROL.search(glob):
        raise InvalidInput(f"glob: at most {GREP_MAX_GLOB_CHARS} printable characters", field="glob")
    if "/" not in glob:
        return regex.compile(fnmatch.translate(glob))
    out: list[str] = []
    glob = re.sub(r"\*{3,}", "**", glob.lstrip("/"))
    i, n = 0, len(glob)
    while i < n:
        char = glob[i]
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif char == "*":
            out.append("[^/]*")
            i += 1
        elif char == "?":
            out.append("[^/]")
            i += 1
        elif char == "[" and (end := glob.find("]", i + 2)) != -1:
            inner = glob[i + 1 : end]
            inner = "^" + inner[1:] if inner.startswith("!") else inner
            out.append("[" + inner.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(char))
            i += 1
    try:
        return regex.compile("(?s:" + "".join(out) + r")\Z")
    except (regex.error, OverflowError, RecursionError) as exc:
        raise InvalidInput(f"glob: {exc}", field="glob") from None


def _compile(pattern: str, ignore_case: bool) -> Any:
    if not pattern or len(pattern) > GREP_MAX_PATTERN_CHARS:
        raise InvalidInput(f"pattern: 1 to {GREP_MAX_PATTERN_CHARS} characters", field="pattern")
    try:
        return regex.compile(pattern, regex.IGNORECASE if ignore_case else 0)
    except (regex.error, OverflowError, RecursionError) as exc:
        raise InvalidInput(f"pattern: not a valid regular expression: {exc}", field="pattern") from None


class _Timeout(Exception):
    pass


def _scan(
    compiled: Any, files: list[tuple[str, bytes]], deadline: float, room: int
) -> tuple[list[GrepMatch], int, int, bool]:
    """Matches line by line (in a worker thread; the regex releases the GIL). Returns the matches
    (at most `room`), files searched, binary files skipped, and whether there were more."""
    matches: list[GrepMatch] = []
    searched = skipped = 0
    for path, content in files:
        try:
            body = content.decode("utf-8")
        except UnicodeDecodeError:
            skipped += 1
            continue
        searched += 1
        for number, line in enumerate(body.splitlines(), start=1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Timeout
            try:
                found = compiled.search(line, timeout=remaining, concurrent=True)
            except TimeoutError:
                raise _Timeout from None
            if found is not None:
                if len(matches) == room:
                    return matches, searched, skipped, True
                matches.append(GrepMatch(path=path, line=number, text=line[:GREP_LINE_CHARS]))
    return matches, searched, skipped, False


async def grep(
    db: AsyncSession,
    session_id: uuid.UUID,
    pattern: str,
    *,
    path: str = ROOT,
    glob: str | None = None,
    path_contains: str | None = None,
    ignore_case: bool = False,
    max_matches: int = 100,
) -> GrepResult:
    """Lines of the files at or under `path` (a file or a directory) that match a regular expression
    (the `regex` module's syntax), files in path order. At most GREP_TIMEOUT_S seconds in all.
    `glob` and `path_contains` (a part of the absolute path) choose the files searched."""
    path = normalize(path)
    compiled = _compile(pattern, ignore_case)
    matcher = glob_matcher(glob) if glob else None
    max_matches = max(1, min(max_matches, GREP_MAX_MATCHES))
    if path != ROOT and await _row(db, session_id, path) is None:
        raise NotFound(f"no such file or directory: {path}")
    listed = await db.execute(
        select(SessionFile.path, SessionFile.size)
        .where(
            SessionFile.session_id == session_id,
            SessionFile.kind == FILE,
            or_(SessionFile.path == path, _below(path)),
        )
        .order_by(SessionFile.path)
    )
    prefix = "" if path == ROOT else path
    wanted: list[tuple[str, int]] = []
    glob_deadline = time.monotonic() + GLOB_TIMEOUT_S
    for name, size in listed.all():
        if path_contains is not None and path_contains not in name:
            continue
        if matcher is not None:
            subject = name_of(name) if "/" not in (glob or "") else name[len(prefix) + 1 :]
            try:
                left = glob_deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                matched = matcher.match(subject, timeout=left)
            except TimeoutError:
                raise InvalidInput(
                    f"glob: matching took over {GLOB_TIMEOUT_S:g} s; use fewer wildcards", field="glob"
                ) from None
            if not matched:
                continue
        wanted.append((name, size))
    deadline = time.monotonic() + GREP_TIMEOUT_S
    matches: list[GrepMatch] = []
    searched = skipped = 0
    truncated = False
    for batch in _batches(wanted):
        found = await db.execute(
            select(SessionFile.path, SessionFile.content)
            .where(SessionFile.session_id == session_id, SessionFile.path.in_(batch))
            .order_by(SessionFile.path)
        )
        files = [(p, bytes(c)) for p, c in found.all() if c is not None]
        try:
            more, n, s, truncated = await asyncio.to_thread(
                _scan, compiled, files, deadline, max_matches - len(matches)
            )
        except _Timeout:
            raise InvalidInput(
                f"pattern: the search took over {GREP_TIMEOUT_S:g} s; use a simpler pattern (one that "
                "does not backtrack heavily) or search fewer files",
                field="pattern",
            ) from None
        matches += more
        searched += n
        skipped += s
        if truncated:
            break
    return GrepResult(
        pattern=pattern,
        path=path,
        glob=glob,
        matches=matches,
        files_searched=searched,
        binary_files_skipped=skipped,
        truncated=truncated,
    )


def _batches(files: list[tuple[str, int]]) -> list[list[str]]:
    out: list[list[str]] = [[]]
    total = 0
    for name, size in files:
        if out[-1] and total + size > _GREP_BATCH_BYTES:
            out.append([])
            total = 0
        out[-1].append(name)
        total += size
    return [b for b in out if b]
