from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidInput


async def page_of(db: AsyncSession, query: Select[Any], offset: int, limit: int) -> tuple[list[Any], int]:
    total = (await db.execute(select(func.count()).select_from(query.order_by(None).subquery()))).scalar_one()
    rows = (await db.execute(query.offset(offset).limit(limit))).scalars().all()
    return list(rows), int(total)


def check_size(field: str, value: str | None, max_bytes: int, label: str) -> None:
    if value is not None and len(value.encode()) > max_bytes:
        raise InvalidInput(f"{field} is longer than {label}", field=field)


def changed_fields(patch: msgspec.Struct) -> dict[str, Any]:
    """The fields a PATCH body sets (UNSET ones were not sent)."""
    return {k: v for k, v in msgspec.structs.asdict(patch).items() if v is not UNSET}
