from __future__ import annotations

import base64
import os
import subprocess
import sys

from sqlalchemy import select

from core.crypto import SecretBox
from core.db import Database
from core.db.models import LlmProvider, McpServer, Webhook
from core.identity import BUILTIN_ADMIN
from core.net import NetPolicy
from core.schemas.llm import CreateProvider
from core.schemas.mcp import CreateMcpServer
from core.schemas.webhooks import CreateWebhook
from everloop.stack import Endpoints
from services import auth, llm, mcp_servers, webhooks


async def test_rotate_secrets_rewraps_every_key_under_the_new_master(
    db: Database, endpoints: Endpoints
) -> None:
    old, new = os.urandom(32), os.urandom(32)
    async with db.session() as s:
        for name in ("a", "b"):
            await llm.create_provider(
                s,
                BUILTIN_ADMIN,
                SecretBox(old),
                CreateProvider(name=name, provider_type="openai", api_key=f"sk-{name}"),
            )
        await llm.create_provider(
            s, BUILTIN_ADMIN, SecretBox(old), CreateProvider(name="keyless", provider_type="simulator")
        )

    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": endpoints.database_url,
        "SECRETS_ENCRYPTION_KEY": base64.b64encode(new).decode(),
        "SECRETS_ENCRYPTION_KEY_PREVIOUS": base64.b64encode(old).decode(),
    }
    run = subprocess.run(
        [sys.executable, "-m", "everloop.cli", "rotate-secrets"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "re-encrypted 2 secret(s)" in run.stdout

    only_new = SecretBox(new)
    async with db.session() as s:
        rows = (await s.execute(select(LlmProvider).order_by(LlmProvider.name))).scalars().all()
        keys = [await llm.api_key(only_new, row) for row in rows]
    assert keys == ["sk-a", "sk-b", None]

    again = subprocess.run(
        [sys.executable, "-m", "everloop.cli", "rotate-secrets"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "re-encrypted 0 secret(s)" in again.stdout


async def test_rotate_secrets_covers_mcp_server_headers(db: Database, endpoints: Endpoints) -> None:
    old, new = os.urandom(32), os.urandom(32)
    down = "http://127.0.0.1:9/mcp"  # nothing answers: the servers are added with tools_error
    async with db.session() as s:
        await llm.create_provider(
            s, BUILTIN_ADMIN, SecretBox(old), CreateProvider(name="p", provider_type="openai", api_key="sk-p")
        )
        for name, headers in (("a", {"Authorization": "Bearer a"}), ("b", {"X-Key": "b"}), ("none", {})):
            await mcp_servers.create(
                s,
                BUILTIN_ADMIN,
                SecretBox(old),
                CreateMcpServer(name=name, transport="streamable_http", url=down, headers=headers),
                policy=NetPolicy(),
                list_timeout_s=5,
            )

    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": endpoints.database_url,
        "SECRETS_ENCRYPTION_KEY": base64.b64encode(new).decode(),
        "SECRETS_ENCRYPTION_KEY_PREVIOUS": base64.b64encode(old).decode(),
    }
    command = [sys.executable, "-m", "everloop.cli", "rotate-secrets"]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "re-encrypted 3 secret(s)" in run.stdout

    only_new = SecretBox(new)
    async with db.session() as s:
        rows = (await s.execute(select(McpServer).order_by(McpServer.name))).scalars().all()
        stored = [mcp_servers.endpoint(row, only_new).headers for row in rows]
        # Under a key they were not sealed with (or none), a call says it cannot read them: no crash.
        assert mcp_servers.endpoint(rows[0], SecretBox(old)).headers is None
        assert mcp_servers.endpoint(rows[0], None).headers is None
    assert stored == [{"Authorization": "Bearer a"}, {"X-Key": "b"}, {}]
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert "re-encrypted 0 secret(s)" in again.stdout


async def test_rotate_secrets_covers_webhook_secrets(db: Database, endpoints: Endpoints) -> None:
    old, new = os.urandom(32), os.urandom(32)
    async with db.session() as s:
        await auth.ensure_builtin_admin(s)  # a webhook's owner is a user row
        await s.commit()
        made = [
            await webhooks.create(
                s,
                BUILTIN_ADMIN,
                SecretBox(old),
                CreateWebhook(url="http://1.1.1.1/hooks"),
                policy=NetPolicy(),
            )
            for _ in range(2)
        ]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": endpoints.database_url,
        "SECRETS_ENCRYPTION_KEY": base64.b64encode(new).decode(),
        "SECRETS_ENCRYPTION_KEY_PREVIOUS": base64.b64encode(old).decode(),
    }
    command = [sys.executable, "-m", "everloop.cli", "rotate-secrets"]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "re-encrypted 2 secret(s)" in run.stdout
    only_new = SecretBox(new)
    async with db.session() as s:
        rows = {row.id: row for row in (await s.execute(select(Webhook))).scalars()}
    for hook in made:
        stored = rows[hook.id].secret_encrypted
        assert only_new.open(stored, webhooks.secret_context(hook.id)) == hook.secret
