"""A session's files driven by Everruns' own SDK code (`everruns-sdk` 0.3.1), against a real server
in AUTH_MODE=full with an API key.

The SDK reaches files through `WorkspaceFilesClient` (`/v1/workspaces/{id}/fs/...`): Everruns moved
session files under workspaces and keeps `/v1/sessions/{id}/fs/...` as an alias with the same
contract. Everloop has sessions, not workspaces, so the test hands the client the workspace id
`../sessions/{id}`: the SDK joins it into its URL, httpx resolves the `..` (RFC 3986), and every
request lands on the session's flat routes, sent, parsed and validated by the SDK's own code.
Plain-HTTP and concurrency checks are in tests/api/test_files_contract.py."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import pytest
from everruns_sdk import Everruns
from everruns_sdk.client import WorkspaceFilesClient
from everruns_sdk.errors import ApiError

from everloop.stack import Endpoints
from tests import factories
from tests.api.test_auth_full import ADMIN_EMAIL, ADMIN_PASSWORD, clear_rate_limits, full_settings
from tests.apps import app_for
from tests.servers import running


@pytest.fixture
async def sdk_session(endpoints: Endpoints) -> AsyncIterator[tuple[Everruns, str, httpx.AsyncClient]]:
    """The SDK with an API key, the workspace id that leads to a new session's files, and plain
    HTTP as the same user."""
    await clear_rate_limits(endpoints)
    with running(app_for(full_settings(endpoints), configure_logs=False)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as anon:
            login = await anon.post("/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
            assert login.status_code == 200, login.text
            token = {"Authorization": f"Bearer {login.json()['access_token']}"}
            key = await anon.post("/v1/auth/api-keys", json={"name": "sdk"}, headers=token)
            assert key.status_code == 201, key.text
            http = httpx.AsyncClient(
                base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {key.json()['key']}"}
            )
            async with http:
                agent = await factories.agent(http)
                session = await factories.session(http, agent["id"])
                client = Everruns(api_key=key.json()["key"], base_url=server.url)
                try:
                    yield client, f"../sessions/{session['id']}", http
                finally:
                    await client.close()


async def test_every_file_method_of_the_sdk(sdk_session: tuple[Everruns, str, httpx.AsyncClient]) -> None:
    client, tree, http = sdk_session
    files: WorkspaceFilesClient = client.workspace_files
    session_id = tree.rsplit("/", 1)[1]

    made = await files.create(tree, "/notes/plan.md", "# Plan\n- [ ] TODO write\n")
    assert made.path == "/notes/plan.md" and made.encoding == "text" and made.session_id == session_id
    assert made.is_readonly is False and made.size_bytes == 24
    blob = base64.b64encode(b"\x89PNG\r\n\x1a\n\x00\xff").decode()
    image = await files.create(tree, "img/logo.png", blob, encoding="base64", is_readonly=True)
    assert image.encoding == "base64" and image.is_readonly is True and image.content == blob
    folder = await files.create_dir(tree, "/empty")
    assert folder.is_directory is True and folder.content is None

    read = await files.read(tree, "/notes/plan.md")
    assert read.content == "# Plan\n- [ ] TODO write\n" and read.id == made.id
    updated = await files.update(tree, "/notes/plan.md", "# Plan\n- [x] TODO write\n", encoding="text")
    assert updated.content.startswith("# Plan\n- [x]") and updated.id == made.id

    root = await files.list(tree)
    assert [(f.name, f.is_directory) for f in root] == [("empty", True), ("img", True), ("notes", True)]
    deep = await files.list(tree, "/notes")
    assert [f.path for f in deep] == ["/notes/plan.md"]
    everything = await files.list(tree, recursive=True)
    assert [f.path for f in everything] == ["/empty", "/img", "/img/logo.png", "/notes", "/notes/plan.md"]

    stat = await files.stat(tree, "/img/logo.png")
    assert stat.size_bytes == 10 and stat.is_readonly is True and stat.is_directory is False
    assert (await files.stat(tree, "/")).is_directory is True

    moved = await files.move_file(tree, "/notes/plan.md", "/archive/plan.md")
    assert moved.path == "/archive/plan.md" and moved.id == made.id
    copied = await files.copy_file(tree, "/archive/plan.md", "/plan-copy.md")
    assert copied.content == moved.content and copied.id != made.id

    found = await files.grep(tree, "TODO")
    assert [(r.path, [m.line_number for m in r.matches]) for r in found] == [
        ("/archive/plan.md", [2]),
        ("/plan-copy.md", [2]),
    ]
    assert [r.path for r in await files.grep(tree, "TODO", path_pattern="archive/")] == ["/archive/plan.md"]
    assert [r.path for r in await files.grep(tree, "Plan", path_pattern="*-copy.md")] == ["/plan-copy.md"]

    assert (await files.delete(tree, "/plan-copy.md")).deleted is True
    assert (await files.delete(tree, "/archive", recursive=True)).deleted is True
    # The read-only image refuses, through the SDK's own error.
    with pytest.raises(ApiError) as refused:
        await files.delete(tree, "/img/logo.png")
    assert refused.value.status_code == 409
    with pytest.raises(ApiError) as missing:
        await files.read(tree, "/archive/plan.md")
    assert missing.value.status_code == 404

    # And the same tree, as plain HTTP sees it: nothing the SDK sent was stored as a wrapper.
    raw = await http.get(f"/v1/sessions/{session_id}/fs/_/download/img/logo.png")
    assert raw.content == b"\x89PNG\r\n\x1a\n\x00\xff"
