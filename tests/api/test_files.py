"""A session's files over HTTP through the v0.2 request forms (a raw PUT, `?op=stat|grep`, `POST
?op=move|copy|mkdir`): every operation, the refused paths, limits, parallel writes and the cascade on
session delete. Everruns' JSON contract is tests/api/test_files_contract.py.

Issue 12 changed two answers these forms share with Everruns' clients (the clients win): a GET
answers JSON (a file as `SessionFile`, a directory as `{data: [FileInfo]}`; the bytes are at
`?raw=true`), and a DELETE answers 200 `{"deleted": true}` instead of 204."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core import file_store as files
from core.db import Database
from core.db.models import SessionFile
from core.settings import Settings
from tests import factories
from tests.apps import app_for
from tests.factories import Client
from tests.servers import running


@pytest.fixture
async def served(settings: Settings, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a real server: its requests really run at the same time (the test client's
    in-process transport would hand them to the app one by one)."""
    with running(app_for(settings, configure_logs=False)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            yield client


async def _bytes(client: Client, url: str) -> bytes:
    """A file's content, as the v0.2 GET answered it (now `?raw=true`)."""
    response = await client.get(url, params={"raw": "true"})
    assert response.status_code == 200, response.text
    return response.content


async def _names(client: Client, url: str) -> list[str]:
    """A directory's entries (v0.2: `entries`; now Everruns' `{data: [FileInfo]}`)."""
    response = await client.get(url)
    assert response.status_code == 200, response.text
    return [e["path"] for e in response.json()["data"]]


async def _tree(client: Client) -> str:
    agent = await factories.agent(client)
    session = await factories.session(client, agent["id"])
    return f"/v1/agents/{agent['id']}/sessions/{session['id']}/fs"


async def test_write_read_list_stat_and_delete(client: Client) -> None:
    fs = await _tree(client)
    created = await client.put(f"{fs}/notes/plan.txt", content=b"step one\nstep two\n")
    assert created.status_code == 201, created.text
    assert created.json()["path"] == "/notes/plan.txt" and created.json()["size"] == 18
    assert created.json()["type"] == "file"
    replaced = await client.put(f"{fs}/notes/plan.txt", content=b"step one\n")
    assert replaced.status_code == 200 and replaced.json()["size"] == 9

    read = await client.get(f"{fs}/notes/plan.txt", params={"raw": "true"})
    assert read.status_code == 200 and read.content == b"step one\n"
    assert read.headers["content-type"].startswith("text/plain")
    assert read.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in read.headers["content-security-policy"]

    await client.put(f"{fs}/data.json", content=b'{"a": 1}')
    await client.put(f"{fs}/blob", content=b"\xff\xfe\x00\x01")
    raw = {"raw": "true"}
    assert (
        (await client.get(f"{fs}/data.json", params=raw))
        .headers["content-type"]
        .startswith("application/json")
    )
    blob = await client.get(f"{fs}/blob", params=raw)
    assert blob.headers["content-type"] == "application/octet-stream" and blob.content == b"\xff\xfe\x00\x01"

    # The listing is Everruns' now: directories first, then by path.
    root = await client.get(fs)
    assert root.status_code == 200
    entries = {e["name"]: e for e in root.json()["data"]}
    assert [e["name"] for e in root.json()["data"]] == ["notes", "blob", "data.json"]
    assert entries["notes"]["is_directory"] is True and entries["blob"]["size_bytes"] == 4
    assert (await client.get(f"{fs}/")).json() == root.json()
    assert await _names(client, f"{fs}/notes") == ["/notes/plan.txt"]

    stat = (await client.get(f"{fs}/notes?op=stat")).json()
    assert stat["type"] == "directory" and stat["entries"] == 1 and stat["created_at"]
    stat = (await client.get(f"{fs}/notes/plan.txt", params={"op": "stat"})).json()
    assert stat["type"] == "file" and stat["size"] == 9 and stat["name"] == "plan.txt"
    assert stat["entries"] is None
    assert (await client.get(f"{fs}?op=stat")).json()["entries"] == 3

    deleted = await client.delete(f"{fs}/notes/plan.txt")
    assert deleted.status_code == 200 and deleted.json() == {"deleted": True}
    assert (await client.get(f"{fs}/notes/plan.txt")).status_code == 404
    # The emptied directory stays, like a file system's.
    assert (await client.get(f"{fs}/notes?op=stat")).json()["entries"] == 0
    assert (await client.delete(f"{fs}/notes")).status_code == 200
    assert (await client.get(f"{fs}/notes")).status_code == 404


async def test_directories_and_files_do_not_mix(client: Client) -> None:
    fs = await _tree(client)
    await client.put(f"{fs}/a/b.txt", content=b"x")
    # A file where a directory is, and a file under a file: 409.
    assert (await client.put(f"{fs}/a", content=b"y")).status_code == 409
    under = await client.put(f"{fs}/a/b.txt/c.txt", content=b"y")
    assert under.status_code == 409 and "/a/b.txt is a file" in under.json()["error"]
    assert (await client.put(f"{fs}/", content=b"y")).status_code in (404, 405, 409)
    # A directory with entries goes only recursively.
    refused = await client.delete(f"{fs}/a")
    assert refused.status_code == 409 and "recursive" in refused.json()["error"]
    assert (await client.get(f"{fs}/a/b.txt")).status_code == 200
    mkdir = await client.post(f"{fs}/a/deeper/still?op=mkdir")
    assert mkdir.status_code == 201 and mkdir.json()["type"] == "directory"
    assert (await client.post(f"{fs}/a/deeper/still?op=mkdir")).status_code == 200
    assert (await client.post(f"{fs}/a/b.txt?op=mkdir")).status_code == 409
    assert (await client.delete(f"{fs}/a", params={"recursive": "true"})).status_code == 200
    assert (await client.get(fs)).json()["data"] == []
    assert (await client.delete(f"{fs}/a")).status_code == 404


async def test_move_and_copy(client: Client) -> None:
    fs = await _tree(client)
    await client.put(f"{fs}/src/one.txt", content=b"1")
    await client.put(f"{fs}/src/sub/two.txt", content=b"22")
    before = (await client.get(f"{fs}/src/one.txt?op=stat")).json()

    copied = await client.post(f"{fs}/src?op=copy", json={"to": "/backup/src"})
    assert copied.status_code == 201, copied.text
    assert copied.json()["path"] == "/backup/src" and copied.json()["entries"] == 2
    assert await _bytes(client, f"{fs}/backup/src/sub/two.txt") == b"22"

    moved = await client.post(f"{fs}/src?op=move", json={"to": "/dst"})
    assert moved.status_code == 200, moved.text
    assert (await client.get(f"{fs}/src")).status_code == 404
    assert await _bytes(client, f"{fs}/dst/sub/two.txt") == b"22"
    assert await _names(client, f"{fs}/dst/sub") == ["/dst/sub/two.txt"]
    after = (await client.get(f"{fs}/dst/one.txt?op=stat")).json()
    assert after["created_at"] == before["created_at"]

    # A retried move: the source is gone, and the answer says where it went; nothing changes.
    again = await client.post(f"{fs}/src?op=move", json={"to": "/dst"})
    assert again.status_code == 404 and "/dst exists" in again.json()["error"]
    assert await _bytes(client, f"{fs}/dst/one.txt") == b"1"

    # Something at the destination: 409, unless overwrite and both are files.
    await client.put(f"{fs}/x.txt", content=b"x")
    await client.put(f"{fs}/y.txt", content=b"y")
    assert (await client.post(f"{fs}/x.txt?op=move", json={"to": "/y.txt"})).status_code == 409
    over = await client.post(f"{fs}/x.txt?op=move", json={"to": "/y.txt", "overwrite": True})
    assert over.status_code == 200 and await _bytes(client, f"{fs}/y.txt") == b"x"
    assert (
        await client.post(f"{fs}/y.txt?op=copy", json={"to": "/dst", "overwrite": True})
    ).status_code == 409
    assert (await client.post(f"{fs}/dst?op=move", json={"to": "/dst/inner"})).status_code == 400
    assert (await client.post(f"{fs}/y.txt?op=copy", json={"to": "/dst/one.txt/z"})).status_code == 409
    assert (await client.post(f"{fs}/nothing?op=copy", json={"to": "/z"})).status_code == 404
    assert (await client.post(f"{fs}/y.txt?op=copy", json={"to": "../../z"})).status_code == 400
    assert (await client.post(f"{fs}/y.txt?op=move")).status_code == 400
    assert (await client.post(f"{fs}/y.txt", json={"to": "/z"})).status_code == 400
    assert (await client.post(f"{fs}/y.txt?op=copy", json={"to": "/z", "extra": 1})).status_code == 400


async def test_grep(client: Client) -> None:
    fs = await _tree(client)
    await client.put(f"{fs}/docs/a.md", content=b"Alpha\nbeta TODO\ngamma\n")
    await client.put(f"{fs}/docs/deep/b.md", content=b"todo: later\n")
    await client.put(f"{fs}/code/c.py", content=b"# TODO fix\n")
    await client.put(f"{fs}/bin.dat", content=b"\xff TODO")

    found = (await client.get(fs, params={"op": "grep", "pattern": "TODO"})).json()
    assert [(m["path"], m["line"]) for m in found["matches"]] == [("/code/c.py", 1), ("/docs/a.md", 2)]
    assert found["files_searched"] == 3 and found["binary_files_skipped"] == 1
    assert found["truncated"] is False

    nocase = (
        await client.get(f"{fs}/docs", params={"op": "grep", "pattern": "todo", "ignore_case": "true"})
    ).json()
    assert [m["path"] for m in nocase["matches"]] == ["/docs/a.md", "/docs/deep/b.md"]
    by_name = (await client.get(fs, params={"op": "grep", "pattern": "TODO", "glob": "*.py"})).json()
    assert [m["path"] for m in by_name["matches"]] == ["/code/c.py"]
    by_path = (
        await client.get(fs, params={"op": "grep", "pattern": "(?i)todo", "glob": "docs/**/*.md"})
    ).json()
    assert [m["path"] for m in by_path["matches"]] == ["/docs/a.md", "/docs/deep/b.md"]
    one_file = (await client.get(f"{fs}/docs/a.md", params={"op": "grep", "pattern": "^g"})).json()
    assert one_file["matches"] == [{"path": "/docs/a.md", "line": 3, "text": "gamma"}]
    capped = (await client.get(fs, params={"op": "grep", "pattern": ".", "max_matches": "2"})).json()
    assert len(capped["matches"]) == 2 and capped["truncated"] is True

    assert (await client.get(fs, params={"op": "grep"})).status_code == 400
    bad = await client.get(fs, params={"op": "grep", "pattern": "(unclosed"})
    assert bad.status_code == 400 and bad.json()["field"] == "pattern"
    assert (await client.get(f"{fs}/missing", params={"op": "grep", "pattern": "x"})).status_code == 404


async def test_a_catastrophic_pattern_is_stopped(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "GREP_TIMEOUT_S", 0.5)
    fs = await _tree(client)
    await client.put(f"{fs}/evil.txt", content=b"a" * 40 + b"!")
    response = await client.get(fs, params={"op": "grep", "pattern": "(a|aa)+$"})
    assert response.status_code == 400 and "took over" in response.json()["error"]


async def test_globs_cannot_hang_the_server(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    fs = await _tree(client)
    deep = "/".join(["a" * 40] * 5)  # a 200-character path
    await client.put(f"{fs}/{deep}/x.txt", content=b"x")
    # With Python's re this glob backtracks for minutes on that path; the regex module answers.
    slow = await client.get(fs, params={"op": "grep", "pattern": "x", "glob": "/" + "**a" * 8 + "**b"})
    assert slow.status_code == 200 and slow.json()["matches"] == []
    fine = await client.get(fs, params={"op": "grep", "pattern": "x", "glob": "**/*.txt"})
    assert [m["path"] for m in fine.json()["matches"]] == [f"/{deep}/x.txt"]
    # And whatever a glob costs, matching stops at its budget.
    monkeypatch.setattr(files, "GLOB_TIMEOUT_S", 0)
    stopped = await client.get(fs, params={"op": "grep", "pattern": "x", "glob": "**/*.txt"})
    assert stopped.status_code == 400 and stopped.json()["field"] == "glob"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("%2e%2e/%2e%2e/etc/passwd", "outside"),
        ("a/%2E%2E/%2e%2e/etc/passwd", "outside"),
        ("a%00b", "NUL"),
        ("a%0Ab", "control"),
        ("a%5C..%5Cb", "not \\"),
        ("x" * 256, "at most 255 bytes"),
        ("/".join(["d"] * 33), "levels"),
        ("a/" * 520, "at most 1024 bytes"),
    ],
)
async def test_bad_paths_are_400(client: Client, raw: str, reason: str) -> None:
    fs = await _tree(client)
    for method in ("GET", "PUT", "DELETE"):
        response = await client.request(method, f"{fs}/{raw}", content=b"x" if method == "PUT" else None)
        assert response.status_code == 400, (method, raw, response.text)
        assert reason in response.json()["error"], response.json()
    assert (await client.get(fs)).json()["data"] == []


