"""The `everloop` command."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar

import click
from sqlalchemy.exc import DBAPIError

import core
from core.settings import Settings, SettingsError, get_settings
from everloop.stack import StackError

F = TypeVar("F", bound=Callable[..., Any])


def _friendly_errors(func: F) -> F:
    """Configuration and start-up problems end the command with one clear line, not a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SettingsError as exc:
            raise click.ClickException(f"configuration: {exc}") from None
        except StackError as exc:
            raise click.ClickException(str(exc)) from None
        except (OSError, DBAPIError) as exc:
            # A service that does not answer: one line saying which, not a driver traceback.
            raise click.ClickException(f"cannot reach a backing service: {exc}") from None

    return wrapper  # type: ignore[return-value]


def _settings() -> Settings:
    return get_settings()


def _need(value: str | None, name: str) -> str:
    if not value:
        raise SettingsError(
            f"{name} is not set. `everloop dev` sets it for you; to run this command alone, start "
            "`everloop services` in another terminal and export what it prints"
        )
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(core.__version__, prog_name="everloop")
def main() -> None:
    """Everloop: a durable agent runtime.

    Every setting comes from environment variables; docs/settings.md lists them all.
    """


@main.command()
@_friendly_errors
def dev() -> None:
    """Run everything on this machine: embedded PostgreSQL, Redis and Temporal (with its web UI),
    migrations, the API and a worker. A service whose variable is set (DATABASE_URL, REDIS_URL,
    TEMPORAL_ADDRESS) is used instead of its embedded part. Ctrl-C stops it all; data is kept in
    EVERLOOP_DATA_DIR."""
    from everloop.dev import run_dev

    run_dev(_settings())


@main.command()
@click.option("--no-migrate", is_flag=True, help="Do not apply database migrations after start-up.")
@click.option(
    "--ephemeral", is_flag=True, help="Faster and throw-away: no fsync, Temporal in memory, no Temporal UI."
)
@_friendly_errors
def services(no_migrate: bool, ephemeral: bool) -> None:
    """Run only the backing services (PostgreSQL, Redis, Temporal) and print their addresses as
    `export` lines, for running the API, a worker or the tests against them."""
    from everloop.dev import run_services

    run_services(_settings(), migrate=not no_migrate, durable=not ephemeral)


@main.command()
@_friendly_errors
def api() -> None:
    """Run the HTTP API (needs DATABASE_URL, REDIS_URL and TEMPORAL_ADDRESS)."""
    settings = _settings()  # before the imports, which take seconds: a bad setting fails at once
    settings.check_runnable()
    for value, name in (
        (settings.database_url, "DATABASE_URL"),
        (settings.redis_url, "REDIS_URL"),
        (settings.temporal_address, "TEMPORAL_ADDRESS"),
    ):
        _need(value, name)
    import uvicorn

    from api.app import create_app
    from everloop.heap import freeze_startup_heap

    app = create_app(settings)
    freeze_startup_heap()  # the imports' and routes' objects: out of every full collection's walk
    uvicorn.run(app, **settings.uvicorn_options())  # type: ignore[arg-type]


@main.command()
@_friendly_errors
def worker() -> None:
    """Run a Temporal worker for the workflows and activities (needs DATABASE_URL, REDIS_URL and
    TEMPORAL_ADDRESS)."""
    settings = _settings()
    # Checked before the imports (litellm alone takes seconds), so a missing setting fails at once.
    database_url = _need(settings.database_url, "DATABASE_URL")
    redis_url = _need(settings.redis_url, "REDIS_URL")
    temporal_address = _need(settings.temporal_address, "TEMPORAL_ADDRESS")
    from core.logging import configure_logging
    from everloop.worker import run_worker

    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(run_worker(settings, database_url, redis_url, temporal_address))


@main.command()
@click.option("--revision", default="head", show_default=True, help="Alembic revision to upgrade to.")
@_friendly_errors
def migrate(revision: str) -> None:
    """Apply database migrations (needs DATABASE_URL)."""
    from core.migrate import upgrade

    upgrade(_need(_settings().database_url, "DATABASE_URL"), revision)
    click.echo(f"database is at revision {revision}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8001, show_default=True, help="Port to listen on.")
@_friendly_errors
def simulator(host: str, port: int) -> None:
    """Run only the OpenAI-compatible LLM simulator, at http://HOST:PORT/simulator/v1 (the API
    also serves it when EVERLOOP_SIMULATOR=true). Needs no database."""
    from api.simulator import run_simulator
    from core.logging import configure_logging

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    run_simulator(host, port)


@main.command("rotate-secrets")
@_friendly_errors
def rotate_secrets() -> None:
    """Re-encrypt every stored secret under SECRETS_ENCRYPTION_KEY. Set the old key as
    SECRETS_ENCRYPTION_KEY_PREVIOUS while this runs; remove it afterwards (needs DATABASE_URL)."""
    from core.crypto import secret_box
    from core.db import Database
    from services import llm, mcp_servers, webhooks

    settings = _settings()
    box = secret_box(settings)
    if box is None:
        raise SettingsError("SECRETS_ENCRYPTION_KEY: not set; it is the key to re-encrypt under")

    async def run() -> int:
        db = Database(
            _need(settings.database_url, "DATABASE_URL"), pool_size=1, timeouts=settings.database_timeouts
        )
        try:
            async with db.session() as session:
                # Provider API keys, MCP server headers, webhook secrets.
                return (
                    await llm.rewrap_all(session, box)
                    + await mcp_servers.rewrap_all(session, box)
                    + await webhooks.rewrap_all(session, box)
                )
        finally:
            await db.dispose()

    click.echo(f"re-encrypted {asyncio.run(run())} secret(s) under the current key")


@main.command()
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for a worker.")
@_friendly_errors
def check(timeout: float) -> None:
    """Run the StackCheck workflow: client -> Temporal -> worker -> PostgreSQL and Redis, end to end
    (needs TEMPORAL_ADDRESS and a running worker)."""
    from core import temporal
    from core.schemas.diagnostics import StackCheckInput, StackCheckResult

    settings = _settings()

    async def run() -> StackCheckResult:
        client = await temporal.connect(
            _need(settings.temporal_address, "TEMPORAL_ADDRESS"), settings.temporal_namespace
        )
        token = uuid.uuid4().hex
        return await asyncio.wait_for(
            client.execute_workflow(
                "StackCheck",
                StackCheckInput(token=token),
                id=f"stack-check-{token}",
                task_queue=settings.temporal_task_queue,
                result_type=StackCheckResult,
                execution_timeout=timedelta(seconds=timeout),
            ),
            timeout,
        )

    try:
        result = asyncio.run(run())
    except TimeoutError:
        raise click.ClickException(
            f"no worker answered on task queue {settings.temporal_task_queue!r} within {timeout:.0f} s"
        ) from None
    click.echo(
        f"ok: a worker on {result.task_queue!r} reached PostgreSQL {result.postgres_version} "
        f"and Redis {result.redis_version}"
    )


if __name__ == "__main__":
    sys.exit(main())
