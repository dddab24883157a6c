"""Session files in Everruns' JSON contract (issue 12), as its web UI (`apps/ui/src/lib/api/
session-files.ts`) and its SDK (`FileInfo`, `SessionFile`, `FileStat`, `GrepResult`,
`DeleteFileResponse`) use it, on both route families: `/v1/agents/{a}/sessions/{s}/fs` and
`/v1/sessions/{s}/fs`. Every answer is checked against the SDK's own pydantic models. The v0.2
request forms are tests/api/test_files.py."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from everruns_sdk.models import DeleteFileResponse, FileInfo, FileStat, GrepResult
from everruns_sdk.models import SessionFile as SdkSessionFile
from sqlalchemy import select

from capabilities import session_file_system as fs_tools
from capabilities.base import ToolContext, ToolError
from core.db import Database
from core.db.models import SessionFile
from core.settings import Settings
from tests import factories
from tests.apps import app_for
from tests.factories import Client
from tests.servers import running

BINARY = bytes(range(256)) + b"\xff\xfe\x00 not UTF-8"
NESTED = "nested"
FLAT = "flat"


@pytest.fixture
async def served(settings: Settings, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a real server, whose requests really run at the same time."""
    with running(app_for(settings, configure_logs=False)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            yield client


async def _tree(client: Client, family: str = NESTED) -> str:
    agent = await factories.agent(client)
    session = await factories.session(client, agent["id"])
    if family == FLAT:
        return f"/v1/sessions/{session['id']}/fs"
    return f"/v1/agents/{agent['id']}/sessions/{session['id']}/fs"


def _session_id(fs: str) -> str:
    return fs.removesuffix("/fs").rsplit("/", 1)[1]


def _file(response: httpx.Response, status: int = 200) -> SdkSessionFile:
    assert response.status_code == status, response.text
    return SdkSessionFile.model_validate(response.json())


def _listing(response: httpx.Response) -> list[FileInfo]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"data"}
    return [FileInfo.model_validate(item) for item in body["data"]]


