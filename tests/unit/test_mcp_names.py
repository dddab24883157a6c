"""The names MCP tools get for the model: valid for LLM APIs, distinct, and mapped back exactly."""

from __future__ import annotations

import re
import uuid

from capabilities import mcp

VALID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def test_names_are_valid_distinct_and_stable() -> None:
    remote = ["add", "lookup.v2", "lookup_v2", "weird name/with:chars", "", "x" * 100, "x" * 100 + "y", "é"]
    names = mcp.exposed_names("srv_", remote)
    assert all(VALID.match(n) for n in names), names
    assert len(set(names)) == len(names)
    assert names[:2] == ["srv_add", "srv_lookup_v2"]
    # `lookup_v2` came second: it, not the first, gets the suffix.
    assert names[2].startswith("srv_lookup_v2_") and len(names[2]) == len("srv_lookup_v2_") + 8
    assert names[3] == "srv_weird_name_with_chars"
    assert names[5] != names[6] and len(names[5]) == 64
    assert names == mcp.exposed_names("srv_", remote)  # the same listing gives the same names
    assert mcp.exposed_names("", [""]) == ["tool"]


def test_capability_ids() -> None:
    server = uuid.uuid4()
    assert mcp.server_id_of(mcp.capability_id(server)) == server
    assert mcp.server_id_of("mcp:not-a-uuid") is None
    assert mcp.server_id_of("web_fetch") is None
