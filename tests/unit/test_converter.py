from __future__ import annotations

import msgspec
import pytest

from core.converter import data_converter
from core.schemas.diagnostics import StackCheckInput, StackCheckResult


async def test_structs_round_trip_as_json_plain() -> None:
    value = StackCheckResult(token="t", postgres_version="18", redis_version="6", task_queue="q")
    payloads = await data_converter.encode([value])
    assert payloads[0].metadata["encoding"] == b"json/plain"
    assert msgspec.json.decode(payloads[0].data) == {
        "token": "t",
        "postgres_version": "18",
        "redis_version": "6",
        "task_queue": "q",
    }
    [decoded] = await data_converter.decode(payloads, [StackCheckResult])
    assert decoded == value


async def test_decoding_checks_the_type() -> None:
    payloads = await data_converter.encode([{"token": 5}])
    with pytest.raises(Exception, match="Expected `str`"):
        await data_converter.decode(payloads, [StackCheckInput])


async def test_none_and_bytes_keep_their_own_encodings() -> None:
    payloads = await data_converter.encode([None, b"raw"])
    assert [p.metadata["encoding"] for p in payloads] == [b"binary/null", b"binary/plain"]