def _error(response: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert all(w in body["error"] for w in words), body
    return body


@pytest.mark.parametrize("family", [NESTED, FLAT])
async def test_text_and_binary_round_trips(client: Client, family: str) -> None:
    fs = await _tree(client, family)
    made = _file(await client.post(f"{fs}/notes/plan.md", json={"content": "# Plan\nstep one\n"}), 201)
    assert (made.path, made.name, made.encoding, made.content) == (
        "/notes/plan.md",
        "plan.md",
        "text",
        "# Plan\nstep one\n",
    )
    assert made.size_bytes == 16 and made.is_directory is False and made.is_readonly is False
    assert made.session_id == _session_id(fs) and uuid.UUID(made.id)

    read = _file(await client.get(f"{fs}/notes/plan.md"))
    assert read.model_dump() == made.model_dump()

    # Bytes that are not UTF-8 travel as base64, both ways, and come back exactly.
    encoded = base64.b64encode(BINARY).decode()
    blob = _file(await client.post(f"{fs}/blob.bin", json={"content": encoded, "encoding": "base64"}), 201)
    assert blob.encoding == "base64" and blob.size_bytes == len(BINARY)
    again = _file(await client.get(f"{fs}/blob.bin"))
    assert again.encoding == "base64" and base64.b64decode(again.content or "") == BINARY
    # UTF-8 sent as base64 is UTF-8: it reads back as text.
    utf8 = "héllo ✓".encode()
    sent = await client.post(
        f"{fs}/u.txt", json={"content": base64.b64encode(utf8).decode(), "encoding": "base64"}
    )
    assert _file(sent, 201).encoding == "text" and _file(await client.get(f"{fs}/u.txt")).content == "héllo ✓"

    # An update: the SessionFile again, same id, new content.
    updated = _file(await client.put(f"{fs}/notes/plan.md", json={"content": "done", "encoding": "text"}))
    assert updated.id == made.id and updated.content == "done" and updated.size_bytes == 4
    assert updated.created_at == made.created_at
    # PUT is create-or-replace: a new path answers 201.
    assert _file(await client.put(f"{fs}/new/one.txt", json={"content": "1"}), 201).content == "1"
    binary_update = await client.put(
        f"{fs}/blob.bin", json={"content": base64.b64encode(b"\x00\xff").decode(), "encoding": "base64"}
    )
    assert _file(binary_update).content == base64.b64encode(b"\x00\xff").decode()


@pytest.mark.parametrize("family", [NESTED, FLAT])
async def test_listings_stat_and_delete(client: Client, family: str) -> None:
    fs = await _tree(client, family)
    for path in ("b.txt", "a/x.txt", "a/deep/y.txt", "c/z.txt"):
        await client.post(f"{fs}/{path}", json={"content": path})
    directory = _file(await client.post(f"{fs}/empty", json={"is_directory": True}), 201)
    assert directory.is_directory is True and directory.content is None and directory.size_bytes == 0
    # mkdir -p of a directory that is there: fine, 200.
    assert _file(await client.post(f"{fs}/empty", json={"is_directory": True})).id == directory.id

    root = _listing(await client.get(fs))
    assert [(f.name, f.is_directory) for f in root] == [
        ("a", True),
        ("c", True),
        ("empty", True),
        ("b.txt", False),
    ]
    assert all(f.session_id == _session_id(fs) for f in root)
    assert _listing(await client.get(f"{fs}/")) == root
    assert [f.path for f in _listing(await client.get(f"{fs}/a"))] == ["/a/deep", "/a/x.txt"]
    everything = _listing(await client.get(f"{fs}/a", params={"recursive": "true"}))
    assert [f.path for f in everything] == ["/a/deep", "/a/deep/y.txt", "/a/x.txt"]
    assert len(_listing(await client.get(fs, params={"recursive": "true"}))) == 8

    stat = await client.post(f"{fs}/_/stat", json={"path": "/a/x.txt"})
    assert stat.status_code == 200, stat.text
    found = FileStat.model_validate(stat.json())
    assert (found.name, found.size_bytes, found.is_directory) == ("x.txt", 7, False)
    folder = FileStat.model_validate((await client.post(f"{fs}/_/stat", json={"path": "a"})).json())
    assert folder.is_directory is True and folder.path == "/a"
    top = FileStat.model_validate((await client.post(f"{fs}/_/stat", json={"path": "/"})).json())
    assert top.is_directory is True and top.name == "/" and top.created_at
    _error(await client.post(f"{fs}/_/stat", json={"path": "/nothing"}), 404, "/nothing")

    deleted = await client.delete(f"{fs}/b.txt")
    assert deleted.status_code == 200 and DeleteFileResponse.model_validate(deleted.json()).deleted is True
    _error(await client.delete(f"{fs}/b.txt"), 404)
    _error(await client.delete(f"{fs}/a"), 409, "recursive")
    assert (await client.delete(f"{fs}/a", params={"recursive": "true"})).json() == {"deleted": True}
    assert [f.name for f in _listing(await client.get(fs))] == ["c", "empty"]
    _error(await client.get(f"{fs}/a/x.txt"), 404)


@pytest.mark.parametrize("family", [NESTED, FLAT])
async def test_move_copy_and_grep(client: Client, family: str) -> None:
    fs = await _tree(client, family)
    await client.post(f"{fs}/docs/a.md", json={"content": "Alpha\nbeta TODO\ngamma\n"})
    await client.post(f"{fs}/docs/deep/b.md", json={"content": "todo: later\nTODO again\n"})
    await client.post(f"{fs}/code/c.py", json={"content": "# TODO fix\n"})
    await client.post(
        f"{fs}/bin.dat", json={"content": base64.b64encode(b"\xff TODO").decode(), "encoding": "base64"}
    )
    before = _file(await client.get(f"{fs}/docs/a.md"))

    moved = _file(
        await client.post(f"{fs}/_/move", json={"src_path": "/docs/a.md", "dst_path": "/archive/a.md"})
    )
    assert moved.path == "/archive/a.md" and moved.content == before.content and moved.id == before.id
    _error(await client.get(f"{fs}/docs/a.md"), 404)
    copied = _file(
        await client.post(f"{fs}/_/copy", json={"src_path": "archive/a.md", "dst_path": "/a-copy.md"}), 201
    )
    assert copied.content == before.content and copied.id != before.id
    # A directory goes with everything in it (Everruns copies files only; this is more).
    tree = _file(await client.post(f"{fs}/_/copy", json={"src_path": "/docs", "dst_path": "/docs2"}), 201)
    assert tree.is_directory and tree.content is None
    assert _file(await client.get(f"{fs}/docs2/deep/b.md")).content == "todo: later\nTODO again\n"
    conflict = _error(
        await client.post(f"{fs}/_/move", json={"src_path": "/a-copy.md", "dst_path": "/archive/a.md"}), 409
    )
    assert conflict["field"] == "dst_path"
    _error(await client.post(f"{fs}/_/copy", json={"src_path": "/none", "dst_path": "/x"}), 404, "/none")
    escape = _error(
        await client.post(f"{fs}/_/move", json={"src_path": "/a-copy.md", "dst_path": "../../x"}), 400
    )
    assert escape["field"] == "dst_path"

    grep = await client.post(f"{fs}/_/grep", json={"pattern": "TODO"})
    assert grep.status_code == 200, grep.text
    assert grep.json()["truncated"] is False
    results = [GrepResult.model_validate(r) for r in grep.json()["data"]]
    assert [(r.path, [(m.line_number, m.line) for m in r.matches]) for r in results] == [
        ("/a-copy.md", [(2, "beta TODO")]),
        ("/archive/a.md", [(2, "beta TODO")]),
        ("/code/c.py", [(1, "# TODO fix")]),
        ("/docs/deep/b.md", [(2, "TODO again")]),
        ("/docs2/deep/b.md", [(2, "TODO again")]),
    ]
    assert all(m.path == r.path for r in results for m in r.matches)

    async def paths(path_pattern: str) -> list[str]:
        found = await client.post(f"{fs}/_/grep", json={"pattern": "(?i)todo", "path_pattern": path_pattern})
        assert found.status_code == 200, found.text
        return [r["path"] for r in found.json()["data"]]

    # A glob without `/` matches names at any depth; with one, the path from the root; no
    # wildcard at all is a part of the path (as Everruns' GrepPathPattern has it).
    assert await paths("*.py") == ["/code/c.py"]
    assert await paths("docs/**/*.md") == ["/docs/deep/b.md"]
    assert await paths("/docs2/*/*.md") == ["/docs2/deep/b.md"]
    assert await paths("deep/") == ["/docs/deep/b.md", "/docs2/deep/b.md"]
    assert await paths("") == await paths("/")
    _error(await client.post(f"{fs}/_/grep", json={"pattern": "(unclosed"}), 400, "pattern")
    _error(await client.post(f"{fs}/_/grep", json={"pattern": ""}), 400)


async def test_a_json_put_is_never_stored_as_the_file(client: Client) -> None:
    """Before issue 12, PUT stored any body as it was: a client's `{content, encoding}` became the
    file. Now a JSON Content-Type is always the contract, whatever the body holds."""
    fs = await _tree(client)
    put = await client.put(f"{fs}/note.txt", json={"content": "just this"})
    assert _file(put, 201).content == "just this"
    raw = await client.get(f"{fs}/note.txt", params={"raw": "true"})
    assert raw.content == b"just this"
    # JSON that is not the contract is refused, not stored.
    _error(await client.put(f"{fs}/data.json", json={"a": 1}), 400, "a")
    _error(await client.put(f"{fs}/data.json", json=[1, 2]), 400)
    _error(await client.get(f"{fs}/data.json"), 404)
    # A `+json` type is JSON too.
    ld = await client.put(
        f"{fs}/ld.txt", content=b'{"content": "x"}', headers={"Content-Type": "application/ld+json"}
    )
    assert _file(ld, 201).content == "x"


async def test_raw_download_and_upload(client: Client) -> None:
    fs = await _tree(client)
    # Upload: any Content-Type but JSON is the bytes themselves (curl -T, --data-binary).
    for headers in ({}, {"Content-Type": "application/octet-stream"}, {"Content-Type": "text/plain"}):
        up = await client.put(f"{fs}/up.bin", content=BINARY, headers=headers)
        assert up.status_code in (200, 201) and up.json()["size"] == len(BINARY), up.text
    # A JSON file uploaded as JSON: `?raw=true` says the body is the content.
    document = b'{"content": "not the contract", "encoding": "text"}'
    kept = await client.put(
        f"{fs}/doc.json",
        params={"raw": "true"},
        content=document,
        headers={"Content-Type": "application/json"},
    )
    assert kept.status_code == 201 and kept.json()["size"] == len(document)
    assert _file(await client.get(f"{fs}/doc.json")).content == document.decode()

    # Download: Everruns' `_/download/{path}`, as an attachment ...
    download = await client.get(f"{fs}/_/download/up.bin")
    assert download.status_code == 200 and download.content == BINARY
    assert download.headers["content-type"] == "application/octet-stream"
    assert (
        download.headers["content-disposition"] == "attachment; filename=\"up.bin\"; filename*=UTF-8''up.bin"
    )
    assert download.headers["x-content-type-options"] == "nosniff"
    # ... its Accept rule, and `?raw=true`; a browser's `*/*` still gets JSON.
    wanted = await client.get(f"{fs}/up.bin", headers={"Accept": "application/octet-stream"})
    assert wanted.content == BINARY
    assert (await client.get(f"{fs}/doc.json", params={"raw": "true"})).content == document
    as_json = await client.get(f"{fs}/doc.json", headers={"Accept": "application/json, text/plain, */*"})
    assert _file(as_json).content == document.decode()
    # A file named in Unicode, and HTML (never rendered as a page of this origin).
    await client.put(f"{fs}/rés umé.html", content=b"<script>alert(1)</script>")
    page = await client.get(f"{fs}/_/download/rés umé.html")
    assert page.headers["content-disposition"].endswith("filename*=UTF-8''r%C3%A9s%20um%C3%A9.html")
    assert "sandbox" in page.headers["content-security-policy"]
    _error(await client.get(f"{fs}/_/download/nothing"), 404)
    await client.post(f"{fs}/dir", json={"is_directory": True})
    _error(await client.get(f"{fs}/_/download/dir"), 409, "directory")
    _error(await client.get(f"{fs}/dir", params={"raw": "true"}), 409, "directory")


async def test_malformed_bodies_are_400(client: Client) -> None:
    fs = await _tree(client)
    post, put = f"{fs}/f.txt", f"{fs}/g.txt"
    cases: list[tuple[str, str, Any, str]] = [
        ("POST", post, {"content": "x", "encoding": "utf-16"}, "encoding"),
        ("PUT", put, {"content": "x", "encoding": "hex"}, "encoding"),
        ("POST", post, {"content": "!!not base64!!", "encoding": "base64"}, "content"),
        ("PUT", put, {"content": "QUJ", "encoding": "base64"}, "content"),
        ("POST", post, {"content": "x", "is_directory": True}, "is_directory"),
        ("POST", post, {"encoding": "text", "is_directory": True}, "is_directory"),
        ("POST", post, {"content": 5}, "content"),
        ("POST", post, {"path": "/f.txt", "content": "x"}, "path"),
        ("PUT", put, {"content": "x", "mode": 644}, "mode"),
        ("PUT", put, {}, "content"),
        ("PUT", put, {"encoding": "base64"}, "content"),
        ("POST", f"{fs}/_/move", {"src_path": "/a"}, "dst_path"),
        ("POST", f"{fs}/_/copy", {"src_path": "/a", "dst_path": "/b", "overwrite": True}, "overwrite"),
        ("POST", f"{fs}/_/grep", {"pattern": "x", "glob": "*"}, "glob"),
        ("POST", f"{fs}/_/stat", {}, "path"),
    ]
    for method, url, body, field in cases:
        response = await client.request(method, url, json=body)
        assert response.status_code == 400, (method, url, body, response.text)
        assert field in response.json()["error"], (body, response.json())
    for method, url in (("POST", post), ("PUT", put)):
        broken = await client.request(
            method, url, content=b'{"content": ', headers={"Content-Type": "application/json"}
        )
        _error(broken, 400, "not valid JSON")
        _error(await client.request(method, url, headers={"Content-Type": "application/json"}), 400, "empty")
    _error(await client.post(post, content=b"plain words"), 400, "JSON")
    # Nothing of the above was stored.
    assert _listing(await client.get(fs)) == []


async def test_create_conflicts_and_read_only_files(client: Client, db: Database) -> None:
    fs = await _tree(client)
    _file(await client.post(f"{fs}/a.txt", json={"content": "A"}), 201)
    _error(await client.post(f"{fs}/a.txt", json={"content": "again"}), 409, "already exists")
    _error(await client.post(f"{fs}/a.txt", json={"is_directory": True}), 409, "not a directory")
    _error(await client.post(f"{fs}/a.txt/b.txt", json={"content": "x"}), 409, "/a.txt is a file")
    _error(await client.put(f"{fs}/a.txt/b.txt", json={"content": "x"}), 409, "/a.txt is a file")
    await client.post(f"{fs}/d", json={"is_directory": True})
    _error(await client.put(f"{fs}/d", json={"content": "x"}), 409, "is a directory")
    _error(await client.get(f"{fs}/nothing"), 404)

    locked = _file(await client.post(f"{fs}/locked.txt", json={"content": "keep", "is_readonly": True}), 201)
    assert locked.is_readonly is True
    info = {f.name: f for f in _listing(await client.get(fs))}
    assert info["locked.txt"].is_readonly is True and info["a.txt"].is_readonly is False
    _error(await client.put(f"{fs}/locked.txt", json={"content": "changed"}), 409, "read-only")
    _error(await client.put(f"{fs}/locked.txt", content=b"raw change"), 409, "read-only")
    _error(await client.delete(f"{fs}/locked.txt"), 409, "read-only")
    _error(
        await client.post(f"{fs}/_/move", json={"src_path": "/locked.txt", "dst_path": "/m.txt"}),
        409,
        "read-only",
    )
    _error(await client.post(f"{fs}/_/copy", json={"src_path": "/a.txt", "dst_path": "/locked.txt"}), 409)
    copy = _file(
        await client.post(f"{fs}/_/copy", json={"src_path": "/locked.txt", "dst_path": "/mine.txt"}), 201
    )
    assert copy.is_readonly is False and copy.content == "keep"
    # The model's tools meet the same mark.
    ctx = ToolContext(session_id=uuid.UUID(_session_id(fs)), agent_id=uuid.uuid4(), db=db)
    with pytest.raises(ToolError, match="read-only"):
        await fs_tools.write_file(fs_tools.WriteFile(path="/locked.txt", content="model"), ctx)
    stat = await fs_tools.stat_file(fs_tools.StatFile(path="/locked.txt"), ctx)
    assert stat["readonly"] is True
    # A directory holding a read-only file goes only when the mark is off.
    await client.post(f"{fs}/_/move", json={"src_path": "/mine.txt", "dst_path": "/box/mine.txt"})
    await client.put(f"{fs}/box/mine.txt", json={"is_readonly": True})
    _error(await client.delete(f"{fs}/box", params={"recursive": "true"}), 409, "/box/mine.txt is read-only")

    # `{is_readonly}` alone changes only the mark; then the file is writable again.
    unlocked = _file(await client.put(f"{fs}/locked.txt", json={"is_readonly": False}))
    assert unlocked.is_readonly is False and unlocked.content == "keep"
    assert _file(await client.put(f"{fs}/locked.txt", json={"content": "changed"})).content == "changed"
    _error(await client.put(f"{fs}/ghost.txt", json={"is_readonly": True}), 404)
    # A read-only directory takes nothing new.
    _file(await client.post(f"{fs}/shelf", json={"is_directory": True, "is_readonly": True}), 201)
    _error(await client.post(f"{fs}/shelf/new.txt", json={"content": "x"}), 409, "/shelf is read-only")
    _error(await client.delete(f"{fs}/shelf"), 409, "read-only")
    assert (await client.put(f"{fs}/shelf", json={"is_readonly": False})).status_code == 200
    assert (await client.post(f"{fs}/shelf/new.txt", json={"content": "x"})).status_code == 201


async def test_the_name_underscore_is_reserved_for_actions(client: Client, db: Database) -> None:
    """`.../fs/_/...` are the actions; a file at `/_` would make them ambiguous, so none can be
    made, by any route or tool."""
    fs = await _tree(client)
    await client.post(f"{fs}/a.txt", json={"content": "A"})
    for dst in ("/_", "/_/move", "_/download/x"):
        refused = await client.post(f"{fs}/_/copy", json={"src_path": "/a.txt", "dst_path": dst})
        assert _error(refused, 400, "reserved")["field"] == "dst_path"
    _error(await client.post(f"{fs}/_/move", json={"src_path": "/a.txt", "dst_path": "/_"}), 400, "reserved")
    # A request path that only becomes `/_` once normalised reaches the create route, which refuses.
    request = client.build_request("POST", f"{fs}/x", json={"content": "x"})
    raw_path = f"{fs}/x/../_".encode()
    request.url._uri_reference = request.url._uri_reference._replace(path=raw_path.decode())
    _error(await client.send(request), 400, "reserved")
    ctx = ToolContext(session_id=uuid.UUID(_session_id(fs)), agent_id=uuid.uuid4(), db=db)
    with pytest.raises(ToolError, match="reserved"):
        await fs_tools.write_file(fs_tools.WriteFile(path="/_/notes.md", content="x"), ctx)
    # Names that only begin with `_`, and `_` deeper down, are ordinary.
    assert (await client.post(f"{fs}/_drafts/a.md", json={"content": "x"})).status_code == 201
    assert (await client.post(f"{fs}/sub/_", json={"content": "x"})).status_code == 201
    assert _file(await client.get(f"{fs}/sub/_")).content == "x"
    async with db.session() as s:
        paths = (await s.execute(select(SessionFile.path))).scalars().all()
    assert not [p for p in paths if p == "/_" or p.startswith("/_/")]


async def test_flat_routes_check_the_owner_and_the_agent(client: Client) -> None:
    agent = await factories.agent(client)
    session = await factories.session(client, agent["id"])
    agent_id, fs = agent["id"], f"/v1/sessions/{session['id']}/fs"
    await client.post(f"{fs}/kept.txt", json={"content": "x"})
    _error(await client.get(f"/v1/sessions/{uuid.uuid4()}/fs"), 404)
    _error(await client.post(f"/v1/sessions/{uuid.uuid4()}/fs/_/stat", json={"path": "/"}), 404)
    # The flat twin reaches the same tree as the nested route; a wrong agent id finds nothing.
    nested = f"/v1/agents/{agent_id}/sessions/{session['id']}/fs"
    assert _file(await client.get(f"{nested}/kept.txt")).content == "x"
    other = await factories.agent(client, name="Other")
    _error(await client.get(f"/v1/agents/{other['id']}/sessions/{session['id']}/fs/kept.txt"), 404)
    # An archived agent's sessions are read-only, through either family.
    assert (await client.delete(f"/v1/agents/{agent_id}")).status_code == 204
    assert _file(await client.get(f"{fs}/kept.txt")).content == "x"
    _error(await client.post(f"{fs}/new.txt", json={"content": "x"}), 409)
    _error(await client.put(f"{fs}/kept.txt", json={"content": "y"}), 409)
    _error(await client.delete(f"{fs}/kept.txt"), 409)
    _error(await client.post(f"{fs}/_/copy", json={"src_path": "/kept.txt", "dst_path": "/k2"}), 409)


async def test_the_stored_rows_carry_the_contracts_fields(client: Client, db: Database) -> None:
    fs = await _tree(client)
    made = _file(await client.post(f"{fs}/x/y.txt", json={"content": "y", "is_readonly": True}), 201)
    async with db.session() as s:
        rows = {r.path: r for r in (await s.execute(select(SessionFile))).scalars()}
    assert str(rows["/x/y.txt"].id) == made.id and rows["/x/y.txt"].is_readonly is True
    assert rows["/x"].is_readonly is False and rows["/x"].id != rows["/x/y.txt"].id


async def test_duplicate_and_parallel_requests(served: Client) -> None:
    """A POST sent twice at once (a client's retry) makes the file once; the others are 409 and
    change nothing. A retried move finds its source gone and says where it went."""
    fs = await _tree(served, FLAT)
    bodies = [{"content": f"writer {i}"} for i in range(8)]
    answers = await asyncio.gather(*(served.post(f"{fs}/once.txt", json=b) for b in bodies))
    assert sorted(r.status_code for r in answers) == [201] + [409] * 7, [r.text for r in answers]
    winner = next(r for r in answers if r.status_code == 201).json()
    assert _file(await served.get(f"{fs}/once.txt")).content == winner["content"]
    # Directories made at once by many requests: all fine, one each.
    made = await asyncio.gather(*(served.post(f"{fs}/d/e", json={"is_directory": True}) for _ in range(6)))
    assert sorted(r.status_code for r in made) == [200] * 5 + [201]
    assert len({r.json()["id"] for r in made}) == 1

    move = {"src_path": "/once.txt", "dst_path": "/moved.txt"}
    assert (await served.post(f"{fs}/_/move", json=move)).status_code == 200
    _error(await served.post(f"{fs}/_/move", json=move), 404, "/moved.txt exists")
    assert _file(await served.get(f"{fs}/moved.txt")).content == winner["content"]
