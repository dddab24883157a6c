from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from capabilities.base import CapabilitySpec, Tool, ToolContext, ToolError


class GetCurrentTime(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    timezone: Annotated[str, msgspec.Meta(description="IANA time zone, e.g. Europe/Paris")] = "UTC"
    format: Annotated[
        Literal["iso8601", "unix", "human"],
        msgspec.Meta(description="iso8601, unix (seconds since 1970) or human (readable English)"),
    ] = "iso8601"


async def get_current_time(args: GetCurrentTime, ctx: ToolContext) -> dict[str, Any]:
    try:
        zone = ZoneInfo(args.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolError(
            f"unknown time zone {args.timezone!r}: use an IANA name such as Europe/Paris"
        ) from None
    now = datetime.now(UTC).astimezone(zone)
    value: str | int
    if args.format == "unix":
        value = int(now.timestamp())
    elif args.format == "human":
        value = now.strftime("%A %d %B %Y, %H:%M:%S %Z")
    else:
        value = now.isoformat()
    return {"timezone": args.timezone, "format": args.format, "time": value}


CAPABILITY = CapabilitySpec(
    id="current_time",
    name="Current Time",
    description="Tool to get current date and time",
    icon="clock",
    category="Utilities",
    system_prompt="You can look up the current date and time with the get_current_time tool.",
    tools=(
        Tool(
            name="get_current_time",
            description="Get the current date and time in a time zone.",
            params=GetCurrentTime,
            handler=get_current_time,
        ),
    ),
    local=True,
    timeout_s=2.0,  # within core.durability.LOCAL_TOOL_LIMIT: a hung call is a timeout result
)
