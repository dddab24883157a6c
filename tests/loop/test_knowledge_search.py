"""knowledge_search through a whole turn: the simulator's scripted model calls `search_knowledge`,
the worker's tool step searches the knowledge base named in the agent's configuration (a base of
the agent's owner, made through /v2/knowledge with a simulator embedding model), and the stored
tool result holds the matching passage."""

from __future__ import annotations

from tests import factories
from tests.loop.conftest import Loop
from tests.loop.test_capability_tools import results


async def test_an_agent_searches_its_knowledge_base(loop: Loop) -> None:
    provider = await factories.provider(loop.client, base_url=loop.simulator_url)
    await factories.model(loop.client, provider["id"], model_id="sim-embed", kind="embedding")
    made = await loop.client.post("/v2/knowledge", json={"name": "handbook", "embedding_model": "sim-embed"})
    assert made.status_code == 200, made.text
    for key, content in (
        ("leave", "Holidays: 25 days of paid leave a year."),
        ("bikes", "Bicycles are parked in the basement."),
    ):
        added = await loop.client.post(
            f"/v2/knowledge/{made.json()['id']}/add", json={"key": key, "content": content}
        )
        assert added.status_code == 201, added.text

    script = [
        {"tool_calls": [{"name": "search_knowledge", "arguments": {"query": "how many days of paid leave"}}]},
        "25 days.",
    ]
    base = await loop.chat(
        simulator={"mode": "script", "script": script},
        capabilities=[{"ref": "knowledge_search", "config": {"knowledge_base": "handbook", "top_k": 1}}],
    )
    await loop.send(base, "how much leave do I get?")
    ((name, _, stored),) = await results(loop, base)
    assert name == "search_knowledge" and stored["error"] is None, stored
    (hit,) = stored["result"]["results"]
    assert hit["key"] == "leave" and "25 days" in hit["content"] and hit["score"] > 0