async def _raw_get(client: Client, path: str) -> httpx.Response:
    """A GET whose path goes out as written: httpx resolves `..` when it parses a URL (as browsers
    do), but `curl --path-as-is` or a raw socket need not."""
    request = client.build_request("GET", "/")
    request.url._uri_reference = request.url._uri_reference._replace(path=path)
    assert request.url.raw_path == path.encode()
    return await client.send(request)


async def test_literal_dot_dot_cannot_leave_the_tree(client: Client) -> None:
    fs = await _tree(client)
    await client.put(f"{fs}/inside.txt", content=b"mine")
    escape = await _raw_get(client, f"{fs}/../../etc/passwd")
    assert escape.status_code == 400 and "outside" in escape.json()["error"]
    inside = await _raw_get(client, f"{fs}/sub/../inside.txt")
    assert inside.status_code == 200 and inside.json()["content"] == "mine"  # `..` within the tree is fine


async def test_absolute_paths_stay_inside_the_tree(client: Client) -> None:
    fs = await _tree(client)
    # `/etc/passwd` is a path of the session's own tree: nothing there, and nothing of the host's.
    assert (await client.get(f"{fs}//etc/passwd")).status_code == 404
    assert (await client.put(f"{fs}//etc/passwd", content=b"fake")).status_code == 201
    assert await _bytes(client, f"{fs}/etc/passwd") == b"fake"


