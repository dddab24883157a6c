"""Creating resources through the API, with defaults a test can override."""

from __future__ import annotations

from typing import Any

import httpx

# Litestar's test client or a plain one against a running server.
Client = httpx.AsyncClient


async def _post(client: Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(path, json=body)
    assert response.status_code == 201, response.text
    data = response.json()
    assert isinstance(data, dict)
    return data


async def provider(client: Client, **fields: Any) -> dict[str, Any]:
    return await _post(client, "/v1/llm-providers", {"name": "Sim", "provider_type": "simulator", **fields})


async def model(client: Client, provider_id: str, **fields: Any) -> dict[str, Any]:
    return await _post(client, f"/v1/llm-providers/{provider_id}/models", {"model_id": "sim-1", **fields})


async def agent(client: Client, **fields: Any) -> dict[str, Any]:
    return await _post(client, "/v1/agents", {"name": "Helper", "system_prompt": "Be brief.", **fields})


async def session(client: Client, agent_id: str, **fields: Any) -> dict[str, Any]:
    return await _post(client, f"/v1/agents/{agent_id}/sessions", fields)


def text_message(text: str, **fields: Any) -> dict[str, Any]:
    return {"message": {"role": "user", "content": [{"type": "text", "text": text}]}, **fields}
