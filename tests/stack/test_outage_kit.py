"""The outage kit (tests/outage.py) does what the chaos tests rely on: a stopped server refuses and
keeps its data, a frozen one answers nothing until it is thawed, and nothing outlives the test."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import psutil
import pytest
import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.outage import own_postgres, own_redis


async def _value(dsn: str) -> int:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return int(await conn.fetchval("SELECT v FROM kit"))
    finally:
        await conn.close()


async def test_postgres_stop_and_start_keep_the_data(tmp_path: Path) -> None:
    with own_postgres(tmp_path) as pg:
        conn = await asyncpg.connect(pg.dsn, timeout=10)
        # Migrated to head: the schema is there.
        assert await conn.fetchval("SELECT count(*) FROM alembic_version") == 1
        await conn.execute("CREATE TABLE kit (v int); INSERT INTO kit VALUES (7)")
        await conn.close()

        pg.stop()
        with pytest.raises(OSError):
            await asyncpg.connect(pg.dsn, timeout=5)
        pg.start()
        assert await _value(pg.dsn) == 7

        pg.stop(kill=True)
        with pytest.raises(OSError):
            await asyncpg.connect(pg.dsn, timeout=5)
        pg.start()  # crash recovery
        assert await _value(pg.dsn) == 7


async def test_a_frozen_postgres_answers_nothing_until_thawed(tmp_path: Path) -> None:
    with own_postgres(tmp_path) as pg:
        open_conn = await asyncpg.connect(pg.dsn, timeout=10)
        assert pg.process is not None and pg.process.pid is not None
        pg.freeze()
        assert pg.frozen
        with pytest.raises(TimeoutError):
            await open_conn.fetchval("SELECT 1", timeout=1)
        with pytest.raises(TimeoutError):
            await asyncpg.connect(pg.dsn, timeout=1)
        pg.thaw()
        assert not pg.frozen
        conn = await asyncpg.connect(pg.dsn, timeout=10)
        assert await conn.fetchval("SELECT 1", timeout=10) == 1
        await conn.close()
        open_conn.terminate()

        # Left frozen, the server is still thawed and stopped when the block ends.
        pg.freeze()
        postmaster = psutil.Process(pg.process.pid)
        processes = [postmaster, *postmaster.children(recursive=True)]
        assert len(processes) > 1  # the backends, checkpointer, writers...
    _gone, alive = psutil.wait_procs(processes, timeout=10)
    assert not alive


async def test_redis_stop_and_start(tmp_path: Path) -> None:
    with own_redis(tmp_path) as server:
        client = redis.from_url(server.url, socket_timeout=2, socket_connect_timeout=2)
        try:
            assert await client.ping()
            server.stop()
            with pytest.raises(RedisConnectionError):
                await client.ping()
            server.start()
            assert await client.ping()
            assert server.process is not None
            pid = server.process.pid
        finally:
            await client.aclose()
    assert pid is not None and not psutil.pid_exists(pid)