async def test_size_limits(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    fs = await _tree(client)
    too_big = await client.put(f"{fs}/big.bin", content=b"x" * (files.MAX_FILE_BYTES + 1))
    assert too_big.status_code == 413
    exact = await client.put(f"{fs}/big.bin", content=b"x" * files.MAX_FILE_BYTES)
    assert exact.status_code == 201
    # The session's total (made small here, so the test writes little).
    monkeypatch.setattr(files, "MAX_SESSION_BYTES", files.MAX_FILE_BYTES + 10)
    full = await client.put(f"{fs}/more.txt", content=b"x" * 11)
    assert full.status_code == 413 and "over the limit" in full.json()["error"]
    assert (await client.put(f"{fs}/more.txt", content=b"x" * 10)).status_code == 201
    # Replacing a file counts only the difference; a copy counts what it adds.
    assert (await client.put(f"{fs}/more.txt", content=b"y" * 10)).status_code == 200
    assert (await client.post(f"{fs}/more.txt?op=copy", json={"to": "/again.txt"})).status_code == 413
    monkeypatch.setattr(files, "MAX_ENTRIES", 3)
    assert (await client.put(f"{fs}/d/e.txt", content=b"")).status_code == 413
    assert (await client.get(f"{fs}/d")).status_code == 404


async def test_parallel_writes_to_one_path_lose_nothing(served: Client) -> None:
    client = served
    fs = await _tree(client)
    bodies = [f"writer {i}\n".encode() * 100 for i in range(12)]
    answers = await asyncio.gather(*(client.put(f"{fs}/shared/out.txt", content=b) for b in bodies))
    assert sorted(r.status_code for r in answers) == [200] * 11 + [201]
    final = await _bytes(client, f"{fs}/shared/out.txt")
    assert final in bodies  # one writer's whole content, not a mix
    # And parallel writes to different paths under one new directory all land.
    answers = await asyncio.gather(*(client.put(f"{fs}/many/{i}.txt", content=b"x") for i in range(12)))
    assert all(r.status_code == 201 for r in answers), [r.text for r in answers]
    assert len(await _names(client, f"{fs}/many")) == 12


async def test_parallel_changes_keep_the_tree_and_the_quota(
    served: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = served
    fs = await _tree(client)
    _widen(monkeypatch, "_parents_for")
    _widen(monkeypatch, "_check_room")
    # A file at /k and a file under /k (which makes /k a directory), at once: exactly one wins.
    for k in range(5):
        first, second = await asyncio.gather(
            client.put(f"{fs}/k{k}", content=b"file"), client.put(f"{fs}/k{k}/child", content=b"x")
        )
        assert sorted([first.status_code, second.status_code]) == [201, 409], (first.text, second.text)
    # Ten writers of 30 bytes against a 100-byte quota: exactly three fit.
    monkeypatch.setattr(files, "MAX_SESSION_BYTES", 100 + await _used(client, fs))
    answers = await asyncio.gather(*(client.put(f"{fs}/q/{i}", content=b"x" * 30) for i in range(10)))
    assert sorted(r.status_code for r in answers) == [201] * 3 + [413] * 7


def _widen(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Holds a change's transaction open a little after a check, so parallel requests overlap
    between check and write: without the per-session lock they would both pass the check."""
    check = getattr(files, name)

    async def slower(db: AsyncSession, *args: Any, **kwargs: Any) -> Any:
        found = await check(db, *args, **kwargs)
        await db.execute(text("SELECT pg_sleep(0.05)"))
        return found

    monkeypatch.setattr(files, name, slower)


async def _used(client: Client, fs: str) -> int:
    listing = (await client.get(fs, params={"recursive": "true"})).json()["data"]
    return sum(e["size_bytes"] for e in listing)


async def test_files_go_with_their_session(client: Client, db: Database) -> None:
    fs = await _tree(client)
    await client.put(f"{fs}/a/b.txt", content=b"x")
    session_path = fs.removesuffix("/fs")
    async with db.session() as s:
        assert (await s.execute(select(func.count()).select_from(SessionFile))).scalar_one() == 2
    assert (await client.delete(session_path)).status_code == 204
    async with db.session() as s:
        assert (await s.execute(select(func.count()).select_from(SessionFile))).scalar_one() == 0
    assert (await client.get(fs)).status_code == 404


async def test_another_agents_session_and_an_archived_agent(client: Client) -> None:
    fs = await _tree(client)
    other = await factories.agent(client, name="Other")
    wrong = "/v1/agents/" + other["id"] + fs.split("/v1/agents/")[1][36:]
    assert (await client.get(wrong)).status_code == 404
    assert (await client.put(f"{wrong}/x", content=b"x")).status_code == 404
    assert (await client.get(f"/v1/agents/{other['id']}/sessions/{uuid.uuid4()}/fs")).status_code == 404
    await client.put(f"{fs}/kept.txt", content=b"x")
    agent_id = fs.split("/")[3]
    assert (await client.delete(f"/v1/agents/{agent_id}")).status_code == 204  # archives it
    # An archived agent's sessions are read-only: their files can be read, not changed.
    assert await _bytes(client, f"{fs}/kept.txt") == b"x"
    assert (await client.put(f"{fs}/new.txt", content=b"x")).status_code == 409
    assert (await client.delete(f"{fs}/kept.txt")).status_code == 409
