"""`everloop dev` and `everloop services`: the embedded stack, migrations, then API and worker.

One supervisor process owns every child. SIGINT or SIGTERM stops them newest first; if the
supervisor itself is killed, the kernel stops them (see `everloop.stack.process`).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

import click
import msgspec

from core.crypto import dev_jwt_secret, dev_master_key
from core.migrate import upgrade
from core.settings import AuthMode, Settings
from everloop.seed import seed_dev_data
from everloop.stack import EmbeddedStack, Endpoints, StackError
from everloop.stack.process import ManagedProcess, wait_until


class _Stop(Exception):
    """Raised in the main thread by SIGINT/SIGTERM."""


@contextmanager
def _stop_on_signals() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        # Ignore further signals while we stop the children in order.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise _Stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _say(message: str) -> None:
    click.echo(click.style("everloop", bold=True) + " " + message, err=True)


def _start_services(stack: EmbeddedStack, *, migrate: bool) -> Endpoints:
    started = time.monotonic()
    embedded = [
        name
        for name, value in (
            ("PostgreSQL", stack.settings.database_url),
            ("Redis", stack.settings.redis_url),
            ("Temporal", stack.settings.temporal_address),
        )
        if value is None
    ]
    if embedded:
        _say(f"starting embedded {', '.join(embedded)} in {stack.data_dir}")
    endpoints = stack.start()
    if migrate:
        upgrade(endpoints.database_url)
        _say("database schema is up to date")
    _say(f"backing services ready in {time.monotonic() - started:.1f} s")
    return endpoints


def _wait_forever(children: list[ManagedProcess]) -> None:
    while True:
        for child in children:
            if (code := child.exited()) is not None:
                raise StackError(f"{child.name} exited unexpectedly with code {code}")
        time.sleep(0.5)


def run_services(settings: Settings, *, migrate: bool, durable: bool) -> None:
    stack = EmbeddedStack(settings, durable=durable)
    with _stop_on_signals():
        try:
            endpoints = _start_services(stack, migrate=migrate)
            for name, value in endpoints.as_env().items():
                click.echo(f"export {name}={value}")
            sys.stdout.flush()
            _say("press Ctrl-C to stop")
            _wait_forever(stack.processes)
        except _Stop:
            pass
        finally:
            _say("stopping")
            stack.stop()


def _api_ready(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/ready", timeout=5) as response:  # noqa: S310 - our own URL
                return bool(json.load(response).get("status") == "ready")
        except (OSError, urllib.error.URLError, ValueError):
            return False

    return check


def run_dev(settings: Settings) -> None:
    child_env = dict(os.environ)
    if "AUTH_MODE" not in os.environ:
        # Local development: one built-in admin, allowed because the API binds to loopback.
        child_env["AUTH_MODE"] = AuthMode.NONE.value
        settings = msgspec.structs.replace(settings, auth_mode=AuthMode.NONE)
    # The seeded simulator provider answers from this API's own /simulator/v1.
    child_env.setdefault("EVERLOOP_SIMULATOR", "true")
    if settings.secrets_encryption_key is None:
        # Made once into the data directory, so stored API keys survive restarts.
        child_env["SECRETS_ENCRYPTION_KEY"] = dev_master_key(settings.data_dir)
    if settings.auth_mode is not AuthMode.NONE and settings.auth_jwt_secret is None:
        secret = dev_jwt_secret(settings.data_dir)
        child_env["AUTH_JWT_SECRET"] = secret
        settings = msgspec.structs.replace(settings, auth_jwt_secret=secret)
    settings.check_runnable()

    stack = EmbeddedStack(settings, durable=True)
    children: list[ManagedProcess] = []
    with _stop_on_signals():
        try:
            endpoints = _start_services(stack, migrate=True)
            if added := asyncio.run(seed_dev_data(endpoints.database_url, settings)):
                _say(f"added {', '.join(added)}")
            child_env.update(endpoints.as_env())
            child_env["EVERLOOP_DATA_DIR"] = str(settings.data_dir)
            for command in ("worker", "api"):
                child = ManagedProcess(
                    command, [sys.executable, "-m", "everloop.cli", command], log_path=None, env=child_env
                )
                child.start()
                children.append(child)
            api = children[-1]
            wait_until(
                "the API", _api_ready(settings.api_url), timeout=settings.startup_timeout_s, process=api
            )
            _print_banner(settings, endpoints)
            _wait_forever([*children, *stack.processes])
        except _Stop:
            pass
        finally:
            _say("stopping")
            while children:
                children.pop().stop()
            stack.stop()
            _say("stopped")


def _print_banner(settings: Settings, endpoints: Endpoints) -> None:
    lines = [
        # First: the web console is where a newcomer starts (served at the API's root).
        ("Console", f"{settings.api_url}/"),
        ("API", settings.api_url),
        ("Swagger UI", f"{settings.api_url}/swagger-ui/"),
        ("OpenAPI", f"{settings.api_url}/api-doc/openapi.json"),
        ("Temporal UI", endpoints.temporal_ui_url or "(not embedded: set TEMPORAL_UI_URL to show it here)"),
        ("Data directory", str(settings.data_dir)),
        ("DATABASE_URL", _without_password(endpoints.database_url)),
        ("REDIS_URL", _without_password(endpoints.redis_url)),
        ("TEMPORAL_ADDRESS", endpoints.temporal_address),
        ("Auth mode", settings.auth_mode.value),
    ]
    width = max(len(name) for name, _ in lines)
    _say("is ready:")
    for name, value in lines:
        click.echo(f"  {name.ljust(width)}  {value}", err=True)
    _say("press Ctrl-C to stop")


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
