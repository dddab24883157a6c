"""web_fetch through whole turns: a page this test serves on loopback (reachable only because the
worker runs with the test-only OUTBOUND_ALLOW_LOOPBACK), and every address it must refuse."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from litestar import Litestar, Request, get, head
from litestar.params import FromPath
from litestar.response import Redirect, Response

from tests.loop.conftest import Loop
from tests.loop.test_capability_tools import results
from tests.servers import running

PAGE = (
    "<html><head><title>Everloop page</title><script>var secret = 1;</script></head><body>"
    "<h1>Fetched</h1><p>Some <b>bold</b> text and <a href='https://example.org/'>a link</a>.</p>"
    "<ul><li>one</li><li>two</li></ul></body></html>"
)


@get("/health")
async def health() -> str:
    return "ok"


@get("/page")
async def page() -> Response[str]:
    return Response(PAGE, media_type="text/html; charset=utf-8")


@head("/page")
async def page_head() -> Response[None]:
    return Response(None, media_type="text/html; charset=utf-8")


@get("/host")
async def host(request: Request[Any, Any, Any]) -> str:
    return f"host={request.headers.get('host')}"


@get("/hop/{n:int}")
async def hop(n: FromPath[int]) -> Redirect | Response[str]:
    return (
        Redirect(path=f"/hop/{n - 1}", status_code=302) if n > 0 else Response(PAGE, media_type="text/html")
    )


@get("/to-private")
async def to_private() -> Redirect:
    return Redirect(path="http://10.0.0.1/admin", status_code=302)


@get("/to-metadata")
async def to_metadata() -> Redirect:
    return Redirect(path="http://169.254.169.254/latest/meta-data/", status_code=301)


@get("/big")
async def big() -> Response[bytes]:
    return Response(b"x" * (3 * 1024 * 1024), media_type="text/plain")


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with running(Litestar([health, page, page_head, host, hop, to_private, to_metadata, big])) as server:
        yield server.url


def fetch(**arguments: Any) -> dict[str, Any]:
    return {"name": "web_fetch", "arguments": arguments}


async def run(loop: Loop, calls: list[dict[str, Any]], capability: Any = "web_fetch") -> list[dict[str, Any]]:
    script = [{"tool_calls": calls}, "Fetched."]
    base = await loop.chat(simulator={"mode": "script", "script": script}, capabilities=[capability])
    frames = await loop.send(base, "fetch it")
    assert frames[-1]["type"] == "turn.completed"
    return [r for _, _, r in await results(loop, base)]


async def test_a_local_page_as_markdown_text_and_head(loopback_loop: Loop, site: str) -> None:
    port = httpx.URL(site).port
    markdown, text, raw, head, named, hops, big = await run(
        loopback_loop,
        [
            fetch(url=f"{site}/page", as_markdown=True),
            fetch(url=f"{site}/page", as_text=True),
            fetch(url=f"{site}/page"),
            fetch(url=f"{site}/page", method="HEAD"),
            fetch(url=f"http://localhost:{port}/host"),
            fetch(url=f"{site}/hop/5", as_markdown=True),
            fetch(url=f"{site}/big"),
        ],
    )
    assert markdown["error"] is None, markdown
    content = markdown["result"]["content"]
    assert "# Fetched" in content and "**bold**" in content and "[a link](https://example.org/)" in content
    assert "- one" in content and "secret" not in content
    assert markdown["result"]["format"] == "markdown" and markdown["result"]["status_code"] == 200
    assert text["result"]["content"].splitlines()[:2] == ["Everloop page", "Fetched"]
    assert "<h1>" not in text["result"]["content"] and "secret" not in text["result"]["content"]
    assert raw["result"]["content"] == PAGE
    assert head["result"]["status_code"] == 200 and "content" not in head["result"]
    assert head["result"]["headers"]["content-type"].startswith("text/html")
    # Connected to the resolved, checked address; the server still saw the name it was asked for.
    assert named["result"]["content"] == f"host=localhost:{port}"
    assert hops["result"]["redirects"] == [f"{site}/hop/{n}" for n in range(4, -1, -1)]
    assert "# Fetched" in hops["result"]["content"]
    assert big["result"]["truncated"] is True and len(big["result"]["content"]) == 2 * 1024 * 1024
    assert "2 MB" in big["result"]["note"]


async def test_redirects_are_checked_and_limited(loopback_loop: Loop, site: str) -> None:
    too_many, private, metadata, ftp = await run(
        loopback_loop,
        [
            fetch(url=f"{site}/hop/6"),
            fetch(url=f"{site}/to-private"),
            fetch(url=f"{site}/to-metadata"),
            fetch(url="ftp://example.org/file"),
        ],
    )
    assert "too many redirects" in too_many["error"]
    assert private["error"] == "refused: 10.0.0.1 is a private address"
    assert metadata["error"] == "refused: 169.254.169.254 is a cloud metadata address"
    assert "only http and https" in ftp["error"]


async def test_domain_lists_from_the_agent_config(loopback_loop: Loop, site: str) -> None:
    port = httpx.URL(site).port
    config = {"id": "web_fetch", "config": {"blocked_domains": ["localhost"]}}
    blocked, by_ip = await run(
        loopback_loop, [fetch(url=f"http://LOCALHOST:{port}/page"), fetch(url=f"{site}/page")], config
    )
    assert blocked["error"] == "refused: localhost is a blocked domain for this agent"
    assert by_ip["error"] is None
    allowed_only = {"id": "web_fetch", "config": {"allowed_domains": ["example.org"]}}
    [outside] = await run(loopback_loop, [fetch(url=f"{site}/page")], allowed_only)
    assert outside["error"] == "refused: 127.0.0.1 is not among this agent's allowed domains"


async def test_private_addresses_are_refused(loop: Loop, site: str) -> None:
    port = httpx.URL(site).port
    refused = await run(
        loop,
        [
            fetch(url=f"{site}/page"),
            fetch(url="http://10.1.2.3/"),
            fetch(url="http://169.254.169.254/latest/meta-data/"),
            fetch(url=f"http://[::1]:{port}/page"),
            fetch(url=f"http://localhost:{port}/page"),
            fetch(url="http://[::ffff:127.0.0.1]/"),
            fetch(url="http://0.0.0.0/"),
        ],
    )
    errors = [r["error"] for r in refused]
    assert all(r["result"] is None for r in refused)
    assert errors[0] == "refused: 127.0.0.1 is a loopback address"
    assert errors[1] == "refused: 10.1.2.3 is a private address"
    assert errors[2] == "refused: 169.254.169.254 is a cloud metadata address"
    assert errors[3] == "refused: ::1 is a loopback address"
    assert errors[4].startswith("refused: localhost resolves to ") and errors[4].endswith(
        "a loopback address"
    )
    assert "loopback address wrapped in IPv6" in errors[5]
    assert errors[6] == "refused: 0.0.0.0 is an unspecified address"
