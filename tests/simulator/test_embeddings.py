"""`POST /simulator/v1/embeddings`: deterministic vectors, reached the way the golden judge reaches
them (litellm's `aembedding`, whose OpenAI client asks for base64 by default), and plain HTTP."""

from __future__ import annotations

import math

import httpx
import litellm

from services.golden_judges import cosine


async def _embed(base: str, texts: list[str]) -> list[list[float]]:
    response = await litellm.aembedding(
        model="openai/sim-embed", api_base=base, api_key="sim", input=texts, num_retries=0
    )
    return [item["embedding"] for item in response.data]


async def test_texts_sharing_words_are_similar_and_the_same_text_is_identical(simulator_url: str) -> None:
    a, same, close, far = await _embed(
        simulator_url,
        [
            "The invoice was paid on Monday",
            "the INVOICE was paid on monday!",
            "The invoice was not paid",
            "Quantum chromodynamics explains gluons",
        ],
    )
    assert len(a) == 256 and math.isclose(math.sqrt(sum(x * x for x in a)), 1.0, rel_tol=1e-5)
    assert cosine(a, same) > 0.999  # case and punctuation do not count
    assert 0.5 < cosine(a, close) < 0.99
    assert cosine(a, far) < 0.2


async def test_float_and_base64_answers_agree_and_dimensions_apply(simulator_url: str) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        plain = await http.post(f"{simulator_url}/embeddings", json={"model": "m", "input": "hello world"})
        assert plain.status_code == 200, plain.text
        body = plain.json()
        assert body["object"] == "list" and body["model"] == "m" and body["usage"]["prompt_tokens"] > 0
        [item] = body["data"]
        assert item["object"] == "embedding" and item["index"] == 0 and len(item["embedding"]) == 256
        small = await http.post(
            f"{simulator_url}/embeddings", json={"model": "m", "input": ["a", "b"], "dimensions": 8}
        )
        assert [len(d["embedding"]) for d in small.json()["data"]] == [8, 8]
        bad = await http.post(
            f"{simulator_url}/embeddings", json={"model": "m", "input": "x", "dimensions": 0}
        )
        assert bad.status_code == 400 and set(bad.json()) == {"error"}
    [via_base64] = await _embed(simulator_url, ["hello world"])
    assert cosine(via_base64, item["embedding"]) > 0.9999
