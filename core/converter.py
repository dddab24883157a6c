"""The one Temporal data converter: msgspec JSON for workflow and activity payloads.

Shared by the API (starting workflows), the worker, the tests and the replayer, so a payload written
by one is always readable by the others.
"""

from __future__ import annotations

from typing import Any

import msgspec
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    EncodingPayloadConverter,
    JSONPlainPayloadConverter,
)


class MsgspecJSONPayloadConverter(EncodingPayloadConverter):
    """Encodes msgspec Structs (and plain JSON values) as `json/plain`, decoding to the type hint."""

    @property
    def encoding(self) -> str:
        return "json/plain"

    def to_payload(self, value: Any) -> Payload | None:
        return Payload(metadata={"encoding": b"json/plain"}, data=msgspec.json.encode(value))

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        return msgspec.json.decode(payload.data, type=type_hint if type_hint is not None else Any)


class MsgspecPayloadConverter(CompositePayloadConverter):
    def __init__(self) -> None:
        super().__init__(
            *(
                MsgspecJSONPayloadConverter()
                if isinstance(converter, JSONPlainPayloadConverter)
                else converter
                for converter in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


data_converter = DataConverter(payload_converter_class=MsgspecPayloadConverter)
