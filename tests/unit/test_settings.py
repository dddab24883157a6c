from __future__ import annotations

import base64
from pathlib import Path

import pytest

from core.settings import AuthMode, LogFormat, SettingsError, get_settings, load_settings

KEY = base64.b64encode(bytes(range(32))).decode()


def test_defaults_leave_services_embedded_and_auth_full() -> None:
    settings = load_settings({})
    assert settings.database_url is None
    assert settings.redis_url is None
    assert settings.temporal_address is None
    assert settings.temporal_namespace == "default"
    assert settings.temporal_task_queue == "everloop"
    assert settings.data_dir == Path(".everloop").resolve()
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.auth_mode is AuthMode.FULL
    assert settings.log_format is LogFormat.JSON
    assert settings.cors_origins == ()
    assert settings.max_request_body_bytes == 10 * 1024 * 1024
    assert (settings.json_max_depth, settings.json_max_items) == (64, 100_000)
    assert settings.secrets_encryption_key is None


def test_values_are_read_and_normalised() -> None:
    settings = load_settings(
        {
            "DATABASE_URL": "postgresql://u:p@db:5432/everloop",
            "REDIS_URL": "redis://cache:6379/1",
            "TEMPORAL_ADDRESS": "temporal:7233",
            "EVERLOOP_PORT": "9000",
            "LOG_LEVEL": "debug",
            "AUTH_MODE": "admin",
            "CORS_ORIGINS": "https://app.example.com, http://localhost:3000/",
            "SECRETS_ENCRYPTION_KEY": KEY,
            "MAX_REQUEST_BODY_BYTES": "2048",
            "JSON_MAX_DEPTH": "32",
            "JSON_MAX_ITEMS": "5000",
        }
    )
    assert settings.database_url == "postgresql://u:p@db:5432/everloop"
    assert settings.temporal_address == "temporal:7233"
    assert settings.port == 9000
    assert settings.log_level == "DEBUG"
    assert settings.auth_mode is AuthMode.ADMIN
    assert settings.cors_origins == ("https://app.example.com", "http://localhost:3000")
    assert settings.secrets_encryption_key == bytes(range(32))
    assert settings.max_request_body_bytes == 2048
    assert (settings.json_max_depth, settings.json_max_items) == (32, 5000)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", "mysql://db/x"),
        ("DATABASE_URL", "not a url"),
        ("REDIS_URL", "http://cache:6379"),
        ("TEMPORAL_ADDRESS", "temporal"),
        ("TEMPORAL_ADDRESS", "temporal:99999"),
        ("TEMPORAL_UI_URL", "ftp://x"),
        ("EVERLOOP_PORT", "eighty"),
        ("EVERLOOP_PORT", "70000"),
        ("LOG_LEVEL", "loud"),
        ("LOG_FORMAT", "xml"),
        ("AUTH_MODE", "open"),
        ("CORS_ORIGINS", "*"),
        ("CORS_ORIGINS", "example.com"),
        ("CORS_ORIGINS", "https://example.com/path"),
        ("SECRETS_ENCRYPTION_KEY", "short"),
        ("SECRETS_ENCRYPTION_KEY", base64.b64encode(b"x" * 16).decode()),
        ("SECRETS_ENCRYPTION_KEY_PREVIOUS", "%%%"),
        ("MAX_REQUEST_BODY_BYTES", "-1"),
        ("JSON_MAX_DEPTH", "1000"),  # past what the decoders can recurse through
        ("JSON_MAX_DEPTH", "4"),
        ("JSON_MAX_ITEMS", "many"),
        ("EVERLOOP_STARTUP_TIMEOUT", "0"),
        ("EMBEDDED_POSTGRES_PORT", "x"),
        ("DB_POOL_SIZE", "0"),
        ("DB_MAX_OVERFLOW", "-1"),
        ("WORKER_MAX_CONCURRENT_WORKFLOW_TASKS", "0"),
        ("WORKER_MAX_CONCURRENT_ACTIVITIES", "lots"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({name: value})
    assert str(info.value).startswith(f"{name}:")


def test_blank_values_mean_unset() -> None:
    assert load_settings({"DATABASE_URL": "  ", "EVERLOOP_PORT": ""}).port == 8000


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.5", "example.com"])
def test_auth_none_is_refused_off_loopback(host: str) -> None:
    settings = load_settings({"AUTH_MODE": "none", "EVERLOOP_HOST": host})
    with pytest.raises(SettingsError, match="AUTH_MODE=none"):
        settings.check_runnable()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_auth_none_is_allowed_on_loopback(host: str) -> None:
    load_settings({"AUTH_MODE": "none", "EVERLOOP_HOST": host}).check_runnable()


def test_settings_are_frozen_and_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    monkeypatch.setenv("EVERLOOP_PORT", "8100")
    first = get_settings()
    monkeypatch.setenv("EVERLOOP_PORT", "8200")
    assert get_settings() is first
    assert first.port == 8100
    with pytest.raises(AttributeError):
        first.port = 1  # type: ignore[misc]
    get_settings.cache_clear()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", "mysql://user:hunter2@db/x"),
        ("REDIS_URL", "http://:hunter2@cache:6379"),
        ("AUTH_JWT_SECRET", "hunter2"),
    ],
)
def test_errors_never_echo_secrets(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({name: value})
    assert "hunter2" not in str(info.value)


def test_api_shutdown_is_bounded_and_reaches_uvicorn() -> None:
    # An open SSE stream never ends by itself: uvicorn must stop waiting before the pod's grace ends.
    import uvicorn

    assert load_settings({}).api_graceful_shutdown_s == 15
    options = load_settings({"API_GRACEFUL_SHUTDOWN_S": "7"}).uvicorn_options()
    config = uvicorn.Config("core.settings:Settings", **options)  # type: ignore[arg-type]
    assert config.timeout_graceful_shutdown == 7
    for bad in ("0", "soon", "4000"):
        with pytest.raises(SettingsError, match="API_GRACEFUL_SHUTDOWN_S"):
            load_settings({"API_GRACEFUL_SHUTDOWN_S": bad})


def test_worker_liveness_file_is_a_path_or_none(tmp_path: Path) -> None:
    assert load_settings({}).worker_liveness_file is None
    path = tmp_path / "alive"
    assert load_settings({"WORKER_LIVENESS_FILE": str(path)}).worker_liveness_file == path


async def test_process_sizes_reach_the_api_pool_and_default_to_the_benchmarked_figures() -> None:
    from api.state import Services
    from everloop.worker import SLOTS

    defaults = load_settings({})
    assert (defaults.database_pool_size, defaults.database_max_overflow) == (10, 10)
    assert {
        "max_concurrent_workflow_tasks": defaults.worker_max_concurrent_workflow_tasks,
        "max_concurrent_activities": defaults.worker_max_concurrent_activities,
    } == SLOTS
    sized = load_settings(
        {
            "DB_POOL_SIZE": "3",
            "DB_MAX_OVERFLOW": "0",
            "WORKER_MAX_CONCURRENT_WORKFLOW_TASKS": "4",
            "WORKER_MAX_CONCURRENT_ACTIVITIES": "50",
        }
    )
    assert (sized.worker_max_concurrent_workflow_tasks, sized.worker_max_concurrent_activities) == (4, 50)
    # Nothing connects until used: the pool's size is the setting's.
    services = Services(sized, "postgresql://x@127.0.0.1:1/x", "redis://127.0.0.1:1/0", "127.0.0.1:1")
    try:
        pool = services.db.engine.pool
        assert (pool.size(), pool._max_overflow) == (3, 0)  # type: ignore[attr-defined]
    finally:
        await services.close()
