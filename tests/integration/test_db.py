"""The schema comes only from migrations, and they agree with the models."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import String, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from core.db import Database, TimestampMixin
from core.db.knowledge import in_migrations
from core.db.models import Base
from core.migrate import alembic_config, upgrade
from everloop.stack import Endpoints


def _diff(connection: Connection) -> list[object]:
    opts = {"compare_server_default": True, "include_object": in_migrations}
    context = MigrationContext.configure(connection, opts=opts)
    return list(compare_metadata(context, Base.metadata))


async def test_migrations_and_models_agree(db: Database) -> None:
    async with db.engine.connect() as conn:
        diff = await conn.run_sync(_diff)
    assert diff == []


async def test_database_is_at_the_single_head(db: Database, endpoints: Endpoints) -> None:
    heads = ScriptDirectory.from_config(alembic_config(endpoints.database_url)).get_heads()
    assert len(heads) == 1, "migration history has branched"
    async with db.engine.connect() as conn:
        current = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
    assert current == heads[0]


async def test_upgrading_twice_is_harmless(endpoints: Endpoints) -> None:
    await asyncio.to_thread(upgrade, endpoints.database_url)


class _ProbeBase(DeclarativeBase):
    pass


class _Probe(TimestampMixin, _ProbeBase):
    __tablename__ = "timestamp_probe"
    name: Mapped[str] = mapped_column(String(50))


async def test_timestamped_rows_get_uuid7_ids_and_utc_times(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.run_sync(_ProbeBase.metadata.create_all)
    try:
        async with db.session() as session:
            first, second = _Probe(name="a"), _Probe(name="b")
            session.add_all([first, second])
            await session.commit()
            assert first.id.version == 7 and first.id < second.id
            assert first.created_at.tzinfo is not None
            assert first.created_at.utcoffset() == UTC.utcoffset(None)
            assert abs((datetime.now(UTC) - first.created_at).total_seconds()) < 60
            before = first.updated_at
            first.name = "renamed"
            await session.commit()
        async with db.session() as session:
            stored = (await session.execute(select(_Probe).where(_Probe.id == first.id))).scalar_one()
            assert stored.updated_at > before
            assert stored.created_at == first.created_at
            column = _Probe.__table__.c.created_at
            assert column.type.timezone is True  # type: ignore[attr-defined]
    finally:
        async with db.engine.begin() as conn:
            await conn.run_sync(_ProbeBase.metadata.drop_all)
